"""Which role a certificate plays, and what is wrong with a certificate or a bundle.

Roles come from the certificate itself, never from file names or order:

- *signing*: Key Usage Non-Repudiation (content commitment);
- *encryption*: Key Usage Digital Signature + Key Encipherment + Data Encipherment, and not a
  server certificate;
- *ssl*: Extended Key Usage Server Authentication, or DNS names with no Extended Key Usage.

A certificate that fits none of them, or more than one, gets no role and a finding.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from cosdoc_certs.certs.model import (
    CertificateBundle,
    CertificateInfo,
    Role,
    dns_names_of,
    extended_key_usage_of,
    is_ca,
    key_usage_of,
    name_text,
)
from cosdoc_certs.findings import DEFAULT_WARN_DAYS, Finding, Severity

MIN_RSA_BITS = 2048
_PAIR = (Role.SIGNING, Role.ENCRYPTION)


@functools.lru_cache(maxsize=1024)  # the doctor asks per consumer, setting and binding
def roles_of(certificate: x509.Certificate) -> frozenset[Role]:
    """Every role ``certificate`` fits (empty for CA certificates)."""
    if is_ca(certificate):
        return frozenset()
    usage = key_usage_of(certificate)
    purposes = extended_key_usage_of(certificate)
    ssl = ExtendedKeyUsageOID.SERVER_AUTH in purposes or (
        not purposes and bool(dns_names_of(certificate))
    )
    roles = set()
    if ssl:
        roles.add(Role.SSL)
    if usage is not None and usage.content_commitment:
        roles.add(Role.SIGNING)
    if (
        usage is not None
        and not ssl
        and usage.digital_signature
        and usage.key_encipherment
        and usage.data_encipherment
    ):
        roles.add(Role.ENCRYPTION)
    return frozenset(roles)


def classify(certificate: x509.Certificate) -> Role | None:
    """The one role ``certificate`` fits, or None when it fits none or several."""
    roles = roles_of(certificate)
    return next(iter(roles)) if len(roles) == 1 else None


def _role_findings(info: CertificateInfo) -> list[Finding]:
    """Findings about a leaf that fits no role or several."""
    roles = roles_of(info.certificate)
    if not roles:
        usage = ", ".join(info.key_usage + info.extended_key_usage) or "no key usage"
        return [
            Finding(
                "unknown-role",
                Severity.WARNING,
                f"fits none of the roles signing, encryption, ssl ({usage})",
                info.label,
            )
        ]
    if len(roles) > 1:
        names = " and ".join(sorted(role.value for role in roles))
        return [
            Finding(
                "role-ambiguous",
                Severity.ERROR,
                f"fits both {names}: its key usage does not say which it is for",
                info.label,
            )
        ]
    return []


def _certificate_findings(
    info: CertificateInfo, now: datetime.datetime, warn_days: int = DEFAULT_WARN_DAYS
) -> list[Finding]:
    """Validity, key and signature findings about one leaf certificate."""
    findings = validity_findings(info.certificate, info.label, now, warn_days)
    if info.private_key is None:
        findings.append(
            Finding(
                "no-private-key",
                Severity.WARNING,
                f"no private key for it in {info.source or 'the files'}",
                info.label,
            )
        )
    public_key = info.certificate.public_key()
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MIN_RSA_BITS:
        findings.append(
            Finding(
                "weak-rsa",
                Severity.ERROR,
                f"RSA key of {public_key.key_size} bits (at least {MIN_RSA_BITS} needed)",
                info.label,
            )
        )
    signature_hash = info.certificate.signature_hash_algorithm
    if signature_hash is not None and signature_hash.name == "sha1":
        findings.append(
            Finding("sha1-signature", Severity.WARNING, "signed with SHA-1", info.label)
        )
    return findings + _role_findings(info)


def validity_findings(
    certificate: x509.Certificate, label: str, now: datetime.datetime, warn_days: int
) -> list[Finding]:
    """Expired, not yet valid, or expiring within ``warn_days``."""
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    if now > not_after:
        return [Finding("expired", Severity.ERROR, f"expired {not_after:%Y-%m-%d}", label)]
    if now < not_before:
        return [
            Finding(
                "not-yet-valid", Severity.ERROR, f"not valid before {not_before:%Y-%m-%d}", label
            )
        ]
    days_left = (not_after - now).days
    if days_left < warn_days:
        return [
            Finding(
                "expires-soon",
                Severity.WARNING,
                f"expires {not_after:%Y-%m-%d}, in {days_left} days",
                label,
            )
        ]
    return []


def bundle_findings(
    bundle: CertificateBundle, now: datetime.datetime, warn_days: int = DEFAULT_WARN_DAYS
) -> list[Finding]:
    """Findings about each leaf, the chain, and the roles the bundle as a whole covers."""
    findings: list[Finding] = []
    for info in bundle.certificates:
        findings.extend(_certificate_findings(info, now, warn_days))
        findings.extend(_chain_findings(bundle, info))
    for certificate in bundle.chain:
        label = f"CA certificate {name_text(certificate.subject)}"
        findings.extend(validity_findings(certificate, label, now, warn_days))
    findings.extend(_duplicate_role_findings(bundle.certificates))
    findings.extend(_missing_pair_findings(bundle))
    return findings


def _chain_findings(bundle: CertificateBundle, info: CertificateInfo) -> list[Finding]:
    path = bundle.chain_for(info)
    top = path[-1] if path else info.certificate
    if top.issuer == top.subject:
        return []
    return [
        Finding(
            "chain-incomplete",
            Severity.WARNING,
            f"its issuer {name_text(top.issuer)} is not among the files",
            info.label,
        )
    ]


def _duplicate_role_findings(certificates: Sequence[CertificateInfo]) -> Iterable[Finding]:
    for role in Role:
        claimants = [info for info in certificates if info.role is role]
        if len(claimants) > 1:
            labels = ", ".join(info.label for info in claimants)
            yield Finding(
                "role-ambiguous",
                Severity.ERROR,
                f"{len(claimants)} certificates claim the {role} role: {labels}; "
                "give only the files of the certificates to install",
                str(role),
            )


def _missing_pair_findings(bundle: CertificateBundle) -> Iterable[Finding]:
    present = {role for role in _PAIR if bundle.with_role(role)}
    if not present:
        return
    for role in _PAIR:
        if role not in present:
            yield Finding(
                "role-missing",
                Severity.WARNING,
                f"the enterprise pair is incomplete: no {role} certificate among the files",
                str(role),
            )
