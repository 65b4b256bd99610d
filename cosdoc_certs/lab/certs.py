"""Test certificates: a Buypass-like CA, enterprise certificate pairs and SSL certificates.

Used by the lab, the tests and the demo. Everything is made fresh with ``cryptography``
(RSA 2048, SHA-256): a root "Buypass Class 3 Root CA (TEST)", an intermediate
"Buypass Class 3 CA 3 (TEST)", and leaves shaped like the real ones — the signing
certificate (Key Usage Non-Repudiation only), the encryption/authentication certificate
(Digital Signature + Key Encipherment + Data Encipherment), an SSL certificate, and variants
that are expired, not yet valid, of the wrong usage, weak or SHA-1 signed. PFX files come
AES-256 encrypted, legacy 3DES/SHA-1 (old Windows), legacy RC2-40 (through ``openssl`` when
present), and as one PFX holding both keys of the pair.

:func:`default_ca` caches one CA per process; it and every leaf it issues take their RSA
keys from a fixed set of published test keys (``lab/test-keys.pem``, see
:mod:`cosdoc_certs.lab.test_keys`), so that the lab starts in milliseconds instead of spending
half a second making keys. :func:`make_test_ca` makes fresh keys for everything it issues:
``make-test-certs`` and tests that need isolation use it.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cosdoc_certs.certs.model import name_text
from cosdoc_certs.certs.pkcs12 import merge_pfx, serialize_pfx
from cosdoc_certs.errors import CosDocCertsError, InputError
from cosdoc_certs.lab import test_keys
from cosdoc_certs.thumbprints import thumbprint_of_der

logger = logging.getLogger(__name__)

ROOT_NAME = "Buypass Class 3 Root CA (TEST)"
INTERMEDIATE_NAME = "Buypass Class 3 CA 3 (TEST)"
DEFAULT_ORGANISATION = "Testkommune"
DEFAULT_ORGANISATION_NUMBER = "123456789"
DEFAULT_HOSTNAMES = ("cosdoc.testkommune.no",)
DEFAULT_VALIDITY = datetime.timedelta(days=3 * 365)
_BACKDATE = datetime.timedelta(days=1)
_KEY_SIZE = 2048


_UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def _key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_encipherment: bool = False,
    data_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=key_encipherment,
        data_encipherment=data_encipherment,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


SIGNING_KEY_USAGE = _key_usage(content_commitment=True)
ENCRYPTION_KEY_USAGE = _key_usage(
    digital_signature=True, key_encipherment=True, data_encipherment=True
)
SSL_KEY_USAGE = _key_usage(digital_signature=True, key_encipherment=True)
WRONG_KEY_USAGE = _key_usage(digital_signature=True)
CA_KEY_USAGE = _key_usage(key_cert_sign=True, crl_sign=True)
ENCRYPTION_EXTENDED_KEY_USAGE = (
    ExtendedKeyUsageOID.CLIENT_AUTH,
    ExtendedKeyUsageOID.EMAIL_PROTECTION,
)


class OpenSSLUnavailableError(CosDocCertsError):
    """The ``openssl`` program needed for an RC2-40 PFX is not installed."""


class TestFilesExistError(InputError):
    """The folder already has test files of these names (``existing``); none was replaced."""

    def __init__(self, folder: Path, existing: Sequence[str]) -> None:
        self.folder = folder
        self.existing = tuple(existing)
        super().__init__(
            f"{folder} already has {', '.join(self.existing)}",
            "choose an empty folder for test certificates (or pass overwrite=True)",
        )


@dataclass(frozen=True)
class Issued:
    """A certificate, its private key and the certificates that issued it (leaf excluded)."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey = field(compare=False)
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def thumbprint(self) -> str:
        """SHA-1 of the DER, upper-case hex, as Windows shows it."""
        return thumbprint_of_der(self.certificate.public_bytes(serialization.Encoding.DER))

    def cert_pem(self) -> bytes:
        """The certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (test keys only)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def chain_pem(self) -> bytes:
        """The issuing certificates as concatenated PEM, nearest issuer first."""
        return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in self.chain)

    def __repr__(self) -> str:
        subject = name_text(self.certificate.subject)
        return f"Issued(subject={subject!r}, thumbprint={self.thumbprint!r})"


@dataclass(frozen=True)
class EnterprisePair:
    """A Buypass-like enterprise certificate pair: signing and encryption/authentication."""

    signing: Issued
    encryption: Issued


@dataclass(frozen=True)
class TestCA:
    """A test root CA and the intermediate that issues every leaf."""

    __test__ = False  # not a pytest test class

    root: Issued
    intermediate: Issued
    published_keys: bool = field(default=False, compare=False)

    def root_pem(self) -> bytes:
        """The root certificate as PEM (the trust anchor for TLS checks)."""
        return self.root.cert_pem()

    def chain(self) -> tuple[x509.Certificate, ...]:
        """The chain a leaf carries: intermediate, then root."""
        return (self.intermediate.certificate, self.root.certificate)

    def issue(
        self,
        subject: x509.Name,
        *,
        key_usage: x509.KeyUsage,
        extended_key_usage: Sequence[x509.ObjectIdentifier] = (),
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        key_size: int = _KEY_SIZE,
        sha1_signature: bool = False,
        upns: Sequence[str] = (),
    ) -> Issued:
        """A leaf certificate signed by the intermediate, with its own RSA key.

        The key is fresh, or for a CA made with ``published_keys`` the next published test key.
        ``upns`` adds Microsoft user principal names (otherName) to the subjectAltName.
        """
        key = _next_key(key_size, self.published_keys)
        builder = _builder(
            subject, self.intermediate.certificate.subject, key, not_before, not_after
        )
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(key_usage, critical=True)
        if extended_key_usage:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False
            )
        names = _alternative_names(dns_names, ip_addresses) + [_upn(upn) for upn in upns]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.intermediate.private_key.public_key()
            ),
            critical=False,
        )
        certificate = builder.sign(self.intermediate.private_key, hashes.SHA256())
        if sha1_signature:
            certificate = _resign_with_sha1(certificate, self.intermediate.private_key)
        return Issued(certificate, key, self.chain())


def make_test_ca(*, published_keys: bool = False) -> TestCA:
    """A test root and intermediate ("Buypass Class 3 CA 3 (TEST)") with fresh keys.

    ``published_keys=True``: the CA and every leaf it issues use the published test keys
    (fast; for the lab only, never for certificates that leave it).
    """
    root_key = _next_key(_KEY_SIZE, published_keys)
    root_name = _ca_name(ROOT_NAME)
    root_cert = _ca_certificate(root_name, root_name, root_key, root_key, path_length=1)
    intermediate_key = _next_key(_KEY_SIZE, published_keys)
    intermediate_cert = _ca_certificate(
        _ca_name(INTERMEDIATE_NAME), root_name, intermediate_key, root_key, path_length=0
    )
    return TestCA(
        root=Issued(root_cert, root_key),
        intermediate=Issued(intermediate_cert, intermediate_key, (root_cert,)),
        published_keys=published_keys,
    )


@functools.lru_cache(maxsize=1)
def default_ca() -> TestCA:
    """One test CA per process, for the lab and callers that do not care which CA issues.

    It uses the published test keys: its certificates are for the lab alone.
    """
    return make_test_ca(published_keys=True)


def enterprise_subject(organisation: str, organisation_number: str) -> x509.Name:
    """The subject of a Buypass enterprise certificate: C=NO, O, serialNumber, CN."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, organisation_number),
            x509.NameAttribute(NameOID.COMMON_NAME, organisation),
        ]
    )


