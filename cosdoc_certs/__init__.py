"""cosdoc-certs: rotate the certificates of a CosDoc installation safely.

The library is the product; the ``cosdoc-certs`` CLI is a thin layer over it. The public API
is re-exported here.
"""

from __future__ import annotations

from cosdoc_certs.appsettings import AppSettings
from cosdoc_certs.certs import (
    CertificateBundle,
    CertificateInfo,
    PasswordRequiredError,
    Role,
    load_bundle,
)
from cosdoc_certs.errors import (
    ApplyError,
    CertificateLoadError,
    ConfigFileError,
    CosDocCertsError,
    InputError,
    RemoteError,
    ThumbprintError,
)
from cosdoc_certs.findings import Finding, Severity
from cosdoc_certs.thumbprints import normalize_thumbprint, thumbprint_of_der

__version__ = "0.1.0"

__all__ = [
    "AppSettings",
    "ApplyError",
    "CertificateBundle",
    "CertificateInfo",
    "CertificateLoadError",
    "ConfigFileError",
    "CosDocCertsError",
    "Finding",
    "InputError",
    "PasswordRequiredError",
    "RemoteError",
    "Role",
    "Severity",
    "ThumbprintError",
    "__version__",
    "load_bundle",
    "normalize_thumbprint",
    "thumbprint_of_der",
]
