"""What a loaded set of certificate files is: roles, certificates with their facts, bundles.

A :class:`CertificateInfo` carries the facts a person compares by eye (serial number,
validity, «Utstedt til» / Issued to, issuer) and the thumbprint configs store. A
:class:`CertificateBundle` is everything loaded from a set of files: the leaf certificates
with their roles and keys, the chain, and the findings about them.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature as InvalidSignatureError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cosdoc_certs._enums import TextEnum
from cosdoc_certs.display import Displayed, html_list, html_table
from cosdoc_certs.errors import InputError
from cosdoc_certs.findings import Finding, Severity, worst
from cosdoc_certs.thumbprints import thumbprint_of_der


class Role(TextEnum):
    """What a certificate is for in a CosDoc installation."""

    SIGNING = "signing"
    ENCRYPTION = "encryption"
    SSL = "ssl"


ROLE_DESCRIPTIONS = {
    Role.SIGNING: "the Buypass signing certificate (Key Usage Non-Repudiation)",
    Role.ENCRYPTION: (
        "the Buypass encryption/authentication certificate "
        "(Key Usage Digital Signature, Key Encipherment, Data Encipherment)"
    ),
    Role.SSL: "the SSL certificate (Server Authentication, DNS names)",
}

_NAME_LABELS = {
    NameOID.SERIAL_NUMBER: "SERIALNUMBER",
    NameOID.ORGANIZATION_IDENTIFIER: "OID.2.5.4.97",
}
_KEY_USAGE_LABELS = (
    ("digital_signature", "Digital Signature"),
    ("content_commitment", "Non-Repudiation"),
    ("key_encipherment", "Key Encipherment"),
    ("data_encipherment", "Data Encipherment"),
    ("key_agreement", "Key Agreement"),
    ("key_cert_sign", "Certificate Signing"),
    ("crl_sign", "CRL Signing"),
)
_EKU_LABELS = {
    ExtendedKeyUsageOID.SERVER_AUTH: "Server Authentication",
    ExtendedKeyUsageOID.CLIENT_AUTH: "Client Authentication",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "Secure Email",
    ExtendedKeyUsageOID.CODE_SIGNING: "Code Signing",
    ExtendedKeyUsageOID.TIME_STAMPING: "Time Stamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSP Signing",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "Any Purpose",
}
_ORGANISATION_IDENTIFIER_PREFIX = "NTRNO-"


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware UTC."""
    return datetime.datetime.now(datetime.timezone.utc)


@functools.lru_cache(maxsize=1024)  # asked for again and again while a host's facts are read
def thumbprint_of(certificate: x509.Certificate) -> str:
    """The Windows thumbprint of ``certificate``."""
    return thumbprint_of_der(certificate.public_bytes(serialization.Encoding.DER))


