"""The certificate core: load PFX/PEM/DER files, match keys to certificates, classify roles.

``load_bundle(["signing.p12", "encryption.p12"], password)`` returns a
:class:`CertificateBundle` whose ``.signing``, ``.encryption`` and ``.ssl`` are the
certificates for each role (decided from Key Usage / Extended Key Usage, never guessed), with
their private keys and the findings a person should act on (expired, wrong usage, no key...).
"""

from __future__ import annotations

from cosdoc_certs.certs.classify import classify, roles_of
from cosdoc_certs.certs.load import (
    FileContents,
    load_bundle,
    load_bundle_from_bytes,
    read_certificate_file,
)
from cosdoc_certs.certs.model import CertificateBundle, CertificateInfo, Role
from cosdoc_certs.certs.pkcs12 import PasswordRequiredError, WrongPasswordError
from cosdoc_certs.findings import DEFAULT_WARN_DAYS

__all__ = [
    "DEFAULT_WARN_DAYS",
    "CertificateBundle",
    "CertificateInfo",
    "FileContents",
    "PasswordRequiredError",
    "Role",
    "WrongPasswordError",
    "classify",
    "load_bundle",
    "load_bundle_from_bytes",
    "read_certificate_file",
    "roles_of",
]
