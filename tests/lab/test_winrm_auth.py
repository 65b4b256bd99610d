"""WinRM authentication as a default Windows Server does it, through the real pypsrp client.

The lab's HTTP endpoint takes Negotiate (NTLM) and seals every message; Basic is for local
accounts over HTTPS (or plain HTTP on a lab that allows unencrypted traffic). What reaches the
wire is read by a recording proxy on loopback.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import winrm
from pypsrp.exceptions import WinRMTransportError
from pypsrp.powershell import RunspacePool
from pypsrp.wsman import WSMan

from cosdoc_certs.errors import RemoteError
from cosdoc_certs.lab.certs import make_client_certificate
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.status import status
from cosdoc_certs.windows.connection import ConnectionOptions, CredentialsError, WindowsHost
from tests.lab.wire import RecordingProxy, through

CLEARTEXT_MARKS = (b"soap-envelope", b"Envelope", b"cosdoc-certs-script", b"ResourceURI")


@pytest.mark.parametrize("auth", ["negotiate", "ntlm"])
def test_sealed_http_carries_no_cleartext_soap_nor_password(lab: Lab, auth: str) -> None:
    info = lab.connection_info()
    with RecordingProxy((info.host, info.http_port)) as proxy:
        report = status(through(proxy, info.options(https=False, auth=auth)))
    assert report.facts.computer_name == "COSDOC-APP01"
    sent, received = proxy.sent, proxy.received
    assert b"multipart/encrypted" in sent
    assert b"multipart/encrypted" in received
    assert b'protocol="application/HTTP-SPNEGO-session-encrypted"' in sent
    for mark in CLEARTEXT_MARKS:
        assert mark not in sent
        assert mark not in received
    for secret in (info.password.encode(), info.password.encode("utf-16-le")):
        assert secret not in sent
    assert b"COSDOC-APP01" not in received
    assert "COSDOC-APP01".encode("utf-16-le") not in received


def test_the_wire_recorder_does_see_cleartext_when_there_is_some(unencrypted_lab: Lab) -> None:
    """The check above could not pass by a blind recorder: plain basic shows everything."""
    info = unencrypted_lab.connection_info()
    with RecordingProxy((info.host, info.http_port)) as proxy:
        status(through(proxy, info.options(https=False, auth="basic")))
    assert b"soap-envelope" in proxy.sent
    assert b"cosdoc-certs-script" in proxy.sent or b"ResourceURI" in proxy.sent
    assert b"COSDOC-APP01" in proxy.received or b"soap-envelope" in proxy.received


def test_negotiate_over_http_needs_only_user_and_password(lab: Lab) -> None:
    info = lab.connection_info()
    options = ConnectionOptions(
        info.host, port=info.http_port, username=info.username, password=info.password, https=False
    )
    assert options.auth == "negotiate"
    assert status(options).facts.computer_name == "COSDOC-APP01"
    assert lab.http.recorder.faults["Unauthorized"] == 0


def _first_token(sent: bytes) -> bytes:
    """The token of the first ``Authorization: Negotiate`` header a client sent."""
    match = re.search(rb"Authorization: Negotiate ([A-Za-z0-9+/=]+)", sent)
    assert match, "the client sent no Negotiate token"
    return base64.b64decode(match.group(1))


def test_negotiate_to_an_address_is_ntlm_from_the_first_token(lab: Lab) -> None:
    """No Kerberos can apply to an IP address: the client sends a bare NTLM token, not a
    SPNEGO one that first tried Kerberos (a kinit against the default realm's KDC)."""
    info = lab.connection_info()
    with RecordingProxy((info.host, info.http_port)) as proxy:
        options = through(proxy, info.options(https=False))
        assert options.auth == "negotiate"
        assert status(options).facts.computer_name == "COSDOC-APP01"
    assert _first_token(proxy.sent).startswith(b"NTLMSSP\x00\x01")
    assert b'protocol="application/HTTP-SPNEGO-session-encrypted"' in proxy.sent
    assert lab.http.auth.authentications[0].protocol == "ntlm"


def test_a_dot_backslash_local_account_logs_on_over_sealed_ntlm(lab: Lab) -> None:
    """Windows takes ``.`` as this computer's name in an NTLM logon: ``.\\lab-admin`` is the
    local account (the NTLM response is computed over the domain the client sent)."""
    info = lab.connection_info()
    user = ".\\" + info.username.rpartition("\\")[2]
    options = ConnectionOptions(
        info.host, port=info.http_port, username=user, password=info.password, https=False
    )
    assert status(options).facts.computer_name == "COSDOC-APP01"
    assert lab.http.auth.authentications[-1].protocol == "ntlm"
    assert lab.http.recorder.faults["Unauthorized"] == 0


def test_a_refused_user_name_is_shown_as_typed(lab: Lab) -> None:
    info = lab.connection_info()
    options = ConnectionOptions(
        info.host, port=info.http_port, username="LAB\\nobody", password="wrong", https=False
    )
    with pytest.raises(CredentialsError) as caught:
        status(options)
    assert "the credentials of 'LAB\\nobody'" in str(caught.value)  # one backslash, as typed


def test_negotiate_over_https_works_without_sealing(lab: Lab) -> None:
    assert status(lab.connection_info().options(https=True)).facts.computer_name == "COSDOC-APP01"


def test_a_wrong_password_over_negotiate_is_one_clear_line(lab: Lab) -> None:
    info = lab.connection_info()
    options = ConnectionOptions(
        info.host, port=info.http_port, username=info.username, password="wrong", https=False
    )
    with pytest.raises(CredentialsError, match="refused the credentials of 'lab-admin'") as caught:
        status(options)
    assert "wrong" not in str(caught.value)
    assert lab.http.recorder.faults["Unauthorized"] == 1
    assert lab.http.recorder.shells == []


def test_basic_over_http_is_refused_by_a_default_server_and_says_why(lab: Lab) -> None:
    info = lab.connection_info()
    with pytest.raises(CredentialsError, match="AllowUnencrypted") as caught:
        status(info.options(https=False, auth="basic"))
    assert "--http --auth negotiate" in caught.value.hint
    assert lab.http.recorder.shells == []


def test_an_unencrypted_message_to_the_http_endpoint_gets_the_windows_answer(lab: Lab) -> None:
    """NTLM-authenticated but unsealed: Windows answers HTTP 500 with an empty body."""
    info = lab.connection_info()

    def unsealed_pool(options: ConnectionOptions) -> RunspacePool:
        transport = WSMan(
            options.server,
            port=options.effective_port,
            username=options.username,
            password=options.password,
            ssl=False,
            auth="ntlm",
            encryption="never",
            no_proxy=True,
        )
        return RunspacePool(transport)

    with pytest.raises(WinRMTransportError) as raw:
        unsealed_pool(info.options(https=False)).open()
    assert raw.value.code == 500
    assert raw.value.response_text == ""
    host = WindowsHost(info.options(https=False, auth="ntlm"), pool_factory=unsealed_pool)
    with pytest.raises(RemoteError, match="refused an unencrypted message") as caught:
        host.open()
    assert "AllowUnencrypted" in caught.value.problem
    assert lab.http.recorder.faults["UnencryptedRefused"] == 2
    assert lab.http.recorder.shells == []


def test_basic_over_https_takes_the_local_account(lab: Lab) -> None:
    report = status(lab.connection_info().options(https=True, auth="basic"))
    assert report.facts.computer_name == "COSDOC-APP01"


@pytest.mark.parametrize("user", ["KOMMUNE\\lab-admin", "lab-admin@kommune.local"])
def test_basic_is_refused_for_a_domain_account_even_with_the_right_password(
    lab: Lab, user: str
) -> None:
    info = lab.connection_info()
    options = ConnectionOptions(
        info.host,
        port=info.https_port,
        username=user,
        password=info.password,
        auth="basic",
        ca_bundle=str(info.ca_file),
    )
    with pytest.raises(CredentialsError) as caught:
        status(options)
    assert lab.https.recorder.faults["Unauthorized"] == 1
    if "\\" in user:
        assert "local accounts only" in caught.value.hint


def test_basic_over_plain_http_works_only_where_unencrypted_traffic_is_allowed(
    unencrypted_lab: Lab,
) -> None:
    options = unencrypted_lab.connection_info().options(https=False, auth="basic")
    assert options.insecure_http
    assert status(options).facts.computer_name == "COSDOC-APP01"


def test_certificate_authentication_maps_the_client_certificate_to_the_local_account(
    lab: Lab,
) -> None:
    report = status(lab.connection_info().options(auth="certificate"))
    assert report.facts.computer_name == "COSDOC-APP01"
    assert lab.https.recorder.faults["Unauthorized"] == 0


def test_a_client_certificate_mapped_to_no_account_is_refused(lab: Lab, tmp_path: Path) -> None:
    info = lab.connection_info()
    stranger = make_client_certificate(lab.server.certificates.ca, "someone@localhost")
    certificate, key = tmp_path / "client.pem", tmp_path / "client.key"
    certificate.write_bytes(stranger.cert_pem())
    key.write_bytes(stranger.key_pem())
    options = ConnectionOptions(
        info.host,
        port=info.https_port,
        auth="certificate",
        ca_bundle=str(info.ca_file),
        client_certificate=str(certificate),
        client_key=str(key),
    )
    with pytest.raises(CredentialsError, match="refused the credentials of the client") as caught:
        status(options)
    assert "ClientCertificate" in caught.value.hint
    assert lab.https.recorder.faults["Unauthorized"] == 1
    assert lab.https.recorder.shells == []


def test_pywinrm_runs_a_lab_script_in_a_cmd_shell_over_sealed_ntlm(lab: Lab) -> None:
    """A second real client: pywinrm's run_ps sends powershell -encodedcommand to a WinRS cmd
    shell, with its own NTLM message encryption."""
    info = lab.connection_info()
    with RecordingProxy((info.host, info.http_port)) as proxy:
        session = winrm.Session(
            f"http://127.0.0.1:{proxy.port}/wsman",
            auth=(info.username, info.password),
            transport="ntlm",
            message_encryption="always",
            ca_trust_path=str(info.ca_file),
        )
        done = session.run_ps("# cosdoc-certs-script: gather\n")
    assert done.status_code == 0
    assert json.loads(done.std_out)["computerName"] == "COSDOC-APP01"
    assert lab.http.recorder.script_names == ["gather"]
    assert b"multipart/encrypted" in proxy.sent
    for mark in CLEARTEXT_MARKS:
        assert mark not in proxy.sent


def test_no_pipeline_state_message_says_running(unencrypted_lab: Lab) -> None:
    """Windows sends PIPELINE_STATE only for the end states; the lab's pipelines neither."""
    info = unencrypted_lab.connection_info()
    with RecordingProxy((info.host, info.http_port)) as proxy:
        status(through(proxy, info.options(https=False, auth="basic")))
    streams = re.findall(rb"<rsp:Stream[^>]*>([A-Za-z0-9+/=]+)</rsp:Stream>", proxy.received)
    messages = b"".join(base64.b64decode(stream) for stream in streams)
    assert b'N="PipelineState">4<' in messages  # Completed
    assert b'N="PipelineState">1<' not in messages  # Running