def make_enterprise_pair(
    ca: TestCA,
    organisation: str = DEFAULT_ORGANISATION,
    organisation_number: str = DEFAULT_ORGANISATION_NUMBER,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> EnterprisePair:
    """A signing + encryption certificate pair for ``organisation``, like Buypass delivers."""
    subject = enterprise_subject(organisation, organisation_number)
    return EnterprisePair(
        signing=ca.issue(
            subject, key_usage=SIGNING_KEY_USAGE, not_before=not_before, not_after=not_after
        ),
        encryption=ca.issue(
            subject,
            key_usage=ENCRYPTION_KEY_USAGE,
            extended_key_usage=ENCRYPTION_EXTENDED_KEY_USAGE,
            not_before=not_before,
            not_after=not_after,
        ),
    )


def make_ssl_certificate(
    ca: TestCA,
    hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    *,
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    include_localhost: bool = True,
) -> Issued:
    """A TLS server certificate for ``hostnames`` (plus localhost and 127.0.0.1 for the lab)."""
    names = list(hostnames)
    if include_localhost and "localhost" not in names:
        names.append("localhost")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEFAULT_ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
        ]
    )
    return ca.issue(
        subject,
        key_usage=SSL_KEY_USAGE,
        extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,),
        dns_names=names,
        ip_addresses=ip_addresses,
        not_before=not_before,
        not_after=not_after,
    )


