"""``netsh http show sslcert`` is parsed by structure: the same entries in any display language."""

from __future__ import annotations

from cosdoc_certs.lab.model import HttpSysEntry, render_netsh_sslcert
from cosdoc_certs.windows.netsh import SslBindingFact, parse_sslcert

HASH = "6e7e5f456cddec59cd1c47dd1ba83f1c84431945"
APP_ID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"

# As printed by Windows Server 2022 (English), abridged to the lines that vary.
ENGLISH = f"""
SSL Certificate bindings:
-------------------------

    IP:port                      : 10.0.0.5:443
    Certificate Hash             : {HASH}
    Application ID               : {APP_ID}
    Certificate Store Name       : My
    Verify Client Certificate Revocation : Enabled
    Ctl Identifier               : (null)

    Hostname:port                : cosdoc.testkommune.no:443
    Certificate Hash             : {HASH}
    Application ID               : {APP_ID}
    Certificate Store Name       : WebHosting
    Disable HTTP2                : Not Set

    Central Certificate Store    : 443
    Certificate Hash             : (null)
    Application ID               : {APP_ID}

    IP:port                      : [fe80::1]:8443
    Certificate Hash             : {HASH}
    Application ID               : {{a4b9e7d1-2c3f-4e5a-9b8c-1d2e3f4a5b6c}}
    Certificate Store Name       : (null)

"""


def test_english_output_gives_every_entry_with_a_certificate() -> None:
    thumbprint = HASH.upper()
    assert parse_sslcert(ENGLISH) == (
        SslBindingFact("10.0.0.5", 443, "", thumbprint, "My"),
        SslBindingFact("", 443, "cosdoc.testkommune.no", thumbprint, "WebHosting"),
        SslBindingFact("fe80::1", 8443, "", thumbprint, ""),
    )


def test_the_labels_do_not_matter() -> None:
    entries = [
        HttpSysEntry("0.0.0.0:443", HASH.upper(), APP_ID),
        HttpSysEntry("cosdoc.testkommune.no:443", HASH.upper(), APP_ID, sni=True),
        HttpSysEntry("[::]:8443", HASH.upper(), APP_ID, store=""),
    ]
    english = parse_sslcert(render_netsh_sslcert(entries, "en"))
    norwegian = parse_sslcert(render_netsh_sslcert(entries, "nb"))
    assert english == norwegian
    assert [(e.ip, e.host, e.store) for e in norwegian] == [
        ("0.0.0.0", "", "My"),  # noqa: S104 -- an http.sys entry
        ("", "cosdoc.testkommune.no", "My"),
        ("::", "", ""),
    ]


def test_output_without_bindings_or_with_an_error_gives_none() -> None:
    assert parse_sslcert("\r\nSSL Certificate bindings:\r\n-------------------------\r\n\r\n") == ()
    assert parse_sslcert("The requested operation requires elevation (Run as administrator).") == ()
