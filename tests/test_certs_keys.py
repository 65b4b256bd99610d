"""Private keys are read without OpenSSL's primality tests but still checked, and a PFX is
opened once: a damaged key is refused with the file named, every key of a two-key PFX is read
in every supported encryption, and the published lab test keys are distinct and whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from cosdoc_certs.certs import keys, load_bundle_from_bytes
from cosdoc_certs.certs.pkcs12 import read_pfx
from cosdoc_certs.errors import CertificateLoadError
from cosdoc_certs.lab import certs as lab_certs
from cosdoc_certs.lab import test_keys


def _published_blocks() -> list[bytes]:
    return test_keys.pem_blocks(
        (Path(test_keys.__file__).parent / test_keys.FILE_NAME).read_bytes()
    )


def _damaged(key: rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
    """``key`` with its private exponent and one CRT exponent off by two."""
    numbers = key.private_numbers()
    broken = rsa.RSAPrivateNumbers(
        p=numbers.p,
        q=numbers.q,
        d=numbers.d + 2,
        dmp1=numbers.dmp1 + 2,
        dmq1=numbers.dmq1,
        iqmp=numbers.iqmp,
        public_numbers=numbers.public_numbers,
    )
    return broken.private_key(unsafe_skip_rsa_key_validation=True)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_a_whole_key_passes_the_signature_check() -> None:
    key = test_keys.next_key()
    assert keys.load_pem_key(_pem(key), None).private_numbers() == key.private_numbers()


def test_a_key_whose_parts_do_not_fit_is_refused() -> None:
    with pytest.raises(keys.DamagedKeyError, match="do not fit"):
        keys.load_pem_key(_pem(_damaged(test_keys.next_key())), None)


def test_a_damaged_key_in_a_pem_file_is_reported_with_the_file_name() -> None:
    issued = lab_certs.make_ssl_certificate(lab_certs.default_ca())
    data = issued.cert_pem() + _pem(_damaged(issued.private_key))
    with pytest.raises(CertificateLoadError, match=r"ssl\.pem.*damaged"):
        load_bundle_from_bytes([("ssl.pem", data)])


def test_a_damaged_key_in_a_pfx_is_reported_with_the_file_name() -> None:
    issued = lab_certs.make_ssl_certificate(lab_certs.default_ca())
    pfx = crypto_pkcs12.serialize_key_and_certificates(
        b"ssl",
        _damaged(issued.private_key),
        issued.certificate,
        None,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(CertificateLoadError, match=r"ssl\.pfx: a private key .* cannot be"):
        read_pfx(pfx, b"pw", "ssl.pfx")


@pytest.mark.parametrize("legacy", [False, True], ids=["aes-256", "3des"])
def test_a_two_key_pfx_is_opened_once(legacy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = lab_certs.make_enterprise_pair(lab_certs.default_ca())
    pfx = lab_certs.two_key_pfx(pair, b"pw", legacy=legacy)
    calls: list[bytes] = []
    real_load = crypto_pkcs12.load_pkcs12

    def counting_load(
        data: bytes, password: bytes | None
    ) -> crypto_pkcs12.PKCS12KeyAndCertificates:
        calls.append(data)
        return real_load(data, password)

    monkeypatch.setattr(crypto_pkcs12, "load_pkcs12", counting_load)
    contents = read_pfx(pfx, b"pw", "pair.pfx")
    wanted = {
        pair.signing.private_key.private_numbers(),
        pair.encryption.private_key.private_numbers(),
    }
    assert {key.private_numbers() for key in contents.private_keys} == wanted  # type: ignore[union-attr]
    assert {cert.serial_number for cert in contents.certificates} >= {
        pair.signing.certificate.serial_number,
        pair.encryption.certificate.serial_number,
    }
    assert len(calls) == 1


def test_the_published_test_keys_are_all_different_and_drawn_in_turn() -> None:
    blocks = _published_blocks()
    assert len(blocks) == test_keys.KEY_COUNT
    assert len(set(blocks)) == test_keys.KEY_COUNT
    drawn = [test_keys.next_key().private_numbers().d for _ in range(test_keys.KEY_COUNT)]
    assert len(set(drawn)) == test_keys.KEY_COUNT


def test_make_test_ca_makes_fresh_keys_and_the_lab_ca_published_ones() -> None:
    published = {
        keys.load_pem_key(block, None).public_key().public_numbers().n  # type: ignore[union-attr]
        for block in _published_blocks()
    }
    fresh = lab_certs.make_test_ca()
    leaf = lab_certs.make_ssl_certificate(fresh)
    assert leaf.private_key.public_key().public_numbers().n not in published
    assert fresh.root.private_key.public_key().public_numbers().n not in published
    lab_leaf = lab_certs.make_ssl_certificate(lab_certs.default_ca())
    assert lab_leaf.private_key.public_key().public_numbers().n in published
