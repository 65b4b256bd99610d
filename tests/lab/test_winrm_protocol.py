"""The lab WinRM endpoint's parts: script markers and dispatch, envelopes, faults, raw HTTP."""

from __future__ import annotations

import base64
import re
import ssl
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pypsrp.client import Client
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import SelectorSet, WSMan, WSManAction

from cosdoc_certs.lab.certs import make_ssl_certificate, make_test_ca
from cosdoc_certs.lab.winrm import (
    Faults,
    ScriptCall,
    ScriptRegistry,
    ScriptResult,
    WinRMEndpoint,
    tls_context,
    wsman,
)
from cosdoc_certs.lab.winrm.faults import DropPoint
from cosdoc_certs.lab.winrm.scripts import (
    CommandSpec,
    ScriptNotRecognised,
    as_text_lines,
    script_name,
)

USER, PASSWORD = "administrator", "Lab-Pa55"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("# cosdoc-certs-script: gather\nparam()", "gather"),
        ("\ufeff# cosdoc-certs-script: apply\r\nparam()", "apply"),
        ("\n\n  #cosdoc-certs-script:   verify-tls  \n", "verify-tls"),
        ("#  cosdoc-certs-script: v1.2_x\n", "v1.2_x"),
        ("param()\n# cosdoc-certs-script: gather\n", None),
        ("# cosdoc-certs-script: two words\n", None),
        ("# cosdoc-certs-script:\n", None),
        ("Get-ChildItem Cert:\\LocalMachine\\My", None),
        ("", None),
    ],
)
def test_script_name_reads_the_first_line_marker(text: str, name: str | None) -> None:
    assert script_name(text) == name


def _ok(call: ScriptCall) -> ScriptResult:
    return ScriptResult(output=[call.name])


def _registry() -> ScriptRegistry:
    registry = ScriptRegistry()
    registry.register("gather", _ok)
    return registry


SCRIPT = CommandSpec("# cosdoc-certs-script: gather\n", True, (("Roots", ["C:\\"]), (None, 7)))


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        pytest.param([SCRIPT], ("gather", {"Roots": ["C:\\"]}, [7], False), id="script"),
        pytest.param(
            [
                CommandSpec("Invoke-Expression", False, (("Command", SCRIPT.text),), False),
                CommandSpec("Out-String", False, (("Stream", True),)),
            ],
            ("gather", {}, [], True),
            id="execute_ps-shape",
        ),
        pytest.param(
            [CommandSpec("iex", False, ((None, SCRIPT.text),))],
            "The term 'iex' is not recognized",
            id="alias-not-known",
        ),
        pytest.param(
            [CommandSpec("Get-Service", False, (("Name", "KPR*"),))],
            "The term 'Get-Service' is not recognized",
            id="cmdlet",
        ),
        pytest.param(
            [CommandSpec("# cosdoc-certs-script: apply\n", True)],
            "The script 'apply' is not known to the lab",
            id="unknown-name",
        ),
        pytest.param(
            [CommandSpec("Write-Output 1", True)],
            "first line: 'Write-Output 1'",
            id="no-marker",
        ),
        pytest.param(
            [CommandSpec(SCRIPT.text, True, (), False), CommandSpec("Sort-Object", False)],
            "The term 'Sort-Object' is not recognized",
            id="piped-into-unknown",
        ),
        pytest.param(
            [SCRIPT, CommandSpec("Get-Date", False)],
            "a further statement ('Get-Date')",
            id="two-statements",
        ),
        pytest.param([], "no command", id="empty"),
    ],
)
def test_dispatch_resolves_a_pipeline_or_says_why_not(
    commands: list[CommandSpec], expected: tuple[Any, ...] | str
) -> None:
    registry = _registry()
    if isinstance(expected, str):
        with pytest.raises(ScriptNotRecognised, match=re.escape(expected)):
            registry.dispatch(commands)
        return
    dispatched = registry.dispatch(commands)
    assert (
        dispatched.name,
        dispatched.parameters,
        dispatched.arguments,
        dispatched.as_text,
    ) == expected
    assert dispatched.handler is _ok


def test_a_script_without_marker_is_recognised_by_its_exact_text() -> None:
    registry = _registry()
    registry.recognise("  Get-Date\n\n  Write-Output 1  \n", "gather")
    command = CommandSpec("Get-Date\nWrite-Output 1", True)
    assert registry.dispatch([command]).name == "gather"
    with pytest.raises(ScriptNotRecognised):
        registry.dispatch([CommandSpec("Get-Date\nWrite-Output 2", True)])


@pytest.mark.parametrize("name", ["", "two words", "semi;colon", "new\nline"])
def test_register_refuses_names_no_marker_can_carry(name: str) -> None:
    with pytest.raises(ValueError, match="script name"):
        ScriptRegistry().register(name, _ok)


