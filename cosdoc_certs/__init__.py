"""cosdoc-certs: rotate the certificates of a CosDoc installation safely.

The library is the product; the ``cosdoc-certs`` CLI is a thin layer over it. The public API
is re-exported here: the errors and findings at once, everything else (certificates,
rotation, SvarUT, the lab) on first use, so ``import cosdoc_certs`` stays fast::

    from cosdoc_certs import load_bundle, rotation
    bundle = load_bundle(["pair.pfx", "ssl.pfx"], password)
    rplan = rotation.plan(rotation.Target(...), bundle)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from cosdoc_certs import rotation, svarut
    from cosdoc_certs._signals import SignalReceived
    from cosdoc_certs.appsettings import AppSettings
    from cosdoc_certs.certs import (
        CertificateBundle,
        CertificateInfo,
        PasswordRequiredError,
        Role,
        load_bundle,
    )
    from cosdoc_certs.lab.runner import Lab
    from cosdoc_certs.rotation import Target, installation_status, lab_target, status_many

__version__ = "0.1.0"

# name -> the module that defines it, imported on first access (module __getattr__, PEP 562)
_LAZY = {
    "AppSettings": "cosdoc_certs.appsettings",
    "CertificateBundle": "cosdoc_certs.certs",
    "CertificateInfo": "cosdoc_certs.certs",
    "Lab": "cosdoc_certs.lab.runner",
    "PasswordRequiredError": "cosdoc_certs.certs",
    "Role": "cosdoc_certs.certs",
    "SignalReceived": "cosdoc_certs._signals",
    "Target": "cosdoc_certs.rotation",
    "installation_status": "cosdoc_certs.rotation",
    "lab_target": "cosdoc_certs.rotation",
    "load_bundle": "cosdoc_certs.certs",
    "status_many": "cosdoc_certs.rotation",
}
_SUBMODULES = ("rotation", "svarut")

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
    "Lab",
    "PasswordRequiredError",
    "RemoteError",
    "Role",
    "Severity",
    "SignalReceived",
    "Target",
    "ThumbprintError",
    "__version__",
    "installation_status",
    "lab_target",
    "load_bundle",
    "normalize_thumbprint",
    "rotation",
    "status_many",
    "svarut",
    "thumbprint_of_der",
]


def __getattr__(name: str) -> Any:
    """Import a re-exported name's module on first use."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, for completion in notebooks."""
    return sorted(set(globals()) | set(__all__))
