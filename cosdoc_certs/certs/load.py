"""Read certificate files (PFX/P12, PEM, DER, PKCS#7) into a :class:`CertificateBundle`.

Pure apart from reading the files it is given. Formats are recognised by content, not by
file name: PEM (certificates, keys and chains, one file or several), DER certificates,
PKCS#7 chains and PFX/P12 files with AES, 3DES or RC2-40 encryption, including a PFX that
holds both keys of the Buypass pair. Every key is matched to its certificate by public key.
Every failure is a :class:`CertificateLoadError` naming the file, never the password.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7

from cosdoc_certs.certs import keys
from cosdoc_certs.certs.classify import bundle_findings, classify
from cosdoc_certs.certs.model import (
    CertificateBundle,
    CertificateInfo,
    Role,
    is_ca,
    thumbprint_of,
    utc_now,
)
from cosdoc_certs.certs.pkcs12 import (
    PasswordRequiredError,
    WrongPasswordError,
    parse_pfx,
    read_pfx,
)
from cosdoc_certs.errors import CertificateLoadError, InputError
from cosdoc_certs.findings import DEFAULT_WARN_DAYS, Finding, Severity

logger = logging.getLogger(__name__)

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_CERTIFICATE_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE"}
_PKCS7_LABELS = {b"PKCS7", b"CMS"}
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"}
_LEADING_NOISE = b"\xef\xbb\xbf \t\r\n"
_ROLE_ORDER = {Role.SIGNING: 0, Role.ENCRYPTION: 1, Role.SSL: 2, None: 3}
_FORMATS_HINT = "give a PFX/P12 file, or PEM/DER certificates (.pem, .crt, .cer) and PEM keys"

Password = str | bytes | None


@dataclass(frozen=True)
class FileContents:
    """What one file held; ``key_providers`` parallel to ``private_keys`` (PFX attribute)."""

    source: str
    certificates: tuple[x509.Certificate, ...] = ()
    private_keys: tuple[PrivateKeyTypes, ...] = ()
    key_providers: tuple[str | None, ...] = ()

    def provider_of(self, key: PrivateKeyTypes) -> str | None:
        """The Windows provider the file names for ``key`` (None when it names none)."""
        for index, candidate in enumerate(self.private_keys):
            if candidate is key and index < len(self.key_providers):
                return self.key_providers[index]
        return None


def load_bundle(
    paths: Iterable[str | os.PathLike[str]],
    password: Password = None,
    *,
    now: datetime.datetime | None = None,
    warn_days: int = DEFAULT_WARN_DAYS,
) -> CertificateBundle:
    """Load certificate and key files into one bundle with roles, keys and findings."""
    blobs = [(str(path), _read_file(Path(path))) for path in paths]
    return load_bundle_from_bytes(blobs, password, now=now, warn_days=warn_days)


def load_bundle_from_bytes(
    named_blobs: Sequence[tuple[str, bytes]],
    password: Password = None,
    *,
    now: datetime.datetime | None = None,
    warn_days: int = DEFAULT_WARN_DAYS,
) -> CertificateBundle:
    """Like :func:`load_bundle`, from ``(name, content)`` pairs already in memory."""
    if not named_blobs:
        raise InputError("no certificate files given", _FORMATS_HINT)
    secret = password.encode("utf-8") if isinstance(password, str) else password
    if secret is not None and b"\x00" in secret:
        raise InputError("the password contains a NUL character", "type the password again")
    files = [read_certificate_file(name, data, secret) for name, data in named_blobs]
    return _assemble_bundle(files, now=now or utc_now(), warn_days=warn_days)


def read_certificate_file(source: str, data: bytes, password: bytes | None) -> FileContents:
    """Every certificate and key in one file, whatever its format."""
    body = data.lstrip(_LEADING_NOISE)
    if not body:
        raise CertificateLoadError(f"{source} is empty", _FORMATS_HINT)
    if b"-----BEGIN " in body:
        contents = _read_pem(source, body, password)
    elif body[0] == 0x30:  # an ASN.1 SEQUENCE: DER certificate, PKCS#7, PFX or key
        contents = _read_der(source, data, password)
    else:
        raise CertificateLoadError(
            f"{source} is not a certificate file (neither PEM text nor DER/PFX binary)",
            _FORMATS_HINT,
        )
    if not contents.certificates and not contents.private_keys:
        raise CertificateLoadError(f"{source} holds no certificate", _FORMATS_HINT)
    logger.debug(
        "%s: %d certificates, %d keys",
        source,
        len(contents.certificates),
        len(contents.private_keys),
    )
    return contents


def _assemble_bundle(
    files: Sequence[FileContents], *, now: datetime.datetime, warn_days: int = DEFAULT_WARN_DAYS
) -> CertificateBundle:
    """Deduplicate certificates, match keys, classify roles and compute findings."""
    certificates: dict[str, tuple[x509.Certificate, str]] = {}
    for contents in files:
        for certificate in contents.certificates:
            certificates.setdefault(thumbprint_of(certificate), (certificate, contents.source))
    if not certificates:
        names = ", ".join(contents.source for contents in files)
        raise CertificateLoadError(f"none of the files holds a certificate: {names}", _FORMATS_HINT)
    keys = [(key, contents.source) for contents in files for key in contents.private_keys]
    providers = {
        id(key): contents.provider_of(key) for contents in files for key in contents.private_keys
    }
    leaves: list[CertificateInfo] = []
    chain: list[x509.Certificate] = []
    for certificate, source in certificates.values():
        if is_ca(certificate):
            chain.append(certificate)
        else:
            key = _key_for(certificate, keys)
            provider = providers.get(id(key)) if key is not None else None
            leaves.append(
                CertificateInfo(certificate, key, source, classify(certificate), provider)
            )
    leaves.sort(key=lambda info: _ROLE_ORDER[info.role])
    bundle = CertificateBundle(tuple(leaves), tuple(chain))
    findings = bundle_findings(bundle, now, warn_days)
    findings.extend(_unmatched_key_findings(keys, certificates.values()))
    return dataclasses.replace(bundle, findings=tuple(findings))


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertificateLoadError(f"{path} does not exist", "check the file name") from None
    except IsADirectoryError:
        raise CertificateLoadError(
            f"{path} is a folder", "name the certificate files themselves"
        ) from None
    except OSError as error:
        raise CertificateLoadError(
            f"{path} cannot be read ({error.strerror})", "check the file's permissions"
        ) from None


def _key_for(
    certificate: x509.Certificate, keys: Sequence[tuple[PrivateKeyTypes, str]]
) -> PrivateKeyTypes | None:
    public_key = certificate.public_key()
    return next((key for key, _ in keys if key.public_key() == public_key), None)


def _unmatched_key_findings(
    keys: Sequence[tuple[PrivateKeyTypes, str]],
    certificates: Iterable[tuple[x509.Certificate, str]],
) -> list[Finding]:
    public_keys = [certificate.public_key() for certificate, _ in certificates]
    return [
        Finding(
            "key-mismatch",
            Severity.ERROR,
            "a private key in it belongs to none of the certificates",
            source,
        )
        for key, source in keys
        if key.public_key() not in public_keys
    ]


def _read_pem(source: str, data: bytes, password: bytes | None) -> FileContents:
    certificates: list[x509.Certificate] = []
    keys: list[PrivateKeyTypes] = []
    for number, match in enumerate(_PEM_BLOCK.finditer(data), start=1):
        label, block = match.group(1), match.group(0)
        try:
            if label in _CERTIFICATE_LABELS:
                certificates.append(x509.load_pem_x509_certificate(block))
            elif label in _PKCS7_LABELS:
                certificates.extend(pkcs7.load_pem_pkcs7_certificates(block))
            elif label in _KEY_LABELS:
                keys.append(_load_pem_key(source, block, password))
        except (ValueError, UnsupportedAlgorithm) as error:
            raise CertificateLoadError(
                f"{source}: PEM block {number} ({label.decode()}) is damaged",
                "copy the file again; the text between BEGIN and END must be unchanged",
            ) from error
    return FileContents(source, tuple(certificates), tuple(keys))


def _load_pem_key(source: str, block: bytes, password: bytes | None) -> PrivateKeyTypes:
    encrypted = block.startswith(b"-----BEGIN ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in block
    if not encrypted:
        return keys.load_pem_key(block, None)
    if not password:
        raise PasswordRequiredError(
            f"the private key in {source} is protected by a password",
            "give its password (`password`)",
        )
    try:
        return keys.load_pem_key(block, password)
    except keys.DamagedKeyError:
        raise
    except ValueError:
        raise WrongPasswordError(
            f"wrong password for the private key in {source}",
            "check the password; it is case-sensitive",
        ) from None


def _read_der(source: str, data: bytes, password: bytes | None) -> FileContents:
    try:
        parse_pfx(data)
    except ValueError:
        pass
    else:
        pfx = read_pfx(data, password, source)
        return FileContents(source, pfx.certificates, pfx.private_keys, pfx.key_providers)
    if _looks_like_pfx(data):
        raise CertificateLoadError(
            f"{source} looks like a PFX file but is damaged (truncated or altered)",
            "copy or export the PFX again",
        )
    for reader in (_der_certificate, pkcs7.load_der_pkcs7_certificates, _der_key):
        try:
            return _as_contents(source, reader(data))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    raise CertificateLoadError(
        f"{source} is damaged or not a certificate file (binary, but no PFX, DER certificate, "
        "PKCS#7 or key)",
        _FORMATS_HINT,
    )


def _der_certificate(data: bytes) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(data)]


def _der_key(data: bytes) -> PrivateKeyTypes:
    return keys.load_der_key(data, None)


def _as_contents(source: str, found: list[x509.Certificate] | PrivateKeyTypes) -> FileContents:
    if isinstance(found, list):
        return FileContents(source, tuple(found))
    return FileContents(source, (), (found,))


def _looks_like_pfx(data: bytes) -> bool:
    """True when ``data`` starts like a PFX: SEQUENCE, then INTEGER 3 (the PFX version)."""
    if len(data) < 2:
        return False
    length_octets = data[1] & 0x7F if data[1] & 0x80 else 0
    start = 2 + length_octets
    return data[start : start + 3] == b"\x02\x01\x03"