@pytest.mark.parametrize(
    ("values", "lines"),
    [
        (["a", 1, True, None], ["a", "1", "True"]),
        ([b"\x01\xff"], ["1", "255"]),
        ([["x", ["y"]]], ["x", "y"]),
        (["two\nlines"], ["two", "lines"]),
        (
            [{"Key": "Value"}],
            ["", f"{'Name':<31}Value", f"{'----':<31}-----", f"{'Key':<31}Value", ""],
        ),
    ],
)
def test_out_string_rendering(values: list[Any], lines: list[str]) -> None:
    assert as_text_lines(values) == lines


def test_script_call_repr_shows_parameter_names_never_values() -> None:
    call = ScriptCall("apply", {"PfxPassword": "s3cret-Pfx", "Actions": []}, ["in"], ["arg"])
    text = repr(call)
    assert "s3cret-Pfx" not in text
    assert "PfxPassword" in text
    assert "'apply'" in text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT20S", 20.0),
        ("PT7200.000S", 7200.0),
        ("PT1M30S", 90.0),
        ("P1DT1H", 90000.0),
        ("PT0.5S", 0.5),
    ],
)
def test_operation_timeouts_are_read_as_xs_durations(text: str, seconds: float) -> None:
    assert wsman.parse_duration(text) == seconds


def test_a_malformed_duration_is_a_fault() -> None:
    with pytest.raises(wsman.WSManFault, match="xs:duration"):
        wsman.parse_duration("20 seconds")