def _serial_hex(certificate: x509.Certificate) -> str:
    """The serial number as Windows shows it: the DER integer's bytes in upper-case hex."""
    number = certificate.serial_number
    return number.to_bytes((number.bit_length() + 8) // 8, "big").hex().upper()


def name_text(name: x509.Name) -> str:
    """A distinguished name as Windows writes it (``CN=…, SERIALNUMBER=…, O=…, C=NO``)."""
    return ", ".join(rdn.rfc4514_string(_NAME_LABELS) for rdn in reversed(name.rdns))


def common_name(name: x509.Name) -> str:
    """The CN of ``name`` (what Windows shows as «Utstedt til» / «Utstedt av»), or ''."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def key_usage_of(certificate: x509.Certificate) -> x509.KeyUsage | None:
    """The Key Usage extension's value, or None when the certificate has none."""
    try:
        return certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def extended_key_usage_of(certificate: x509.Certificate) -> tuple[x509.ObjectIdentifier, ...]:
    """The Extended Key Usage OIDs (empty when the extension is absent)."""
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(usage)


def dns_names_of(certificate: x509.Certificate) -> tuple[str, ...]:
    """The DNS names in the Subject Alternative Name extension."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(names.value.get_values_for_type(x509.DNSName))


def is_ca(certificate: x509.Certificate) -> bool:
    """True for CA certificates (Basic Constraints CA=True): they belong to the chain."""
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _key_usage_labels(usage: x509.KeyUsage | None) -> tuple[str, ...]:
    """Key Usage flags with the names the Windows certificate dialog uses."""
    if usage is None:
        return ()
    return tuple(label for attribute, label in _KEY_USAGE_LABELS if getattr(usage, attribute))


@dataclass(frozen=True, repr=False)
class CertificateInfo(Displayed):
    """One leaf certificate, its private key if one was found, where it came from, its role.

    ``key_provider`` is the Windows provider the key's PFX names ("Microsoft CSP Name"), if any.
    """

    certificate: x509.Certificate
    private_key: PrivateKeyTypes | None = field(default=None, repr=False, compare=False)
    source: str = ""
    role: Role | None = None
    key_provider: str | None = None

    @property
    def thumbprint(self) -> str:
        """SHA-1 of the DER, upper-case hex: what appsettings.json and IIS bindings hold."""
        return thumbprint_of(self.certificate)

    @property
    def subject(self) -> str:
        """The subject DN, Windows style."""
        return name_text(self.certificate.subject)

    @property
    def issuer(self) -> str:
        """The issuer DN, Windows style."""
        return name_text(self.certificate.issuer)

    @property
    def issued_to(self) -> str:
        """«Utstedt til» (Issued to): the subject's CN."""
        return common_name(self.certificate.subject)

    @property
    def issued_by(self) -> str:
        """«Utstedt av» (Issued by): the issuer's CN."""
        return common_name(self.certificate.issuer)

    @property
    def serial_number(self) -> str:
        """The serial number in hex as Windows shows it."""
        return _serial_hex(self.certificate)

    @property
    def organisation_number(self) -> str | None:
        """The 9-digit Norwegian organisation number from the subject, if it has one."""
        subject = self.certificate.subject
        for attribute in subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
            return str(attribute.value)
        for attribute in subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER):
            return str(attribute.value).removeprefix(_ORGANISATION_IDENTIFIER_PREFIX)
        return None

    @property
    def not_before(self) -> datetime.datetime:
        """Start of validity, aware UTC."""
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime.datetime:
        """End of validity, aware UTC."""
        return self.certificate.not_valid_after_utc

    @property
    def key_usage(self) -> tuple[str, ...]:
        """Key Usage flags, Windows names."""
        return _key_usage_labels(key_usage_of(self.certificate))

    @property
    def extended_key_usage(self) -> tuple[str, ...]:
        """Extended Key Usage purposes, Windows names (dotted OID when unnamed)."""
        return tuple(
            _EKU_LABELS.get(oid, oid.dotted_string)
            for oid in extended_key_usage_of(self.certificate)
        )

    @property
    def dns_names(self) -> tuple[str, ...]:
        """DNS names of the Subject Alternative Name."""
        return dns_names_of(self.certificate)

    @property
    def has_private_key(self) -> bool:
        """True when a matching private key was loaded."""
        return self.private_key is not None

    @property
    def key_size(self) -> int | None:
        """RSA modulus size in bits (None for other key types)."""
        public_key = self.certificate.public_key()
        return public_key.key_size if isinstance(public_key, rsa.RSAPublicKey) else None

    @property
    def label(self) -> str:
        """A short name for messages: role, Issued to, thumbprint start."""
        role = f"{self.role} certificate" if self.role else "certificate"
        return f"{role} {self.issued_to or self.subject} ({self.thumbprint[:8]}…)"

    def days_left(self, now: datetime.datetime | None = None) -> int:
        """Whole days until expiry (negative once expired)."""
        return (self.not_after - (now or utc_now())).days

    def __repr__(self) -> str:
        return (
            f"<CertificateInfo {self.role or '?'} {self.issued_to or self.subject} "
            f"{self.thumbprint} valid to {self.not_after:%Y-%m-%d}>"
        )

    def facts(self) -> list[tuple[str, str]]:
        """What a person compares by eye, as (label, value) pairs."""
        return [
            ("role", str(self.role or "?")),
            ("issued to", self.issued_to),
            ("organisation number", self.organisation_number or "-"),
            ("thumbprint", self.thumbprint),
            ("serial number", self.serial_number),
            ("valid", f"{self.not_before:%Y-%m-%d} to {self.not_after:%Y-%m-%d}"),
            ("days left", str(self.days_left())),
            ("issued by", self.issued_by),
            ("key usage", ", ".join(self.key_usage + self.extended_key_usage) or "-"),
            ("DNS names", ", ".join(self.dns_names) or "-"),
            ("private key", "yes" if self.has_private_key else "no"),
            ("from", self.source or "-"),
        ]

    def to_text(self) -> str:
        """One line per fact."""
        return "\n".join(f"{label:<20} {value}" for label, value in self.facts())

    def _repr_html_(self) -> str:
        return html_table(("", ""), self.facts())

    def to_dict(self, now: datetime.datetime | None = None) -> dict[str, Any]:
        """A JSON-ready form with every fact shown to a person; never key material."""
        signature_hash = self.certificate.signature_hash_algorithm
        return {
            "role": self.role.value if self.role else None,
            "issued_to": self.issued_to,
            "subject": self.subject,
            "organisation_number": self.organisation_number,
            "serial_number": self.serial_number,
            "serial_number_decimal": str(self.certificate.serial_number),
            "issued_by": self.issued_by,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left(now),
            "thumbprint": self.thumbprint,
            "key_usage": list(self.key_usage),
            "extended_key_usage": list(self.extended_key_usage),
            "dns_names": list(self.dns_names),
            "has_private_key": self.has_private_key,
            "key_provider": self.key_provider,
            "key_size": self.key_size,
            "signature_hash": signature_hash.name if signature_hash else None,
            "source": self.source,
        }


