"""The certificate core: formats, key matching, roles, findings and load errors."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cosdoc_certs import CertificateLoadError, InputError
from cosdoc_certs.certs import (
    CertificateBundle,
    PasswordRequiredError,
    Role,
    classify,
    load_bundle,
    load_bundle_from_bytes,
    roles_of,
)
from cosdoc_certs.lab import certs as lab

PASSWORD = "Hemmelig-Passord-42"
SECRET = PASSWORD.encode()
NOW = datetime.datetime.now(datetime.timezone.utc)
Blobs = list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def ssl(ca: lab.TestCA) -> lab.Issued:
    return lab.make_ssl_certificate(ca)


def _der(issued: lab.Issued) -> bytes:
    return issued.certificate.public_bytes(serialization.Encoding.DER)


def _subject(common_name: str = "Testkommune") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


# --- classification -------------------------------------------------------------------------

SERVER = (ExtendedKeyUsageOID.SERVER_AUTH,)
CLIENT = (ExtendedKeyUsageOID.CLIENT_AUTH,)
CLASSIFICATION = [
    # (case, key usage, extended key usage, DNS names, expected roles)
    ("buypass signing", lab.SIGNING_KEY_USAGE, (), (), {Role.SIGNING}),
    (
        "buypass encryption",
        lab.ENCRYPTION_KEY_USAGE,
        lab.ENCRYPTION_EXTENDED_KEY_USAGE,
        (),
        {Role.ENCRYPTION},
    ),
    ("encryption without eku", lab.ENCRYPTION_KEY_USAGE, (), (), {Role.ENCRYPTION}),
    ("ssl with eku and names", lab.SSL_KEY_USAGE, SERVER, ("a.example.no",), {Role.SSL}),
    ("ssl eku only", lab.SSL_KEY_USAGE, SERVER, (), {Role.SSL}),
    ("ssl names only, no eku", lab.SSL_KEY_USAGE, (), ("a.example.no",), {Role.SSL}),
    ("ssl with data encipherment", lab.ENCRYPTION_KEY_USAGE, SERVER, ("a.example.no",), {Role.SSL}),
    ("client auth only", lab.WRONG_KEY_USAGE, CLIENT, (), set()),
    ("names but client eku", lab.SSL_KEY_USAGE, CLIENT, ("a.example.no",), set()),
    ("key encipherment only", lab._key_usage(key_encipherment=True), (), (), set()),
    (
        "non-repudiation and encryption",
        lab._key_usage(
            content_commitment=True,
            digital_signature=True,
            key_encipherment=True,
            data_encipherment=True,
        ),
        (),
        (),
        {Role.SIGNING, Role.ENCRYPTION},
    ),
    ("non-repudiation server", lab.SIGNING_KEY_USAGE, SERVER, (), {Role.SIGNING, Role.SSL}),
]


@pytest.mark.parametrize(
    ("key_usage", "extended_key_usage", "dns_names", "expected"),
    [case[1:] for case in CLASSIFICATION],
    ids=[case[0] for case in CLASSIFICATION],
)
def test_classification(
    ca: lab.TestCA,
    key_usage: x509.KeyUsage,
    extended_key_usage: tuple[x509.ObjectIdentifier, ...],
    dns_names: tuple[str, ...],
    expected: set[Role],
) -> None:
    issued = ca.issue(
        _subject(),
        key_usage=key_usage,
        extended_key_usage=extended_key_usage,
        dns_names=dns_names,
    )
    assert roles_of(issued.certificate) == expected
    assert classify(issued.certificate) == (next(iter(expected)) if len(expected) == 1 else None)


def test_ca_certificates_have_no_role_and_go_to_the_chain(
    ca: lab.TestCA, pair: lab.EnterprisePair
) -> None:
    assert classify(ca.intermediate.certificate) is None
    bundle = load_bundle_from_bytes(
        [("signing.pem", pair.signing.cert_pem() + pair.signing.chain_pem())]
    )
    assert set(bundle.chain) == {ca.intermediate.certificate, ca.root.certificate}
    assert [info.certificate for info in bundle] == [pair.signing.certificate]


# --- formats ---------------------------------------------------------------------------------


def _assert_pair(bundle: CertificateBundle, pair: lab.EnterprisePair) -> None:
    assert bundle.signing is not None
    assert bundle.encryption is not None
    assert bundle.signing.certificate == pair.signing.certificate
    assert bundle.encryption.certificate == pair.encryption.certificate
    assert bundle.signing.private_key is not None
    assert bundle.encryption.private_key is not None
    assert bundle.signing.private_key.public_key() == pair.signing.certificate.public_key()
    assert bundle.encryption.private_key.public_key() == pair.encryption.certificate.public_key()
    assert len(bundle.chain) == 2
    assert [finding.code for finding in bundle.findings] == []


@pytest.mark.parametrize("legacy", [False, True], ids=["aes256", "3des"])
def test_two_key_pfx_gives_both_certificates_and_both_keys(
    pair: lab.EnterprisePair, legacy: bool
) -> None:
    blob = lab.two_key_pfx(pair, SECRET, legacy=legacy)
    _assert_pair(load_bundle_from_bytes([("pair.pfx", blob)], PASSWORD), pair)


@pytest.mark.parametrize("legacy", [False, True], ids=["aes256", "3des"])
def test_two_separate_pfx_files(pair: lab.EnterprisePair, legacy: bool) -> None:
    blobs = [
        ("encryption.p12", lab.to_pfx(pair.encryption, SECRET, legacy=legacy)),
        ("signing.p12", lab.to_pfx(pair.signing, SECRET, legacy=legacy)),
    ]
    bundle = load_bundle_from_bytes(blobs, SECRET)
    _assert_pair(bundle, pair)
    assert bundle.signing is not None
    assert bundle.signing.source == "signing.p12"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the RC2-40 PFX")
def test_rc2_40_pfx(pair: lab.EnterprisePair) -> None:
    blobs = [
        ("signing.p12", lab.to_rc2_40_pfx(pair.signing, SECRET)),
        ("encryption.p12", lab.to_rc2_40_pfx(pair.encryption, SECRET)),
    ]
    _assert_pair(load_bundle_from_bytes(blobs, PASSWORD), pair)


def test_pfx_without_password_opens_without_asking(ssl: lab.Issued) -> None:
    bundle = load_bundle_from_bytes([("ssl.pfx", lab.to_pfx(ssl, b""))])
    assert bundle.ssl is not None
    assert bundle.ssl.has_private_key


def test_password_is_not_needed_for_files_without_one(
    pair: lab.EnterprisePair, ssl: lab.Issued
) -> None:
    blobs = [
        ("pair.pfx", lab.two_key_pfx(pair, SECRET)),
        ("ssl.pem", ssl.cert_pem() + ssl.key_pem() + ssl.chain_pem()),
    ]
    bundle = load_bundle_from_bytes(blobs, PASSWORD)
    assert [info.role for info in bundle] == [Role.SIGNING, Role.ENCRYPTION, Role.SSL]
    assert all(info.has_private_key for info in bundle)


PEM_LAYOUTS: dict[str, Callable[[lab.Issued], Blobs]] = {
    "one file": lambda i: [("all.pem", i.key_pem() + i.cert_pem() + i.chain_pem())],
    "cert, key, chain": lambda i: [
        ("cert.crt", i.cert_pem()),
        ("key.pem", i.key_pem()),
        ("chain.pem", i.chain_pem()),
    ],
    "der cer and pem key": lambda i: [("cert.cer", _der(i)), ("key.pem", i.key_pem())],
    "traditional rsa key": lambda i: [
        (
            "cert.pem",
            i.cert_pem()
            + i.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
        )
    ],
    "crlf and bom": lambda i: [
        ("win.pem", b"\xef\xbb\xbf" + (i.cert_pem() + i.key_pem()).replace(b"\n", b"\r\n"))
    ],
    "pkcs7 chain": lambda i: [
        (
            "chain.p7b",
            pkcs7.serialize_certificates([i.certificate, *i.chain], serialization.Encoding.DER),
        ),
        ("key.pem", i.key_pem()),
    ],
}


@pytest.mark.parametrize("layout", PEM_LAYOUTS.values(), ids=PEM_LAYOUTS.keys())
def test_pem_der_and_pkcs7_layouts(ssl: lab.Issued, layout: Callable[[lab.Issued], Blobs]) -> None:
    bundle = load_bundle_from_bytes(layout(ssl))
    assert bundle.ssl is not None
    assert bundle.ssl.certificate == ssl.certificate
    assert bundle.ssl.has_private_key


def test_encrypted_pem_key(ssl: lab.Issued) -> None:
    key = ssl.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(SECRET),
    )
    blobs = [("cert.pem", ssl.cert_pem()), ("key.pem", key)]
    with pytest.raises(PasswordRequiredError):
        load_bundle_from_bytes(blobs)
    bundle = load_bundle_from_bytes(blobs, PASSWORD)
    assert bundle.ssl is not None
    assert bundle.ssl.has_private_key


def test_load_bundle_reads_paths(tmp_path: Path, pair: lab.EnterprisePair) -> None:
    path = tmp_path / "pair.pfx"
    path.write_bytes(lab.two_key_pfx(pair, SECRET))
    _assert_pair(load_bundle([path], PASSWORD), pair)


def test_same_certificate_in_two_files_is_listed_once(pair: lab.EnterprisePair) -> None:
    blobs = [("a.cer", _der(pair.signing)), ("b.p12", lab.to_pfx(pair.signing, SECRET))]
    bundle = load_bundle_from_bytes(blobs, SECRET)
    assert len(bundle) == 1
    assert bundle.certificates[0].has_private_key


# --- thumbprints and the facts a person compares -----------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="compares with openssl's fingerprint")
def test_thumbprints_equal_openssl_fingerprints(pair: lab.EnterprisePair, ssl: lab.Issued) -> None:
    blobs = [("pair.pfx", lab.two_key_pfx(pair, SECRET)), ("ssl.pem", ssl.cert_pem())]
    bundle = load_bundle_from_bytes(blobs, SECRET)
    for info in bundle:
        result = subprocess.run(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha1"],
            input=info.certificate.public_bytes(serialization.Encoding.PEM),
            capture_output=True,
            check=True,
        )
        assert result.stdout.decode().strip().split("=", 1)[1].replace(":", "") == info.thumbprint


def test_certificate_facts(pair: lab.EnterprisePair) -> None:
    bundle = load_bundle_from_bytes([("pair.pfx", lab.two_key_pfx(pair, SECRET))], SECRET, now=NOW)
    signing = bundle.require(Role.SIGNING)
    assert signing.issued_to == "Testkommune"
    assert signing.organisation_number == "123456789"
    assert signing.subject == "CN=Testkommune, SERIALNUMBER=123456789, O=Testkommune, C=NO"
    assert signing.issued_by == "Buypass Class 3 CA 3 (TEST)"
    assert int(signing.serial_number, 16) == pair.signing.certificate.serial_number
    assert len(signing.serial_number) % 2 == 0
    assert signing.key_usage == ("Non-Repudiation",)
    encryption = bundle.require(Role.ENCRYPTION)
    assert encryption.key_usage == ("Digital Signature", "Key Encipherment", "Data Encipherment")
    assert encryption.extended_key_usage == ("Client Authentication", "Secure Email")
    assert signing.not_after.tzinfo is not None
    assert signing.days_left(NOW) == (pair.signing.certificate.not_valid_after_utc - NOW).days
    assert bundle.chain_for(signing) == pair.signing.chain


def test_serial_number_keeps_the_leading_zero_windows_shows(ca: lab.TestCA) -> None:
    issued = ca.issue(_subject(), key_usage=lab.SIGNING_KEY_USAGE)
    builder_serial = 0x80 << 64
    certificate = (
        x509.CertificateBuilder()
        .subject_name(issued.certificate.subject)
        .issuer_name(issued.certificate.issuer)
        .public_key(issued.private_key.public_key())
        .serial_number(builder_serial)
        .not_valid_before(issued.certificate.not_valid_before_utc)
        .not_valid_after(issued.certificate.not_valid_after_utc)
        .sign(ca.intermediate.private_key, lab.hashes.SHA256())
    )
    bundle = load_bundle_from_bytes(
        [("c.pem", certificate.public_bytes(serialization.Encoding.PEM))]
    )
    assert bundle.certificates[0].serial_number == "00800000000000000000"


def test_dict_repr_and_html_never_carry_key_material(pair: lab.EnterprisePair) -> None:
    bundle = load_bundle_from_bytes([("pair.pfx", lab.two_key_pfx(pair, SECRET))], SECRET)
    texts = [json.dumps(bundle.to_dict()), repr(bundle), bundle._repr_html_(), repr(bundle.signing)]
    key_line = pair.signing.key_pem().decode().splitlines()[1]
    for text in texts:
        assert key_line not in text
        assert PASSWORD not in text
        assert "Testkommune" in text
    document = bundle.to_dict()
    assert [c["role"] for c in document["certificates"]] == ["signing", "encryption"]
    assert all(c["has_private_key"] for c in document["certificates"])


# --- findings ---------------------------------------------------------------------------------


def _findings_case(ca: lab.TestCA, pair: lab.EnterprisePair, ssl: lab.Issued, case: str) -> Blobs:
    subject = lab.enterprise_subject("Testkommune", "123456789")
    past, future = lab.expired_window(NOW), lab.not_yet_valid_window(NOW)
    cases: dict[str, Callable[[], Blobs]] = {
        "clean pair": lambda: [("p.pfx", lab.two_key_pfx(pair, SECRET))],
        "expired": lambda: [("s.pfx", lab.to_pfx(lab.make_ssl_certificate(ca, **past), SECRET))],
        "not-yet-valid": lambda: [
            ("s.pfx", lab.to_pfx(lab.make_ssl_certificate(ca, **future), SECRET))
        ],
        "expires-soon": lambda: [
            (
                "s.pfx",
                lab.to_pfx(
                    lab.make_ssl_certificate(ca, not_after=NOW + datetime.timedelta(days=10)),
                    SECRET,
                ),
            )
        ],
        "no-private-key": lambda: [("s.pem", ssl.cert_pem() + ssl.chain_pem())],
        "key-mismatch": lambda: [
            ("s.pem", ssl.cert_pem() + ssl.chain_pem() + pair.signing.key_pem())
        ],
        "weak-rsa": lambda: [
            (
                "s.pfx",
                lab.to_pfx(
                    ca.issue(
                        subject,
                        key_usage=lab.SSL_KEY_USAGE,
                        extended_key_usage=SERVER,
                        key_size=1024,
                    ),
                    SECRET,
                ),
            )
        ],
        "sha1-signature": lambda: [
            (
                "s.pfx",
                lab.to_pfx(
                    ca.issue(
                        subject,
                        key_usage=lab.SSL_KEY_USAGE,
                        extended_key_usage=SERVER,
                        sha1_signature=True,
                    ),
                    SECRET,
                ),
            )
        ],
        "role-missing": lambda: [("s.pfx", lab.to_pfx(pair.signing, SECRET))],
        "role-ambiguous": lambda: [
            ("p.pfx", lab.two_key_pfx(pair, SECRET)),
            ("old.pfx", lab.to_pfx(lab.make_enterprise_pair(ca).signing, SECRET)),
        ],
        "unknown-role": lambda: [
            ("w.pfx", lab.to_pfx(lab.make_wrong_usage_certificate(ca), SECRET))
        ],
        "chain-incomplete": lambda: [("s.pem", ssl.cert_pem() + ssl.key_pem())],
    }
    return cases[case]()


FINDINGS = [
    # (case, expected codes, exit-relevant worst severity)
    ("clean pair", set(), None),
    ("expired", {"expired"}, "error"),
    ("not-yet-valid", {"not-yet-valid"}, "error"),
    ("expires-soon", {"expires-soon"}, "warning"),
    ("no-private-key", {"no-private-key"}, "warning"),
    ("key-mismatch", {"key-mismatch", "no-private-key"}, "error"),
    ("weak-rsa", {"weak-rsa"}, "error"),
    ("sha1-signature", {"sha1-signature"}, "warning"),
    ("role-missing", {"role-missing"}, "warning"),
    ("role-ambiguous", {"role-ambiguous"}, "error"),
    ("unknown-role", {"unknown-role"}, "warning"),
    ("chain-incomplete", {"chain-incomplete"}, "warning"),
]


@pytest.mark.parametrize(("case", "codes", "severity"), FINDINGS, ids=[f[0] for f in FINDINGS])
def test_findings(
    ca: lab.TestCA,
    pair: lab.EnterprisePair,
    ssl: lab.Issued,
    case: str,
    codes: set[str],
    severity: str | None,
) -> None:
    bundle = load_bundle_from_bytes(_findings_case(ca, pair, ssl, case), SECRET, now=NOW)
    assert {finding.code for finding in bundle.findings} == codes
    assert (str(bundle.worst_severity) if bundle.worst_severity is not None else None) == severity


def test_expires_soon_window_is_configurable(ca: lab.TestCA) -> None:
    issued = lab.make_ssl_certificate(ca, not_after=NOW + datetime.timedelta(days=50))
    blobs = [("s.pfx", lab.to_pfx(issued, SECRET))]
    assert load_bundle_from_bytes(blobs, SECRET, now=NOW).findings == ()
    soon = load_bundle_from_bytes(blobs, SECRET, now=NOW, warn_days=60).findings
    assert [finding.code for finding in soon] == ["expires-soon"]


def test_two_certificates_for_one_role_are_not_guessed(
    ca: lab.TestCA, pair: lab.EnterprisePair
) -> None:
    bundle = load_bundle_from_bytes(
        _findings_case(ca, pair, lab.make_ssl_certificate(ca), "role-ambiguous"), SECRET
    )
    assert bundle.signing is None
    assert bundle.encryption is not None
    with pytest.raises(InputError, match="2 certificates claim the signing role"):
        bundle.require(Role.SIGNING)


@pytest.mark.parametrize(
    ("blobs_of", "message"),
    [
        (
            lambda pair, ssl: [("s.pem", ssl.cert_pem())],
            "none of the files holds the Buypass signing",
        ),
        (lambda pair, ssl: [("s.cer", _der(pair.signing))], "has no private key in s.cer"),
    ],
)
def test_require_explains_what_is_missing(
    pair: lab.EnterprisePair,
    ssl: lab.Issued,
    blobs_of: Callable[[lab.EnterprisePair, lab.Issued], Blobs],
    message: str,
) -> None:
    bundle = load_bundle_from_bytes(blobs_of(pair, ssl))
    with pytest.raises(InputError, match=message) as caught:
        bundle.require(Role.SIGNING)
    assert caught.value.hint


# --- load errors -------------------------------------------------------------------------------

LOAD_ERRORS: list[tuple[str, Callable[[bytes], Blobs], str | None, str]] = [
    (
        "wrong password",
        lambda pfx: [("pair.pfx", pfx)],
        "feil-passord",
        "wrong password for pair.pfx",
    ),
    (
        "password needed",
        lambda pfx: [("pair.pfx", pfx)],
        None,
        "pair.pfx is protected by a password",
    ),
    (
        "truncated pfx",
        lambda pfx: [("pair.pfx", pfx[:700])],
        PASSWORD,
        "pair.pfx looks like a PFX file but is damaged",
    ),
    (
        "damaged pem",
        lambda pfx: [("c.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")],
        None,
        "c.pem: PEM block 1 (CERTIFICATE) is damaged",
    ),
    (
        "no certificate",
        lambda pfx: [
            (
                "req.pem",
                b"-----BEGIN CERTIFICATE REQUEST-----\nAA\n-----END CERTIFICATE REQUEST-----\n",
            )
        ],
        None,
        "req.pem holds no certificate",
    ),
    (
        "only a key",
        lambda pfx: [("k.pem", lab.default_ca().root.key_pem())],
        None,
        "none of the files holds a certificate: k.pem",
    ),
    (
        "unknown format",
        lambda pfx: [("notes.txt", b"Passordet er i e-posten")],
        None,
        "notes.txt is not a certificate file",
    ),
    (
        "binary garbage",
        lambda pfx: [("x.bin", b"\x30\x82\x01\x00" + os.urandom(64))],
        None,
        "x.bin is damaged or not a certificate file",
    ),
    ("empty file", lambda pfx: [("empty.cer", b"")], None, "empty.cer is empty"),
]


@pytest.mark.parametrize(
    ("make_blobs", "password", "message"),
    [case[1:] for case in LOAD_ERRORS],
    ids=[case[0] for case in LOAD_ERRORS],
)
def test_load_errors_are_one_clear_line(
    pair: lab.EnterprisePair,
    make_blobs: Callable[[bytes], Blobs],
    password: str | None,
    message: str,
) -> None:
    blobs = make_blobs(lab.two_key_pfx(pair, SECRET))
    with pytest.raises(CertificateLoadError) as caught:
        load_bundle_from_bytes(blobs, password)
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text
    assert caught.value.hint
    assert PASSWORD not in text
    assert (password or PASSWORD) not in text


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing.pfx", "missing.pfx does not exist"),
        (lambda d: d, "is a folder"),
    ],
)
def test_unreadable_paths(tmp_path: Path, setup: Callable[[Path], Path], message: str) -> None:
    with pytest.raises(CertificateLoadError, match=message):
        load_bundle([setup(tmp_path)])


def test_no_files_at_all() -> None:
    with pytest.raises(InputError, match="no certificate files given"):
        load_bundle_from_bytes([])


OPENSSL_EXPORTS = [
    # (case, openssl pkcs12 -export options, password given to the loader)
    ("empty password", ["-passout", "pass:"], None),
    ("empty password, legacy", ["-passout", "pass:", "-legacy"], None),
    ("sha512 mac", ["-passout", f"pass:{PASSWORD}", "-macalg", "sha512"], PASSWORD),
    (
        "rc2-40 key and certs",
        ["-passout", f"pass:{PASSWORD}", "-legacy", "-keypbe", "PBE-SHA1-RC2-40"],
        PASSWORD,
    ),
    (
        "unencrypted bags",
        ["-passout", f"pass:{PASSWORD}", "-keypbe", "NONE", "-certpbe", "NONE"],
        PASSWORD,
    ),
]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl writes these PFX variants")
@pytest.mark.parametrize(
    ("options", "password"),
    [case[1:] for case in OPENSSL_EXPORTS],
    ids=[case[0] for case in OPENSSL_EXPORTS],
)
def test_pfx_variants_written_by_openssl(
    ssl: lab.Issued, options: list[str], password: str | None
) -> None:
    blob = subprocess.run(
        ["openssl", "pkcs12", "-export", *options],
        input=ssl.key_pem() + ssl.cert_pem() + ssl.chain_pem(),
        capture_output=True,
        check=True,
    ).stdout
    bundle = load_bundle_from_bytes([("openssl.pfx", blob)], password)
    assert bundle.ssl is not None
    assert bundle.ssl.private_key is not None
    assert bundle.ssl.private_key.public_key() == ssl.certificate.public_key()
    assert len(bundle.chain) == 2


def test_password_with_nul_is_refused(pair: lab.EnterprisePair) -> None:
    with pytest.raises(InputError, match="NUL"):
        load_bundle_from_bytes([("p.pfx", lab.two_key_pfx(pair, SECRET))], "a\x00b")