def make_client_certificate(ca: TestCA, upn: str) -> Issued:
    """A TLS client certificate for ``upn`` (user@host), as WinRM certificate auth maps it."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, upn.partition("@")[0])])
    return ca.issue(
        subject,
        key_usage=SSL_KEY_USAGE,
        extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        upns=(upn,),
    )


def make_wrong_usage_certificate(
    ca: TestCA,
    organisation: str = DEFAULT_ORGANISATION,
    organisation_number: str = DEFAULT_ORGANISATION_NUMBER,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> Issued:
    """An enterprise-looking certificate fit for none of the roles (Digital Signature only)."""
    return ca.issue(
        enterprise_subject(organisation, organisation_number),
        key_usage=WRONG_KEY_USAGE,
        extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        not_before=not_before,
        not_after=not_after,
    )


def expired_window(now: datetime.datetime | None = None) -> dict[str, datetime.datetime]:
    """``not_before``/``not_after`` keywords for a certificate that expired yesterday."""
    now = now or _now()
    return {"not_before": now - DEFAULT_VALIDITY, "not_after": now - _BACKDATE}


def not_yet_valid_window(now: datetime.datetime | None = None) -> dict[str, datetime.datetime]:
    """``not_before``/``not_after`` keywords for a certificate valid from next week."""
    now = now or _now()
    start = now + datetime.timedelta(days=7)
    return {"not_before": start, "not_after": start + DEFAULT_VALIDITY}


def to_pfx(
    issued: Issued,
    password: bytes,
    *,
    legacy: bool = False,
    name: bytes | None = None,
    include_chain: bool = True,
) -> bytes:
    """``issued`` (key, certificate, chain) as a PFX.

    AES-256/PBKDF2 with a SHA-256 MAC by default; ``legacy=True`` gives 3DES with a SHA-1 MAC,
    which Windows before Server 2016 (1709) needs. An empty password gives an unencrypted PFX.
    """
    return serialize_pfx(
        issued.private_key,
        issued.certificate,
        issued.chain if include_chain else (),
        password,
        name=name if name is not None else _friendly_name(issued.certificate),
        legacy=legacy,
    )


def to_rc2_40_pfx(issued: Issued, password: bytes) -> bytes:
    """``issued`` as an old-style PFX (certificates RC2-40, key 3DES), made by ``openssl``.

    The key and password go to openssl on stdin and in its environment, never in argv or a
    file. Raises :class:`OpenSSLUnavailableError` when openssl is not installed.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise OpenSSLUnavailableError(
            "openssl is not installed, so no RC2-40 PFX can be made",
            "install openssl (apt-get install openssl) or use the 3DES legacy PFX",
        )
    environment = {**os.environ, "COSDOC_PFX_PASSWORD": password.decode("utf-8")}
    result = subprocess.run(
        [
            openssl,
            "pkcs12",
            "-export",
            "-legacy",
            "-passout",
            "env:COSDOC_PFX_PASSWORD",
            "-name",
            _friendly_name(issued.certificate).decode("utf-8"),
        ],
        input=issued.key_pem() + issued.cert_pem() + issued.chain_pem(),
        env=environment,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise OpenSSLUnavailableError(
            "openssl could not write an RC2-40 PFX",
            "check that this openssl supports -legacy (OpenSSL 3 with the legacy provider)",
        )
    return result.stdout


def two_key_pfx(pair: EnterprisePair, password: bytes, *, legacy: bool = False) -> bytes:
    """One PFX holding both keys and certificates of ``pair`` (and the chain once)."""
    return merge_pfx(
        [
            to_pfx(pair.signing, password, legacy=legacy, name=_role_name(pair.signing, "signing")),
            to_pfx(
                pair.encryption,
                password,
                legacy=legacy,
                name=_role_name(pair.encryption, "encryption"),
                include_chain=False,
            ),
        ],
        password,
        hash_name="sha1" if legacy else "sha256",
    )


@dataclass(frozen=True)
class TestFiles:
    """The files :func:`write_test_files` wrote, by purpose."""

    __test__ = False  # not a pytest test class

    folder: Path
    signing_pfx: Path
    encryption_pfx: Path
    pair_pfx: Path
    ssl_pfx: Path
    ssl_certificate_pem: Path
    ssl_key_pem: Path
    ca_pem: Path

    def paths(self) -> tuple[Path, ...]:
        """Every file written."""
        return tuple(value for value in vars(self).values() if value != self.folder)


TEST_FILE_NAMES = {
    "signing_pfx": "signing.p12",
    "encryption_pfx": "encryption.p12",
    "pair_pfx": "enterprise-pair.p12",
    "ssl_pfx": "ssl.pfx",
    "ssl_certificate_pem": "ssl.crt",
    "ssl_key_pem": "ssl.key",
    "ca_pem": "test-ca.pem",
}


def write_test_files(
    folder: Path,
    password: bytes,
    *,
    ca: TestCA | None = None,
    organisation: str = DEFAULT_ORGANISATION,
    organisation_number: str = DEFAULT_ORGANISATION_NUMBER,
    hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
    legacy: bool = False,
    overwrite: bool = False,
) -> TestFiles:
    """Write a fresh test pair (two PFX and one two-key PFX), an SSL PFX + PEM and the CA.

    Files holding keys are created with mode 0600. Existing files are kept unless
    ``overwrite`` (a folder of real certificates must never be clobbered by test files).
    """
    targets = {field_name: folder / name for field_name, name in TEST_FILE_NAMES.items()}
    existing = [path.name for path in targets.values() if path.exists()]
    if existing and not overwrite:
        raise TestFilesExistError(folder, existing)
    ca = ca or make_test_ca()
    pair = make_enterprise_pair(ca, organisation, organisation_number)
    ssl = make_ssl_certificate(ca, hostnames)
    contents = {
        "signing_pfx": to_pfx(pair.signing, password, legacy=legacy),
        "encryption_pfx": to_pfx(pair.encryption, password, legacy=legacy),
        "pair_pfx": two_key_pfx(pair, password, legacy=legacy),
        "ssl_pfx": to_pfx(ssl, password, legacy=legacy),
        "ssl_certificate_pem": ssl.cert_pem() + ssl.chain_pem(),
        "ssl_key_pem": ssl.key_pem(),
        "ca_pem": ca.root_pem() + ca.intermediate.cert_pem(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for field_name, path in targets.items():
        _write_private(path, contents[field_name])
    logger.info("wrote test certificates to %s", folder)
    return TestFiles(folder=folder, **targets)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    path.chmod(0o600)


def _friendly_name(certificate: x509.Certificate) -> bytes:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value).encode("utf-8") if names else b"certificate"


def _role_name(issued: Issued, role: str) -> bytes:
    return _friendly_name(issued.certificate) + f" ({role})".encode()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _next_key(key_size: int, published: bool) -> rsa.RSAPrivateKey:
    if published and key_size == test_keys.KEY_SIZE:
        return test_keys.next_key()
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NO"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Buypass AS-983163327 (TEST)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: rsa.RSAPrivateKey,
    not_before: datetime.datetime | None,
    not_after: datetime.datetime | None,
) -> x509.CertificateBuilder:
    start = not_before or _now() - _BACKDATE
    end = not_after or start + DEFAULT_VALIDITY
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def _ca_certificate(
    subject: x509.Name,
    issuer: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer_key: rsa.RSAPrivateKey,
    *,
    path_length: int,
) -> x509.Certificate:
    start = _now() - datetime.timedelta(days=365)
    builder = _builder(subject, issuer, key, start, start + 4 * DEFAULT_VALIDITY)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
    builder = builder.add_extension(CA_KEY_USAGE, critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def _alternative_names(
    dns_names: Iterable[str], ip_addresses: Iterable[str]
) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names.extend(x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses)
    return names


def _upn(upn: str) -> x509.GeneralName:
    """A Microsoft UPN otherName: a DER UTF8String under OID 1.3.6.1.4.1.311.20.2.3."""
    value = upn.encode("utf-8")
    if len(value) > 127:
        raise ValueError("a UPN this long is not supported by the lab")
    return x509.OtherName(_UPN_OID, bytes([0x0C, len(value)]) + value)


def _resign_with_sha1(
    certificate: x509.Certificate, issuer_key: rsa.RSAPrivateKey
) -> x509.Certificate:
    """The same certificate signed with SHA-1 (``cryptography`` no longer signs with SHA-1)."""
    parsed = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"].copy()
    tbs["signature"] = asn1_x509.SignedDigestAlgorithm({"algorithm": "sha1_rsa"})
    tbs_der = tbs.dump(force=True)
    signature = issuer_key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 -- on purpose
    resigned = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": {"algorithm": "sha1_rsa"},
            "signature_value": signature,
        }
    )
    return x509.load_der_x509_certificate(resigned.dump())
