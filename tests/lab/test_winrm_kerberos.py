"""Kerberos to the lab, as to a domain-joined server: a real MIT KDC on loopback, kinit, the
server's keytab, message encryption over HTTP and delegation (the second hop)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cosdoc_certs.lab.kerberos import SERVICE_HOST, LabRealm
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import LabServer
from cosdoc_certs.status import status
from cosdoc_certs.windows.connection import ConnectionOptions, CredentialsError
from tests.lab.test_winrm_auth import CLEARTEXT_MARKS
from tests.lab.wire import RecordingProxy


@pytest.fixture
def kerberos_lab(
    default_server: LabServer, tmp_path: Path, kerberos_ticket: LabRealm
) -> Iterator[Lab]:
    with Lab(server=default_server, root=tmp_path / "lab", keytab=kerberos_ticket.keytab) as lab:
        yield lab


def _kerberos(port: int, **changes: object) -> ConnectionOptions:
    values: dict[str, object] = {
        "server": SERVICE_HOST,
        "port": port,
        "auth": "kerberos",
        "https": False,
        "connection_timeout": 5,
    }
    values.update(changes)
    return ConnectionOptions(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("auth", ["kerberos", "negotiate"])
def test_the_ticket_of_the_logged_on_user_is_enough_and_every_message_is_sealed(
    kerberos_lab: Lab, auth: str
) -> None:
    port = kerberos_lab.connection_info().http_port
    with RecordingProxy(("127.0.0.1", port)) as proxy:
        report = status(_kerberos(proxy.port, auth=auth))
    assert report.facts.computer_name == "COSDOC-APP01"
    (done,) = kerberos_lab.http.auth.authentications
    assert done.protocol == "kerberos"
    assert done.account == "lab-user@COSDOC.TEST"
    assert b"multipart/encrypted" in proxy.sent
    for mark in CLEARTEXT_MARKS:
        assert mark not in proxy.sent
        assert mark not in proxy.received


@pytest.mark.parametrize("delegate", [True, False])
def test_delegation_forwards_the_ticket_only_when_asked(kerberos_lab: Lab, delegate: bool) -> None:
    """--delegate is how the server may read a config file on a UNC share (the second hop)."""
    status(_kerberos(kerberos_lab.connection_info().http_port, delegate=delegate))
    (done,) = kerberos_lab.http.auth.authentications
    assert done.delegated is delegate


def test_kerberos_over_https_works_too(kerberos_lab: Lab) -> None:
    info = kerberos_lab.connection_info()
    options = _kerberos(info.https_port, https=True, ca_bundle=str(info.ca_file))
    assert status(options).facts.computer_name == "COSDOC-APP01"
    assert kerberos_lab.https.auth.authentications[0].protocol == "kerberos"


def test_without_a_ticket_the_error_says_to_run_kinit(
    kerberos_lab: Lab, kerberos_ticket: LabRealm
) -> None:
    kerberos_ticket.kdestroy()
    with pytest.raises(CredentialsError, match="no Kerberos ticket for the logged-on user") as e:
        status(_kerberos(kerberos_lab.connection_info().http_port))
    assert "kinit" in e.value.hint
    assert kerberos_lab.http.recorder.shells == []


def test_an_ip_address_instead_of_the_server_name_says_to_use_the_dns_name(
    kerberos_lab: Lab,
) -> None:
    """There is no SPN for an address: the KDC does not know host/127.0.0.1."""
    options = _kerberos(kerberos_lab.connection_info().http_port, server="127.0.0.1")
    with pytest.raises(
        CredentialsError, match="kerberos authentication of the logged-on user"
    ) as e:
        status(options)
    assert "DNS name" in e.value.hint
    assert "\n" not in str(e.value)


def _password_logon(lab: Lab, server: str, user: str, password: str) -> ConnectionOptions:
    port = lab.connection_info().http_port
    return ConnectionOptions(server, port=port, username=user, password=password, https=False)


@pytest.mark.parametrize("user", ["lab-user@COSDOC.TEST", "lab-user"])
def test_a_domain_user_with_a_password_still_gets_kerberos(
    kerberos_lab: Lab, kerberos_ticket: LabRealm, user: str
) -> None:
    """user@REALM, or a bare user in krb5.conf's default realm: Negotiate asks the KDC."""
    kerberos_ticket.kdestroy()  # the password gets the ticket, not the cache
    asked = len(kerberos_ticket.kdc_log())
    status(_password_logon(kerberos_lab, SERVICE_HOST, user, kerberos_ticket.password))
    (done,) = kerberos_lab.http.auth.authentications
    assert (done.protocol, done.account) == ("kerberos", "lab-user@COSDOC.TEST")
    assert "AS_REQ" in kerberos_ticket.kdc_log()[asked:]


@pytest.mark.parametrize(
    ("server", "user"),
    [("127.0.0.1", "lab-admin"), (SERVICE_HOST, "LAB\\lab-admin")],
    ids=["address", "netbios-form"],
)
def test_a_logon_kerberos_cannot_serve_is_ntlm_without_asking_the_kdc(
    kerberos_lab: Lab, kerberos_ticket: LabRealm, server: str, user: str
) -> None:
    """The KDC of the default realm is not asked for lab-admin (nor for LABlab-admin, as
    the Kerberos library would read LAB\\lab-admin): NTLM from the first token."""
    asked = len(kerberos_ticket.kdc_log())
    password = kerberos_lab.connection_info().password
    status(_password_logon(kerberos_lab, server, user, password))
    (done,) = kerberos_lab.http.auth.authentications
    assert done.protocol == "ntlm"
    assert kerberos_ticket.kdc_log()[asked:] == ""


def test_delegation_needs_kerberos() -> None:
    with pytest.raises(Exception, match="--delegate needs Kerberos"):
        ConnectionOptions("localhost", auth="ntlm", username="u", password="p", delegate=True)
