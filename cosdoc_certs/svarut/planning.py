"""Plan a SvarUT SSL rotation from gathered facts and the new certificate — pure, no I/O.

The plan uploads *versioned* files (``cert-YYYYMMDD.crt`` with the leaf and the chain nginx
must send, ``cert-YYYYMMDD.rsa`` with the key), points ``SSL_CERT_FILENAME`` and
``SSL_CERT_KEY_FILENAME`` in prod.env at them, and restarts the compose project. The old
files stay where they are, so a rollback only points prod.env back. When the host already
serves the new certificate the plan is a no-op with that reason; when prod.env already names
it but the container still serves the old one, the plan only restarts.

If the new certificate has another issuer than the current one, the chain sent by nginx must
change as well: the bundle's intermediate certificates are used, and without them the plan
stops with a clear message rather than serving an incomplete chain.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from cosdoc_certs.certs.model import CertificateBundle, Role
from cosdoc_certs.display import Displayed
from cosdoc_certs.envfile import set_value
from cosdoc_certs.errors import InputError
from cosdoc_certs.plan import Change, ChangeKind, Plan
from cosdoc_certs.svarut.gather import SvarutFacts, compose_argv
from cosdoc_certs.thumbprints import thumbprint_of_der

__all__ = ["CONSUMER", "NewCertificate", "SvarutPlan", "Upload", "plan_rotation"]

CONSUMER = "SvarUT nginx"
CERT_MODE = 0o644
KEY_MODE = 0o600
_PEM = serialization.Encoding.PEM


def _thumbprint(certificate: x509.Certificate) -> str:
    return thumbprint_of_der(certificate.public_bytes(serialization.Encoding.DER))


def _public_der(key: Any) -> bytes:
    return key.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class NewCertificate:
    """The SSL certificate to install: leaf, its private key, and its issuers (nearest first)."""

    certificate: x509.Certificate
    private_key: PrivateKeyTypes = field(repr=False, compare=False)
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if _public_der(self.private_key.public_key()) != _public_der(self.certificate.public_key()):
            raise InputError(
                f"the private key does not belong to the certificate {self.thumbprint}",
                "give the PFX (or the key file) that was issued with this certificate",
            )

    @classmethod
    def from_bundle(cls, bundle: CertificateBundle) -> NewCertificate:
        """The bundle's SSL certificate with its key and the issuers the bundle carries."""
        info = bundle.require(Role.SSL)
        assert info.private_key is not None  # require() guarantees the key
        return cls(info.certificate, info.private_key, bundle.chain_for(info))

    @property
    def thumbprint(self) -> str:
        """The leaf's thumbprint."""
        return _thumbprint(self.certificate)

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """The issuers without the self-signed root (nginx sends those, not the root)."""
        return tuple(cert for cert in self.chain if cert.issuer != cert.subject)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM — for the 0600 key file only."""
        return self.private_key.private_bytes(
            _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def __repr__(self) -> str:
        return f"<NewCertificate {self.thumbprint} {self.certificate.subject.rfc4514_string()}>"


@dataclass(frozen=True)
class Upload:
    """One file to place on the host; ``data`` is never shown (the key file is a secret)."""

    path: str
    data: bytes = field(repr=False)
    mode: int
    description: str

    @property
    def sha256(self) -> str:
        """SHA-256 of the content (recorded in plans and journals instead of the content)."""
        return hashlib.sha256(self.data).hexdigest()

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready form without the content."""
        return {
            "path": self.path,
            "mode": f"{self.mode:04o}",
            "sha256": self.sha256,
            "content": self.description,
        }


@dataclass(frozen=True)
class SvarutPlan(Displayed):
    """A SvarUT rotation: the :class:`Plan` people read plus what apply needs to do it."""

    plan: Plan
    facts: SvarutFacts
    new: NewCertificate
    uploads: tuple[Upload, ...] = ()
    env_after: bytes | None = field(default=None, repr=False)
    backup_path: str | None = None
    restart: bool = False

    @property
    def is_empty(self) -> bool:
        """True when the host already serves the new certificate."""
        return self.plan.is_empty

    @property
    def env_sha256_after(self) -> str | None:
        """SHA-256 prod.env will have after the edit."""
        return hashlib.sha256(self.env_after).hexdigest() if self.env_after else None

    def to_dict(self) -> dict[str, Any]:
        """The plan, the host facts and the thumbprints, JSON-ready."""
        return {
            "host": self.facts.host,
            "old_thumbprint": self.facts.served_thumbprint or self.facts.current_thumbprint,
            "new_thumbprint": self.new.thumbprint,
            "facts": self.facts.to_dict(),
            "plan": self.plan.to_dict(),
        }

    def to_text(self) -> str:
        """The plan as text."""
        return self.plan.to_text()

    def _repr_html_(self) -> str:
        return self.plan._repr_html_()

    def __repr__(self) -> str:
        return f"<SvarutPlan {self.facts.host}: {self.plan!r}>"


