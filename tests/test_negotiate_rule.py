"""Which Negotiate logons with a password skip the Kerberos attempt (NTLM directly)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosdoc_certs.windows.connection import ConnectionOptions
from cosdoc_certs.windows.negotiate import default_realm, why_not_kerberos


@pytest.fixture
def realm_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A krb5.conf naming a default realm, used by this process."""
    conf = tmp_path / "krb5.conf"
    conf.write_text("[libdefaults]\n  default_realm = CORP.EXAMPLE\n", encoding="utf-8")
    monkeypatch.setenv("KRB5_CONFIG", str(conf))
    return conf


@pytest.fixture
def no_realm_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    conf = tmp_path / "krb5.conf"
    conf.write_text("[libdefaults]\n  dns_lookup_realm = false\n", encoding="utf-8")
    monkeypatch.setenv("KRB5_CONFIG", str(conf))
    return conf


@pytest.mark.parametrize("server", ["10.0.0.5", "[fe80::1]", "fe80::1%eth0", "127.0.0.1"])
def test_an_address_is_never_kerberos(realm_conf: Path, server: str) -> None:
    reason = why_not_kerberos(server, "alice@CORP.EXAMPLE", windows=True)
    assert reason is not None
    assert "IP address" in reason


@pytest.mark.parametrize("windows", [True, False])
def test_a_dot_backslash_user_is_a_local_account_everywhere(
    realm_conf: Path, windows: bool
) -> None:
    reason = why_not_kerberos("app01.corp.example", ".\\admin", windows=windows)
    assert reason == ".\\admin is a local account"


def test_the_netbios_form_is_kerberos_only_through_windows_sspi(realm_conf: Path) -> None:
    assert why_not_kerberos("app01.corp.example", "CORP\\alice", windows=True) is None
    reason = why_not_kerberos("app01.corp.example", "CORP\\alice", windows=False)
    assert reason is not None
    assert "user@REALM" in reason


def test_a_bare_user_is_kerberos_only_with_a_default_realm(realm_conf: Path) -> None:
    assert default_realm() == "CORP.EXAMPLE"
    assert why_not_kerberos("app01.corp.example", "alice", windows=False) is None
    realm_conf.write_text("[libdefaults]\n  dns_lookup_realm = false\n", encoding="utf-8")
    assert default_realm() is None
    reason = why_not_kerberos("app01.corp.example", "alice", windows=False)
    assert reason is not None
    assert "no default Kerberos realm" in reason


def test_a_upn_is_kerberos_without_a_default_realm(no_realm_conf: Path) -> None:
    assert why_not_kerberos("app01.corp.example", "alice@CORP.EXAMPLE", windows=False) is None


def _local(**changes: object) -> ConnectionOptions:
    values: dict[str, object] = {"server": "10.0.0.5", "username": "admin", "https": False}
    return ConnectionOptions(**{**values, **changes})  # type: ignore[arg-type]


def test_the_transport_gets_ntlm_only_for_negotiate_with_a_password(no_realm_conf: Path) -> None:
    assert _local(password="p").wire_auth == "ntlm"
    assert _local(password="p", auth="kerberos").wire_auth == "kerberos"
    assert _local().wire_auth == "negotiate"  # no password: the ticket cache's user
    assert _local(password="p", delegate=True).wire_auth == "negotiate"  # Kerberos only
    assert ConnectionOptions("app01.corp.example", https=False).wire_auth == "negotiate"


def test_the_choice_is_logged_at_debug(
    no_realm_conf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = ConnectionOptions("10.0.0.5", username="admin", password="s3cret", https=False)
    with caplog.at_level("DEBUG", logger="cosdoc_certs.windows.connection"):
        options.wsman()
    (record,) = [r for r in caplog.records if "NTLM directly" in r.getMessage()]
    assert "10.0.0.5 is an IP address" in record.getMessage()
    assert "s3cret" not in caplog.text
