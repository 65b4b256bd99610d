"""``status`` against the lab over the real pypsrp client: the report, one pipeline, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cosdoc_certs.certs import Role
from cosdoc_certs.cli import main
from cosdoc_certs.consumers import COSDOC_CATALOG, apply_deviations
from cosdoc_certs.errors import InputError
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import SCENARIOS
from cosdoc_certs.lab.winrm import ScriptCall, ScriptRegistry, ScriptResult, WinRMEndpoint
from cosdoc_certs.status import StatusReport, status
from cosdoc_certs.windows.connection import (
    ConnectionOptions,
    CredentialsError,
    HostUnreachableError,
    ScriptError,
    UnknownScriptError,
    WindowsHost,
)
from cosdoc_certs.windows.gather import GatherFailedError

PASSWORD_ENV = "COSDOC_TEST_WINRM_PASSWORD"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as running:
        yield running


@pytest.fixture(scope="module")
def report(lab: Lab) -> StatusReport:
    lab.https.recorder.reset()
    return status(lab.connection_info().options(https=True))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_every_consumer_of_the_guide_is_listed(report: StatusReport) -> None:
    assert [status.name for status in report.consumers] == [c.name for c in COSDOC_CATALOG]
    by_name = {status.name: status for status in report.consumers}
    assert set(by_name["Digihelse"].instances) == {
        "Digihelse.Meldingstjeneste",
        "Digihelse.Adressering",
    }
    assert set(by_name["KPR"].instances) == {"KPR.Innsending", "KPR.Overvaker"}
    assert by_name["Authentication"].instances == ("CosDoc Drift/Authentication",)
    assert by_name["SkatteIntegrasjonApi"].instances == ("CosDoc Drift/SkatteIntegrasjonApi",)
    assert len(by_name["IIS HTTPS bindings"].instances) == 3
    assert by_name["E-meldinger"].notes
    assert [use.role for use in by_name["E-meldinger"].uses] == [Role.SIGNING, Role.ENCRYPTION]
    assert by_name["SvarUT"].notes
    assert [use.role for use in by_name["SvarUT"].uses] == [Role.SSL]


def test_each_use_names_the_certificate_of_its_role(lab: Lab, report: StatusReport) -> None:
    certificates = lab.server.certificates
    expected = {
        Role.SIGNING: certificates.current.signing.thumbprint,
        Role.ENCRYPTION: certificates.current.encryption.thumbprint,
        Role.SSL: certificates.current_ssl.thumbprint,
    }
    uses = [use for status in report.consumers for use in status.uses]
    # services 4 x 2, Authentication 3, Skatt 1, bindings 3; to select: SvarUT 1, E-meldinger 2
    assert len(uses) == 4 * 2 + 3 + 1 + 3 + 1 + 2
    for use in uses:
        assert use.certificate is not None, use
        assert use.certificate.thumbprint == expected[use.role]
        assert use.certificate.role is use.role
        assert 0 < use.certificate.days_left(report.now) <= 40


def test_the_seeded_invisible_character_is_flagged(report: StatusReport) -> None:
    flagged = [f for f in report.findings if f.code == "thumbprint-invisible-char"]
    assert [f.subject for f in flagged] == ["KPR.Overvaker $.CertSettings.SigningThumbprint"]
    assert "U+200E" in flagged[0].message
    assert report.codes() == {"thumbprint-invisible-char", "thumbprint-lowercase", "cng-key"}


def test_one_gather_is_one_pipeline_in_one_shell(lab: Lab) -> None:
    recorder = lab.http.recorder
    recorder.reset()
    status(lab.connection_info().options(https=False))
    assert len(recorder.shells) == 1
    assert len(recorder.pipelines) == 1
    assert [run.call.name for run in recorder.scripts] == ["gather"]


def test_deviations_change_what_is_checked(lab: Lab) -> None:
    consumers = apply_deviations(
        "[consumers.KPR]\nenabled = false\n[consumers.Authentication]\nenvironment = 'Test'\n"
    )
    result = status(lab.connection_info().options(), consumers)
    by_name = {s.name: s for s in result.consumers}
    assert "KPR" not in by_name
    assert by_name["Authentication"].instances == ("CosDoc Test/Authentication",)
    assert "thumbprint-invisible-char" not in result.codes()


def test_the_report_renders_as_text_json_and_html(report: StatusReport) -> None:
    text = report.render()
    assert "KPR.Overvaker" in text
    assert "U+200E" in text
    document = report.to_dict()
    json.dumps(document)
    assert document["worst"] == "error"
    assert document["consumers"][0]["uses"][0]["days_left"] > 0
    assert "<table>" in report._repr_html_()
    assert "1 errors" in repr(report)


# -- errors ------------------------------------------------------------------------------------


def _options(lab: Lab, **changes: object) -> ConnectionOptions:
    info = lab.connection_info()
    values: dict[str, object] = {
        "server": info.host,
        "port": info.http_port,
        "username": info.username,
        "password": info.password,
        "auth": "negotiate",
        "https": False,
        "connection_timeout": 5,
    }
    values.update(changes)
    return ConnectionOptions(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"password": "wrong"}, CredentialsError, "refused the credentials"),
        ({"server": "no-such-host.invalid"}, HostUnreachableError, "cannot be resolved"),
        ({"port": "free"}, HostUnreachableError, "connection refused"),
    ],
)
def test_connection_problems_are_one_clear_error(
    lab: Lab, changes: dict[str, object], error: type[Exception], message: str
) -> None:
    if changes.get("port") == "free":
        changes = {"port": _free_port()}
    with pytest.raises(error) as caught:
        status(_options(lab, **changes))
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert lab.connection_info().password not in text


def test_an_untrusted_winrm_certificate_says_to_pass_the_ca(lab: Lab) -> None:
    options = _options(lab, port=lab.connection_info().https_port, https=True)
    with pytest.raises(HostUnreachableError) as raised:
        status(options)
    problem = raised.value.problem  # OpenSSL's own words, not urllib3's wrapping cut mid-word
    assert "is not trusted (" in problem
    assert "certificate" in problem.split("is not trusted", 1)[1]
    assert "HTTPSConnectionPool" not in problem
    assert "`ConnectionOptions.ca_bundle`" in raised.value.hint


def test_an_unknown_script_is_refused_before_anything_is_sent(lab: Lab) -> None:
    with WindowsHost(_options(lab)) as host, pytest.raises(UnknownScriptError) as caught:
        host.run_script("no-such-script")
    assert "gather" in str(caught.value).split("known scripts: ", 1)[1].split(", ")


def test_a_failing_gather_reports_the_powershell_message(lab: Lab) -> None:
    lab.faults.fail_pipeline("gather", "Access to the path 'C:\\DIPS\\KPR' is denied.")
    lab.http.recorder.reset()
    try:
        with pytest.raises(ScriptError, match=r"gather failed on .*Access to the path"):
            status(_options(lab))
    finally:
        lab.faults.clear()
    assert lab.http.recorder.requests["Delete"] == 1  # the session was closed all the same


def test_a_server_that_does_not_know_the_script_is_one_line_exit_4() -> None:
    with WinRMEndpoint(ScriptRegistry(), username="u", password="p") as endpoint:
        args = ["status", "--host", "127.0.0.1", "--port", str(endpoint.port), "--user", "u"]
        args += ["--winrm-password-env", PASSWORD_ENV, "--http"]
        result = CliRunner().invoke(main, args, env={PASSWORD_ENV: "p"})
    assert result.exit_code == 4, result.output
    assert "gather failed on 127.0.0.1" in result.output
    assert "not known to the lab" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_non_terminating_errors_are_never_ignored() -> None:
    def gather_with_a_warning(call: ScriptCall) -> ScriptResult:
        return ScriptResult(
            output=["{}"], errors=["Get-Acl : Attempted to perform an unauthorized operation."]
        )

    registry = ScriptRegistry()
    registry.register("gather", gather_with_a_warning)
    with WinRMEndpoint(registry, username="u", password="p") as endpoint:
        options = ConnectionOptions(
            "127.0.0.1",
            port=endpoint.port,
            username="u",
            password="p",
            https=False,
        )
        with (
            WindowsHost(options) as host,
            pytest.raises(ScriptError, match="unauthorized operation"),
        ):
            host.run_script("gather", ServicePatterns=[], ConfigFiles=[])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"auth": "basic", "insecure_http": False, "https": False}, "sends the password readable"),
        ({"auth": "certificate", "insecure_http": True}, "needs HTTPS"),
        ({"auth": "digest"}, "unknown authentication"),
        ({"read_timeout": 5, "operation_timeout": 20}, "read_timeout must be longer"),
    ],
)
def test_unsafe_or_wrong_options_are_refused(
    lab: Lab, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        _options(lab, **changes)


def test_the_password_is_not_in_the_repr(lab: Lab) -> None:
    options = _options(lab)
    assert lab.connection_info().password not in repr(options)
    assert lab.connection_info().password not in repr(WindowsHost(options))


# -- the CLI -----------------------------------------------------------------------------------


def _cli_args(lab: Lab, *extra: str) -> list[str]:
    info = lab.connection_info()
    return [
        "status",
        "--host",
        info.host,
        "--port",
        str(info.https_port),
        "--user",
        info.username,
        "--winrm-password-env",
        PASSWORD_ENV,
        "--auth",
        "basic",
        "--ca-bundle",
        str(info.ca_file),
        *extra,
    ]


def test_cli_status_json_and_exit_code(lab: Lab) -> None:
    env = {PASSWORD_ENV: lab.connection_info().password}
    result = CliRunner().invoke(main, _cli_args(lab, "--json"), env=env)
    assert result.exit_code == 3, result.output
    document = json.loads(result.output)
    assert [c["name"] for c in document["consumers"]][:2] == ["Digihelse", "KPR"]
    kpr = document["consumers"][1]
    assert any(f["code"] == "thumbprint-invisible-char" for f in kpr["findings"])


def test_cli_exit_code_follows_the_worst_finding(lab: Lab, tmp_path: Path) -> None:
    deviations = tmp_path / "deviations.toml"
    deviations.write_text("[consumers.KPR]\nenabled = false\n", encoding="utf-8")
    env = {PASSWORD_ENV: lab.connection_info().password}
    result = CliRunner().invoke(main, _cli_args(lab, "--consumers", str(deviations)), env=env)
    assert result.exit_code == 0, result.output
    assert "Digihelse.Meldingstjeneste" in result.output
    soon = CliRunner().invoke(
        main, _cli_args(lab, "--consumers", str(deviations), "--warn-days", "60"), env=env
    )
    assert soon.exit_code == 1, soon.output
    assert "expires" in soon.output


@pytest.mark.parametrize(
    ("extra_env", "override", "message"),
    [
        ({PASSWORD_ENV: "wrong"}, {}, "refused the credentials"),
        ({}, {"--port": "free"}, "connection refused"),
        ({}, {"--host": "no-such-host.invalid"}, "cannot be resolved"),
        ({}, {"--winrm-password-env": "COSDOC_TEST_UNSET_VARIABLE"}, "is not set"),
        ({}, {"--consumers": "missing.toml"}, "cannot read the deviations file"),
    ],
)
def test_cli_errors_are_one_line_and_exit_4(
    lab: Lab, extra_env: dict[str, str], override: dict[str, str], message: str
) -> None:
    args = _cli_args(lab)
    for option, value in override.items():
        value = str(_free_port()) if value == "free" else value
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
    env = {PASSWORD_ENV: lab.connection_info().password, **extra_env}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 4, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_installed_command_runs_against_the_lab(lab: Lab) -> None:
    env = dict(os.environ, **{PASSWORD_ENV: lab.connection_info().password})
    completed = subprocess.run(
        [sys.executable, "-m", "cosdoc_certs", *_cli_args(lab)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 3, completed.stderr
    assert "KPR.Overvaker" in completed.stdout
    assert "U+200E" in completed.stdout
    assert lab.connection_info().password not in completed.stdout + completed.stderr


def test_a_gather_that_fails_as_a_whole_still_returns_its_document_with_the_reason(
    tmp_path: Path,
) -> None:
    server = SCENARIOS["broken-wmi"](tmp_path / "server")
    with Lab(server=server, root=tmp_path / "lab", svarut=False) as running:
        with WindowsHost(running.connection_info().options(https=False)) as host:
            data = host.run_script("gather", ServicePatterns=["Digihelse*"])
        assert data == {"schemaVersion": 2, "error": 'Invalid class "Win32_Service"'}
        with pytest.raises(GatherFailedError, match=r"gather\.ps1 failed on the server: Invalid"):
            status(running.connection_info().options(https=False))