def test_drop_rules_count_requests_per_action_from_when_they_are_set() -> None:
    faults = Faults()
    faults.on_request("Receive")
    faults.drop_connection_at(2, action="Receive")
    faults.drop_connection_at(3, before=False)
    seen = [faults.on_request(action) for action in ["Command", "Receive", "Send", "Receive"]]
    assert seen == [DropPoint.NONE, DropPoint.NONE, DropPoint.AFTER, DropPoint.BEFORE]
    assert faults.on_request("Receive") is DropPoint.NONE


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda f: f.drop_connection_at(0), "counts requests from 1"),
        (lambda f: setattr(f, "latency_per_request", -1), ">= 0"),
    ],
)
def test_faults_refuse_nonsense(call: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        call(Faults())


@pytest.fixture
def endpoint() -> Iterator[WinRMEndpoint]:
    """An HTTP endpoint that allows unencrypted traffic, so raw requests can be read."""
    registry = _registry()
    with WinRMEndpoint(
        registry, username=USER, password=PASSWORD, allow_unencrypted=True
    ) as endpoint:
        yield endpoint


def _post(
    endpoint: WinRMEndpoint, body: bytes, *, path: str = "/wsman", auth: Any = None
) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    return session.post(
        f"http://127.0.0.1:{endpoint.port}{path}",
        data=body,
        auth=auth if auth is not None else (USER, PASSWORD),
        headers={"Content-Type": "application/soap+xml;charset=UTF-8"},
        timeout=10,
    )


@pytest.mark.parametrize(
    ("path", "auth", "body", "status", "reason"),
    [
        pytest.param("/wsman", (USER, "nope"), b"<x/>", 401, "", id="wrong-password"),
        pytest.param("/wsman", ("someone", PASSWORD), b"<x/>", 401, "", id="wrong-user"),
        pytest.param("/other", None, b"<x/>", 404, "", id="wrong-path"),
        pytest.param("/wsman", None, b"not xml", 500, "is not XML", id="not-xml"),
        pytest.param("/wsman", None, b"<a/>", 500, "no Header or Body", id="not-soap"),
    ],
)
def test_raw_http_requests_are_answered_like_winrm(
    endpoint: WinRMEndpoint, path: str, auth: Any, body: bytes, status: int, reason: str
) -> None:
    answer = _post(endpoint, body, path=path, auth=auth)
    assert answer.status_code == status
    if status == 401:
        offered = answer.headers["WWW-Authenticate"]
        assert offered == 'Negotiate, Kerberos, Basic realm="WSMAN"'  # several headers, joined
    if reason:
        assert reason in answer.text
        assert 'Code="2150858817"' in answer.text


def test_the_user_name_is_case_insensitive_like_windows(endpoint: WinRMEndpoint) -> None:
    answer = _post(endpoint, b"not xml", auth=(USER.upper(), PASSWORD))
    assert answer.status_code == 500  # past authentication


def _wsman(endpoint: WinRMEndpoint, **kwargs: Any) -> WSMan:
    return WSMan(
        "127.0.0.1",
        port=endpoint.port,
        username=USER,
        password=PASSWORD,
        ssl=False,
        auth="basic",
        encryption="never",
        no_proxy=True,
        **kwargs,
    )


def test_a_cmd_shell_answers_an_unknown_program_as_cmd_exe_does(endpoint: WinRMEndpoint) -> None:
    client = Client(
        "127.0.0.1",
        port=endpoint.port,
        username=USER,
        password=PASSWORD,
        ssl=False,
        auth="basic",
        encryption="never",
        no_proxy=True,
    )
    stdout, stderr, code = client.execute_cmd("whoami")
    assert (stdout, code) == ("", 1)
    assert "'whoami' is not recognized as an internal or external command" in stderr
    assert endpoint.recorder.script_names == []


def test_requests_to_a_deleted_shell_fault_with_invalid_selectors(endpoint: WinRMEndpoint) -> None:
    pool = RunspacePool(_wsman(endpoint))
    pool.open()
    pool.shell.close()
    ps = PowerShell(pool)
    ps.add_script("# cosdoc-certs-script: gather\n")
    with pytest.raises(WSManFaultError) as raised:
        ps.invoke()
    assert raised.value.code == wsman.INVALID_SELECTORS
    assert "invalid selectors" in raised.value.reason  # as real servers word it
    assert raised.value.provider == "Shell provider"  # the shell's message is inside


def test_stopping_the_endpoint_releases_a_waiting_receive(endpoint: WinRMEndpoint) -> None:
    endpoint.faults.slow_pipeline("gather", 60)
    pool = RunspacePool(_wsman(endpoint))
    pool.open()
    ps = PowerShell(pool)
    ps.add_script("# cosdoc-certs-script: gather\n")
    ps.begin_invoke()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            ps.end_invoke()
        except BaseException as error:  # the client must see the endpoint go away
            outcome.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    while not endpoint.recorder.requests["Receive"]:
        threading.Event().wait(0.01)
    endpoint.stop()
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert len(outcome) == 1


def test_endpoint_repr_and_url_carry_no_password(endpoint: WinRMEndpoint) -> None:
    assert PASSWORD not in repr(endpoint)
    assert PASSWORD not in endpoint.url
    assert endpoint.url == f"http://127.0.0.1:{endpoint.port}/wsman"


def test_tls_context_leaves_no_key_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    issued = make_ssl_certificate(make_test_ca())
    context = tls_context(issued.cert_pem() + issued.chain_pem(), issued.key_pem())
    assert context.verify_mode == ssl.CERT_NONE  # a server context: clients need no certificate
    assert list(tmp_path.iterdir()) == []


def test_a_client_that_does_not_trust_the_lab_ca_is_refused_and_the_endpoint_serves_on() -> None:
    ca = make_test_ca()
    issued = make_ssl_certificate(ca)
    tls = tls_context(issued.cert_pem() + issued.chain_pem(), issued.key_pem())
    with (
        WinRMEndpoint(_registry(), username=USER, password=PASSWORD, tls=tls) as endpoint,
        tempfile.TemporaryDirectory() as folder,
    ):
        options = {
            "port": endpoint.port,
            "username": USER,
            "password": PASSWORD,
            "ssl": True,
            "auth": "basic",
            "no_proxy": True,
        }
        with pytest.raises(requests.exceptions.SSLError):
            RunspacePool(WSMan("127.0.0.1", cert_validation=True, **options)).open()
        ca_file = f"{folder}/ca.pem"
        with open(ca_file, "wb") as handle:
            handle.write(ca.root_pem())
        with RunspacePool(WSMan("127.0.0.1", cert_validation=ca_file, **options)) as pool:
            ps = PowerShell(pool)
            ps.add_script("# cosdoc-certs-script: gather\n")
            assert ps.invoke() == ["gather"]


def test_create_answers_with_the_fields_a_real_server_sends(endpoint: WinRMEndpoint) -> None:
    """rsp:Shell as recorded from Windows (pypsrp's test responses), and p:ActivityId."""
    pool = RunspacePool(_wsman(endpoint))
    pool.open()
    try:
        selectors = SelectorSet()
        selectors.add_option("ShellId", pool.shell.id)
        answer = _wsman(endpoint).invoke(
            WSManAction.GET, wsman.SHELL_RESOURCE, None, selector_set=selectors
        )
    finally:
        pool.close()
    shell = answer.find("s:Body/rsp:Shell", wsman.NS)
    assert shell is not None
    fields = {child.tag.split("}")[1]: child.text for child in shell}
    for name in ("ProcessId", "MaxIdleTimeOut", "Locale", "ProfileLoaded", "IdleTimeOut"):
        assert fields[name]
    assert fields["Owner"] == "LAB\\administrator"
    assert answer.find("s:Header/p:ActivityId", wsman.NS) is not None


def test_a_receive_answer_has_one_stream_per_psrp_fragment() -> None:
    fragments = [
        (1).to_bytes(8, "big")
        + (n).to_bytes(8, "big")
        + b"\x03"
        + (len(blob)).to_bytes(4, "big")
        + blob
        for n, blob in enumerate([b"first", b"", b"third blob"])
    ]
    element = wsman.receive_response(b"".join(fragments), "C1", done=False)
    streams = wsman.findall(element, "rsp:Stream")
    assert [base64.b64decode(stream.text or "") for stream in streams] == fragments
