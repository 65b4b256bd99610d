"""Check mode against the lab: ``apply.ps1 -Check`` over the real pypsrp client, nothing changed.

For every lab scenario the check runs on the planned rotation, the whole simulated server is
compared before and after (files byte for byte, attributes and ACLs, the certificate stores,
bindings, http.sys entries, services, pools, the event log), and then a real apply shows
that the check told the truth: a check that passed is followed by an apply that succeeds,
and a check that reported a blocker is followed by an apply that fails at that very action.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.cli import main
from cosdoc_certs.errors import ApplyError
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import (
    REFUSED_BEFORE_APPLY,
    SCENARIOS,
    LabCertificates,
    LabServer,
    make_lab_certificates,
)
from cosdoc_certs.status import gather
from cosdoc_certs.windows.apply import apply_windows, run_apply_script
from cosdoc_certs.windows.apply_contract import GrantRead
from cosdoc_certs.windows.check import WindowsCheckResult, check_windows
from cosdoc_certs.windows.connection import WindowsHost
from cosdoc_certs.windows.planning import plan_windows

HOST = "cosdoc-app01.testkommune.no"
# A service that hangs on stop cannot be seen before stopping it: the one blocker no check
# can predict (apply times out, names the process and rolls back).
UNPREDICTABLE = {"stuck-service": "restart-service"}


@pytest.fixture(scope="module")
def certificates() -> LabCertificates:
    return make_lab_certificates()


def server_state(server: LabServer) -> dict[str, Any]:
    """Everything of the simulated server a check could change, in comparable form."""
    files = server.files
    return {
        "files": {
            str(path.relative_to(files.root)): path.read_bytes()
            for path in sorted(files.root.rglob("*"))
            if path.is_file()
        },
        "attributes": dict(files._attributes),
        "write_denied": set(files._write_denied),
        "store": {
            t: (e.key_file, sorted(e.readers), e.key_provider, e.dacl_locked)
            for t, e in server.store.entries.items()
        },
        "authorities": sorted(server.store.authorities),
        "bindings": [(s.name, b.binding_information, b.thumbprint) for s, b in server.bindings()],
        "http_sys": dict(server.http_sys_settings),
        "services": {s.name: (s.state, s.process_id) for s in server.services.values()},
        "pools": {p.name: p.state for p in server.app_pools.values()},
        "events": len(server.event_log),
    }


class Rotation:
    """A running lab around one scenario, with the rotation to the renewed pair planned."""

    def __init__(self, lab: Lab, server: LabServer, bundle: CertificateBundle) -> None:
        self.lab, self.server, self.bundle = lab, server, bundle
        self.scenario = ""
        with self.host() as host:
            self.facts = gather(host)
        self.plan = plan_windows(self.facts, bundle, host=HOST)
        lab.http.recorder.reset()

    def host(self) -> WindowsHost:
        return WindowsHost(self.lab.connection_info().options(https=False))

    def check(self) -> WindowsCheckResult:
        with self.host() as host:
            return check_windows(host, self.plan, self.bundle, self.facts)


def _rotation(
    tmp_path: Path, certificates: LabCertificates, server: LabServer
) -> Iterator[Rotation]:
    with Lab(server=server, root=tmp_path / "lab", svarut=False) as lab:
        files = certificates.write_files(tmp_path / "pfx")
        bundle = load_bundle([files.pair_pfx, files.ssl_pfx], certificates.pfx_password.encode())
        yield Rotation(lab, server, bundle)


@pytest.fixture
def rotation(
    request: pytest.FixtureRequest, tmp_path: Path, certificates: LabCertificates
) -> Iterator[Rotation]:
    server = SCENARIOS[request.param](tmp_path / "server", certificates=certificates)
    for built in _rotation(tmp_path, certificates, server):
        built.scenario = request.param
        yield built


_PLANNABLE = [name for name in SCENARIOS if name not in REFUSED_BEFORE_APPLY]


def _apply_failing_action(rotation: Rotation) -> int | None:
    """Apply for real; the index of the action that failed (None when it all went through)."""
    problem = ""
    with rotation.host() as host:
        try:
            apply_windows(host, rotation.plan, rotation.bundle, rotation.facts)
        except ApplyError as error:
            problem = error.problem
    if not problem:
        return None
    match = re.search(r"action (\d+) of", problem)
    assert match is not None, problem
    return int(match.group(1)) - 1


@pytest.mark.parametrize("rotation", _PLANNABLE, indirect=True)
def test_the_check_changes_nothing_and_predicts_what_apply_does(rotation: Rotation) -> None:
    before = server_state(rotation.server)
    found = rotation.check()
    assert server_state(rotation.server) == before
    recorder = rotation.lab.http.recorder
    assert [run.call.name for run in recorder.scripts] == ["apply"]
    assert len(recorder.pipelines) == 1
    assert found.error is None
    assert all(item.ok for item in found.environment)
    assert len(found.verdicts) == len(rotation.plan.actions) - len(found.manual_steps)
    first_blocker = found.blockers[0].index if found.blockers else None
    failed_at = _apply_failing_action(rotation)
    if rotation.scenario in UNPREDICTABLE:
        assert first_blocker is None
        assert failed_at is not None
        assert found.verdicts[failed_at].action == UNPREDICTABLE[rotation.scenario]
    else:
        assert failed_at == first_blocker, found.to_text()


@pytest.mark.parametrize("rotation", ["deny-write-config"], indirect=True)
def test_a_config_file_the_administrators_may_not_write_is_a_blocker_with_its_fix(
    rotation: Rotation,
) -> None:
    found = rotation.check()
    (blocker,) = found.blockers
    assert blocker.action == "write-file"
    assert "KPR" in blocker.description
    assert "denies writing to BUILTIN\\Administrators" in blocker.message
    assert "icacls" in blocker.message
    assert found.worst is not None
    assert "cannot, because" in found.to_text()


@pytest.mark.parametrize("rotation", ["default"], indirect=True)
def test_a_session_that_is_not_elevated_blocks_the_import_and_says_so(rotation: Rotation) -> None:
    rotation.server.session.elevated = False
    found = rotation.check()
    assert [item.name for item in found.environment if not item.ok] == ["elevated-administrator"]
    assert found.blockers[0].action == "import-pfx"
    assert "elevated administrator" in found.blockers[0].message
    with rotation.host() as host, pytest.raises(ApplyError, match="action 1 of"):
        apply_windows(host, rotation.plan, rotation.bundle, rotation.facts)


@pytest.mark.parametrize("rotation", ["default"], indirect=True)
def test_a_missing_web_administration_module_blocks_bindings_and_pools(
    rotation: Rotation,
) -> None:
    rotation.server.web_administration = False
    found = rotation.check()
    assert [item.name for item in found.environment if not item.ok] == ["web-administration"]
    kinds = {verdict.action for verdict in found.blockers}
    assert kinds == {"set-binding", "recycle-pool"}
    first = found.blockers[0].index
    with rotation.host() as host, pytest.raises(ApplyError, match=f"action {first + 1} of"):
        apply_windows(host, rotation.plan, rotation.bundle, rotation.facts)


@pytest.mark.parametrize("rotation", ["default"], indirect=True)
def test_a_key_file_whose_acl_we_cannot_change_is_a_blocker(rotation: Rotation) -> None:
    before = server_state(rotation.server)
    current = rotation.server.certificates.current.signing.thumbprint
    rotation.server.store.get(current).dacl_locked = True
    with rotation.host() as host:
        account = "DOMENE\\svc-kpr"
        grant = GrantRead(current, account, rotation.server.accounts.logon_sid(account))
        document = run_apply_script(host, [grant], "R", check=True)
    (result,) = document.results
    assert not result.ok
    assert "WRITE_DAC" in result.message
    rotation.server.store.get(current).dacl_locked = False
    assert server_state(rotation.server) == before


@pytest.mark.parametrize("rotation", ["default"], indirect=True)
def test_a_constrained_language_session_cannot_even_start_and_says_why(
    rotation: Rotation,
) -> None:
    rotation.server.language_mode = "ConstrainedLanguage"
    found = rotation.check()
    assert found.error is not None
    assert "Constrained Language Mode" in found.error
    assert "needs FullLanguage" in found.error
    assert "cannot check" in found.to_text()


@pytest.mark.parametrize("rotation", ["default"], indirect=True)
def test_a_file_edited_after_planning_is_a_blocker_naming_the_fix(rotation: Rotation) -> None:
    path = rotation.server.service("Digihelse.Adressering").settings_file
    rotation.server.files.write(path, rotation.server.files.read(path) + b"\n")
    found = rotation.check()
    (blocker,) = found.blockers
    assert blocker.action == "write-file"
    assert "changed since planning" in blocker.message
    assert "run plan again" in blocker.message


def _svarut_tree(lab: Lab) -> dict[str, bytes]:
    assert lab.svarut is not None
    root = lab.svarut.sandbox
    files = sorted(path for path in root.rglob("*") if path.is_file())
    return {str(path.relative_to(root)): path.read_bytes() for path in files}


def _check_command(lab: Lab) -> list[str]:
    info = lab.connection_info()
    assert info.svarut is not None
    return [
        *("apply", "--check", "--json", "--name", "testkommune", "--host", info.host),
        *("--port", str(info.https_port), "--user", info.username, "--auth", "basic"),
        *("--ca-bundle", str(info.ca_file), "--winrm-password-env", "LAB_WINRM"),
        *("--svarut-host", info.svarut.host, "--svarut-port", str(info.svarut.ssh_port)),
        *("--svarut-user", info.svarut.username, "--svarut-host-key", info.svarut.host_key),
        *("--svarut-identity", str(info.svarut.client_key), "--svarut-layout", "single"),
        *("--svarut-tls-port", str(info.svarut.tls_port)),
        *("--pfx", str(info.pfx_files["pair"]), "--pfx", str(info.pfx_files["ssl"])),
        *("--password-env", "LAB_PFX"),
    ]


def _invoke_check(lab: Lab) -> tuple[int, dict[str, Any]]:
    info = lab.connection_info()
    runner = CliRunner(env={"LAB_WINRM": info.password, "LAB_PFX": info.pfx_password})
    result = runner.invoke(main, _check_command(lab), catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def test_apply_check_on_both_hosts_passes_changes_nothing_and_exits_0(lab: Lab) -> None:
    windows, svarut = server_state(lab.server), _svarut_tree(lab)
    code, document = _invoke_check(lab)
    assert (server_state(lab.server), _svarut_tree(lab)) == (windows, svarut)
    assert code == 0, document
    assert document["check"]["ok"] is True
    checks = {c["name"]: c["ok"] for c in document["check"]["svarut"]["checks"]}
    assert checks == {
        "sudo": True,
        "prod.env": True,
        "certificate folder": True,
        "prod.env folder": True,
        "nginx -t": True,
    }
    assert all(a["ok"] for a in document["check"]["windows"]["actions"])


def test_apply_check_reports_blockers_on_both_hosts_and_exits_3(lab: Lab) -> None:
    assert lab.svarut is not None
    lab.svarut.faults.sudo_needs_password = True
    lab.server.files.deny_write(lab.server.service("KPR.Innsending").settings_file)
    windows = server_state(lab.server)
    info = lab.connection_info()
    runner = CliRunner(env={"LAB_WINRM": info.password, "LAB_PFX": info.pfx_password})
    arguments = _check_command(lab)
    # plan reads the SvarUT host with sudo too: a sudo that wants a password stops plan first,
    # with the same clear error as status
    result = runner.invoke(main, arguments, catch_exceptions=False)
    assert server_state(lab.server) == windows
    assert result.exit_code == 4, result.output
    assert "sudo" in result.output + (result.stderr or "")
    lab.svarut.faults.sudo_needs_password = False
    code, document = _invoke_check(lab)
    assert code == 3
    blockers = [a for a in document["check"]["windows"]["actions"] if not a["ok"]]
    assert [a["action"] for a in blockers] == ["write-file"]
    assert "KPR\\Innsending\\appsettings.json" in blockers[0]["description"]