@dataclass(frozen=True, repr=False)
class CertificateBundle(Displayed):
    """Everything loaded from a set of files: leaf certificates, the chain, findings."""

    certificates: tuple[CertificateInfo, ...] = ()
    chain: tuple[x509.Certificate, ...] = ()
    findings: tuple[Finding, ...] = ()

    def __iter__(self) -> Iterator[CertificateInfo]:
        return iter(self.certificates)

    def __len__(self) -> int:
        return len(self.certificates)

    def with_role(self, role: Role) -> tuple[CertificateInfo, ...]:
        """Every leaf classified as ``role`` (more than one is a finding)."""
        return tuple(info for info in self.certificates if info.role is role)

    def get(self, role: Role) -> CertificateInfo | None:
        """The one certificate with ``role``; None when there is none or more than one."""
        matches = self.with_role(role)
        return matches[0] if len(matches) == 1 else None

    @property
    def signing(self) -> CertificateInfo | None:
        """The signing certificate (Non-Repudiation), if exactly one."""
        return self.get(Role.SIGNING)

    @property
    def encryption(self) -> CertificateInfo | None:
        """The encryption/authentication certificate, if exactly one."""
        return self.get(Role.ENCRYPTION)

    @property
    def ssl(self) -> CertificateInfo | None:
        """The SSL certificate, if exactly one."""
        return self.get(Role.SSL)

    @property
    def worst_severity(self) -> Severity | None:
        """The worst finding's severity (None when there are no findings)."""
        return worst(self.findings)

    def by_thumbprint(self, thumbprint: str) -> CertificateInfo | None:
        """The leaf with this (normalised) thumbprint, if loaded."""
        return next((info for info in self.certificates if info.thumbprint == thumbprint), None)

    def require(self, role: Role) -> CertificateInfo:
        """The certificate for ``role`` with its private key, or an :class:`InputError`."""
        matches = self.with_role(role)
        if not matches:
            raise InputError(
                f"none of the files holds {ROLE_DESCRIPTIONS[role]}",
                f"add the file with the {role} certificate (a PFX with its key)",
            )
        if len(matches) > 1:
            labels = ", ".join(info.label for info in matches)
            raise InputError(
                f"{len(matches)} certificates claim the {role} role: {labels}",
                "give only the files of the certificates you want to install",
            )
        info = matches[0]
        if info.private_key is None:
            raise InputError(
                f"the {info.label} has no private key in {info.source or 'the files'}",
                "give the PFX/P12 file that holds the key (a .cer holds only the certificate)",
            )
        return info

    def chain_for(self, info: CertificateInfo) -> tuple[x509.Certificate, ...]:
        """The issuers of ``info`` found in the bundle, nearest first (leaf excluded)."""
        candidates = list(self.chain) + [other.certificate for other in self.certificates]
        path: list[x509.Certificate] = []
        current = info.certificate
        while current.issuer != current.subject:
            issuer = next((c for c in candidates if _issued_by(current, c) and c not in path), None)
            if issuer is None:
                break
            path.append(issuer)
            current = issuer
        return tuple(path)

    def to_dict(self, now: datetime.datetime | None = None) -> dict[str, Any]:
        """A JSON-ready form: certificates, chain (subjects and thumbprints), findings."""
        worst_severity = self.worst_severity
        return {
            "certificates": [info.to_dict(now) for info in self.certificates],
            "chain": [
                {
                    "subject": name_text(cert.subject),
                    "thumbprint": thumbprint_of(cert),
                    "not_after": cert.not_valid_after_utc.isoformat(),
                }
                for cert in self.chain
            ],
            "findings": [finding.to_dict() for finding in self.findings],
            "worst": str(worst_severity) if worst_severity is not None else None,
        }

    def __repr__(self) -> str:
        leaves = ", ".join(
            f"{info.role or '?'} {info.issued_to or info.subject}" for info in self.certificates
        )
        return (
            f"<CertificateBundle {len(self.certificates)} certificate(s): {leaves}; "
            f"{len(self.chain)} in chain, {len(self.findings)} finding(s)>"
        )

    def to_text(self) -> str:
        """A line per certificate (role, issued to, thumbprint, serial, expiry, key), findings."""
        lines = [
            f"CertificateBundle({len(self.certificates)} certificates, {len(self.chain)} in chain)"
        ]
        for info in self.certificates:
            key = "key" if info.has_private_key else "no key"
            lines.append(
                f"  {info.role or '?':<10} {info.issued_to:<24} thumbprint {info.thumbprint} "
                f"serial {info.serial_number} valid to {info.not_after:%Y-%m-%d} ({key})"
            )
        lines.extend(f"  {finding}" for finding in self.findings)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [
            (
                info.role or "?",
                info.issued_to,
                info.organisation_number or "",
                info.serial_number,
                f"{info.not_after:%Y-%m-%d}",
                info.thumbprint,
                "yes" if info.has_private_key else "no",
            )
            for info in self.certificates
        ]
        headers = ("Role", "Issued to", "Org. no.", "Serial", "Valid to", "Thumbprint", "Key")
        return html_table(headers, rows) + html_list(self.findings)


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` signed ``certificate`` (names match and the signature checks)."""
    if certificate.issuer != issuer.subject or certificate == issuer:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except ValueError:
        # cryptography refuses SHA-1 signatures here; check those by hand (RSA PKCS#1 v1.5)
        return _rsa_signature_matches(certificate, issuer)
    except (TypeError, InvalidSignatureError):
        return False
    return True


def _rsa_signature_matches(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    public_key = issuer.public_key()
    hash_algorithm = certificate.signature_hash_algorithm
    if not isinstance(public_key, rsa.RSAPublicKey) or hash_algorithm is None:
        return False
    try:
        public_key.verify(
            certificate.signature,
            certificate.tbs_certificate_bytes,
            padding.PKCS1v15(),
            hash_algorithm,
        )
    except InvalidSignatureError:
        return False
    return True
