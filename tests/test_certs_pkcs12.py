"""The PKCS#12 MAC (RFC 7292 B.2) computed here agrees with cryptography's for any password."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from hypothesis import given, settings
from hypothesis import strategies as st

from cosdoc_certs.certs.pkcs12 import build_pfx, parse_pfx
from cosdoc_certs.lab import certs as lab

passwords = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1,
    max_size=24,
)


@pytest.fixture(scope="module")
def plain_pfx() -> bytes:
    issued = lab.make_ssl_certificate(lab.default_ca())
    return pkcs12.serialize_key_and_certificates(
        b"ssl", None, issued.certificate, None, serialization.NoEncryption()
    )


@settings(max_examples=40, deadline=None)
@given(password=passwords, hash_name=st.sampled_from(["sha1", "sha256", "sha512"]))
def test_our_mac_opens_in_cryptography(plain_pfx: bytes, password: str, hash_name: str) -> None:
    secret = password.encode("utf-8")
    rebuilt = build_pfx(
        list(parse_pfx(plain_pfx).authenticated_safe), secret, hash_name=hash_name, iterations=3
    )
    assert len(pkcs12.load_pkcs12(rebuilt, secret).additional_certs) == 1
    assert parse_pfx(rebuilt).mac_matches(secret)
    assert not parse_pfx(rebuilt).mac_matches(secret + b"x")