def _pem(certificates: Iterable[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(_PEM) for cert in certificates)


def _name(name: x509.Name) -> str:
    return name.rfc4514_string()


def _issuer_id(certificate: x509.Certificate) -> tuple[x509.Name, bytes | None]:
    """The issuer's name and key identifier (a re-keyed CA keeps its name, not its key)."""
    try:
        identifier = certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
    except x509.ExtensionNotFound:
        identifier = None
    return certificate.issuer, identifier


def _issuer_changed(facts: SvarutFacts, new: NewCertificate) -> bool:
    current = facts.current_leaf
    return current is not None and _issuer_id(current) != _issuer_id(new.certificate)


def _chain_to_send(facts: SvarutFacts, new: NewCertificate) -> tuple[x509.Certificate, ...]:
    """The intermediates nginx must send after the leaf; stop if an issuer change lacks them."""
    if new.intermediates:
        return new.intermediates
    if not _issuer_changed(facts, new):
        return facts.current_chain[1:]  # same issuer: the chain served today still fits
    current = facts.current_chain[0]
    raise InputError(
        f"the new certificate is issued by {_name(new.certificate.issuer)} (key "
        f"{_key_id_text(new.certificate)}), the current one by {_name(current.issuer)} (key "
        f"{_key_id_text(current)}): the chain must change too, and no intermediate certificate "
        "was given",
        "give a PFX that includes the chain, or add the issuer's intermediate certificate "
        "(PEM/CER) to the files",
    )


def _key_id_text(certificate: x509.Certificate) -> str:
    identifier = _issuer_id(certificate)[1]
    return identifier.hex(":")[:14] + "…" if identifier else "unknown"


def _versioned_base(files: Sequence[str], today: date) -> str:
    """``cert-YYYYMMDD``, or ``cert-YYYYMMDD-N`` when that name is already taken."""
    stem = f"cert-{today:%Y%m%d}"
    candidate, number = stem, 1
    while f"{candidate}.crt" in files or f"{candidate}.rsa" in files:
        number += 1
        candidate = f"{stem}-{number}"
    return candidate


def _env_diff(before: bytes, after: bytes, name: str) -> str:
    """The changed lines of prod.env only (other lines may hold passwords)."""
    lines = difflib.unified_diff(
        before.decode("utf-8", "replace").splitlines(),
        after.decode("utf-8", "replace").splitlines(),
        fromfile=name,
        tofile=name,
        n=0,
        lineterm="",
    )
    return "\n".join(line for line in lines if not line.startswith("@@")) + "\n"


def _restart_change(facts: SvarutFacts, why: str) -> Change:
    layout = facts.layout
    commands = [" ".join(compose_argv(layout, "down")), " ".join(compose_argv(layout, "up", "-d"))]
    return Change(
        facts.host,
        CONSUMER,
        ChangeKind.RESTART_COMPOSE,
        f"{why}: in {layout.root} run `{commands[0]}` then `{commands[1]}`",
        {"folder": layout.root, "commands": commands},
    )


def plan_rotation(
    facts: SvarutFacts, new: NewCertificate, *, today: date | None = None
) -> SvarutPlan:
    """Plan installing ``new`` on the host described by ``facts``."""
    created = datetime.now(timezone.utc)
    title = f"SvarUT SSL {facts.served_thumbprint or facts.current_thumbprint} → {new.thumbprint}"
    if facts.served_thumbprint == new.thumbprint:
        reason = f"{facts.endpoint} already serves {new.thumbprint}"
        noop = Change.noop(facts.host, CONSUMER, reason, thumbprint=new.thumbprint)
        return SvarutPlan(Plan((noop,), created, title), facts, new)
    if facts.current_thumbprint == new.thumbprint:
        why = (
            f"prod.env already names {facts.cert_filename} with {new.thumbprint} but "
            f"{facts.endpoint} serves {facts.served_thumbprint or 'nothing'}"
        )
        change = _restart_change(facts, why)
        return SvarutPlan(Plan((change,), created, title), facts, new, restart=True)
    return _full_rotation(facts, new, created, title, today or created.date())


def _full_rotation(
    facts: SvarutFacts, new: NewCertificate, created: datetime, title: str, today: date
) -> SvarutPlan:
    layout = facts.layout
    chain = _chain_to_send(facts, new)
    base = _versioned_base(facts.files, today)
    cert_name, key_name = f"{base}.crt", f"{base}.rsa"
    issuer_note = "issuer changed: chain replaced" if _issuer_changed(facts, new) else "same issuer"
    uploads = (
        Upload(
            layout.file_path(cert_name),
            _pem((new.certificate, *chain)),
            CERT_MODE,
            f"certificate {new.thumbprint} + {len(chain)} intermediate(s) ({issuer_note})",
        ),
        Upload(layout.file_path(key_name), new.key_pem(), KEY_MODE, "private key"),
    )
    env_after = set_value(facts.env_bytes, layout.cert_key, cert_name)
    env_after = set_value(env_after, layout.key_key, key_name)
    backup = f"{layout.env_path}.bak-{created:%Y%m%dT%H%M%SZ}"
    upload_change = Change(
        facts.host,
        CONSUMER,
        ChangeKind.UPLOAD_FILES,
        f"upload {cert_name} (leaf + {len(chain)} intermediate(s), {issuer_note}) and "
        f"{key_name} (private key, root 0600) to {layout.files_path}",
        {"folder": layout.files_path, "files": [upload.to_dict() for upload in uploads]},
    )
    env_change = Change(
        facts.host,
        CONSUMER,
        ChangeKind.SET_ENV,
        f"point {layout.env_path} at the new files (backup {backup.rsplit('/', 1)[-1]})",
        {
            "file": layout.env_path,
            "keys": {
                layout.cert_key: {"before": facts.cert_filename, "after": cert_name},
                layout.key_key: {"before": facts.key_filename, "after": key_name},
            },
            "sha256_before": facts.env_sha256,
            "sha256_after": hashlib.sha256(env_after).hexdigest(),
            "backup": backup,
        },
        diff=_env_diff(facts.env_bytes, env_after, layout.env_file),
    )
    changes = (upload_change, env_change, _restart_change(facts, "load the new files"))
    return SvarutPlan(
        Plan(changes, created, title),
        facts,
        new,
        uploads=uploads,
        env_after=env_after,
        backup_path=backup,
        restart=True,
    )
