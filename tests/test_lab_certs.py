"""The test certificate factory makes what the real Buypass and SSL files look like."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cosdoc_certs.lab import certs as lab

PASSWORD = b"Test-passord-1"
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def _openssl(*args: str, data: bytes) -> str:
    environment = {**os.environ, "PFX_PASSWORD": PASSWORD.decode()}
    result = subprocess.run(
        ["openssl", *args], input=data, capture_output=True, env=environment, check=True
    )
    return result.stdout.decode() + result.stderr.decode()


def test_ca_is_buypass_like(ca: lab.TestCA) -> None:
    root_cn = ca.root.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    issuer_cn = ca.intermediate.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert root_cn == "Buypass Class 3 Root CA (TEST)"
    assert issuer_cn[0].value == "Buypass Class 3 CA 3 (TEST)"
    assert ca.root_pem().startswith(b"-----BEGIN CERTIFICATE-----")
    basic = ca.intermediate.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.value.ca


def test_enterprise_pair_subjects_and_usages(pair: lab.EnterprisePair) -> None:
    for issued in (pair.signing, pair.encryption):
        subject = issued.certificate.subject
        assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "123456789"
        assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Testkommune"
        assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "NO"
        assert len(issued.chain) == 2
    signing = pair.signing.certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert signing.critical
    assert signing.value.content_commitment
    assert not signing.value.digital_signature
    assert not signing.value.key_encipherment
    encryption = pair.encryption.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert encryption.digital_signature
    assert encryption.key_encipherment
    assert encryption.data_encipherment
    assert not encryption.content_commitment
    assert pair.signing.certificate.serial_number != pair.encryption.certificate.serial_number


def test_ssl_certificate_names(ca: lab.TestCA) -> None:
    issued = lab.make_ssl_certificate(ca, ("cosdoc.example.no",))
    names = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == ["cosdoc.example.no", "localhost"]
    assert [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = issued.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage


@pytest.mark.parametrize("window", [lab.expired_window, lab.not_yet_valid_window])
def test_validity_variants_are_not_valid_now(
    ca: lab.TestCA, window: Callable[[datetime.datetime], dict[str, datetime.datetime]]
) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = lab.make_wrong_usage_certificate(ca, **window(now)).certificate
    assert not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def test_repr_never_shows_the_key(pair: lab.EnterprisePair) -> None:
    text = repr(pair) + repr(pair.signing)
    key_body = pair.signing.key_pem().decode().splitlines()[1]
    assert key_body not in text
    assert "private" not in text.lower()
    assert pair.signing.thumbprint in text


def test_key_pem_matches_certificate(pair: lab.EnterprisePair) -> None:
    key = serialization.load_pem_private_key(pair.encryption.key_pem(), None)
    assert key.public_key() == pair.encryption.certificate.public_key()
    assert pair.encryption.chain_pem().count(b"BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize(
    ("legacy", "key_algorithm"),
    [(False, "pbes2"), (True, "pkcs12_sha1_tripledes_3key")],
)
def test_pfx_encryption(pair: lab.EnterprisePair, legacy: bool, key_algorithm: str) -> None:
    blob = lab.to_pfx(pair.signing, PASSWORD, legacy=legacy)
    loaded = pkcs12.load_pkcs12(blob, PASSWORD)
    assert loaded.cert is not None
    assert loaded.cert.certificate == pair.signing.certificate
    assert len(loaded.additional_certs) == 2
    assert _key_bag_algorithms(blob) == [key_algorithm]


def test_rc2_40_pfx(pair: lab.EnterprisePair) -> None:
    if shutil.which("openssl") is None:
        with pytest.raises(lab.OpenSSLUnavailableError):
            lab.to_rc2_40_pfx(pair.signing, PASSWORD)
        return
    blob = lab.to_rc2_40_pfx(pair.signing, PASSWORD)
    info = _openssl(
        "pkcs12", "-info", "-nokeys", "-legacy", "-passin", "env:PFX_PASSWORD", data=blob
    )
    assert "pbeWithSHA1And40BitRC2-CBC" in info
    loaded = pkcs12.load_pkcs12(blob, PASSWORD)
    assert loaded.key is not None
    assert loaded.key.public_key() == pair.signing.certificate.public_key()


@pytest.mark.parametrize("legacy", [False, True])
def test_two_key_pfx_holds_both_keys(pair: lab.EnterprisePair, legacy: bool) -> None:
    blob = lab.two_key_pfx(pair, PASSWORD, legacy=legacy)
    # cryptography sees one key and drops the other: the reason this file exists
    loaded = pkcs12.load_pkcs12(blob, PASSWORD)
    assert len(loaded.additional_certs) == 3
    assert len(_key_bag_algorithms(blob)) == 2


@needs_openssl
def test_two_key_pfx_mac_is_valid_for_openssl(pair: lab.EnterprisePair) -> None:
    blob = lab.two_key_pfx(pair, PASSWORD)
    keys = _openssl("pkcs12", "-nocerts", "-nodes", "-passin", "env:PFX_PASSWORD", data=blob)
    assert keys.count("BEGIN PRIVATE KEY") == 2
    wrong = subprocess.run(
        ["openssl", "pkcs12", "-nocerts", "-nodes", "-passin", "pass:wrong"],
        input=blob,
        capture_output=True,
        check=False,
    )
    assert wrong.returncode != 0


def test_weak_and_sha1_variants(ca: lab.TestCA, pair: lab.EnterprisePair) -> None:
    issued = ca.issue(
        pair.signing.certificate.subject,
        key_usage=lab.SIGNING_KEY_USAGE,
        key_size=1024,
        sha1_signature=True,
    )
    assert issued.certificate.signature_hash_algorithm is not None
    assert issued.certificate.signature_hash_algorithm.name == "sha1"
    assert issued.private_key.key_size == 1024
    ca.intermediate.certificate.public_key().verify(  # type: ignore[union-attr]
        issued.certificate.signature,
        issued.certificate.tbs_certificate_bytes,
        padding.PKCS1v15(),
        hashes.SHA1(),  # noqa: S303 -- checking a SHA-1 signature on purpose
    )


def test_default_ca_is_cached() -> None:
    assert lab.default_ca() is lab.default_ca()


def _key_bag_algorithms(blob: bytes) -> list[str]:
    pfx = asn1_pkcs12.Pfx.load(blob)
    safe = asn1_pkcs12.AuthenticatedSafe.load(pfx["auth_safe"]["content"].native)
    algorithms = []
    for info in safe:
        if info["content_type"].native != "data":
            continue
        for bag in asn1_pkcs12.SafeContents.load(info["content"].native):
            if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                algorithms.append(bag["bag_value"]["encryption_algorithm"]["algorithm"].native)
    return algorithms


def test_write_test_files_names_the_overwrite_argument(tmp_path: Path) -> None:
    (tmp_path / "signing.p12").write_bytes(b"the customer's real certificate")
    with pytest.raises(lab.TestFilesExistError, match="pass overwrite=True") as caught:
        lab.write_test_files(tmp_path, b"pw")
    assert caught.value.existing == ("signing.p12",)
    assert (tmp_path / "signing.p12").read_bytes() == b"the customer's real certificate"
