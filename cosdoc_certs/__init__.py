"""cosdoc-certs: rotate the certificates of a CosDoc installation safely.

The library is the product; the ``cosdoc-certs`` CLI is a thin layer over it. The common
path needs no other import than this package: load the new certificates, describe the
installation, read its status, plan, apply, verify, roll back — or do all of it against the
built-in lab. Every call has an ``_async`` twin of the same name::

    from cosdoc_certs import Target, load_bundle, plan_rotation, apply_rotation
    target = Target.from_inventory("kunder.toml", "testkommune")
    bundle = load_bundle(["pair.pfx", "ssl.pfx"], password)
    rplan = plan_rotation(target, bundle)          # look at it first
    result = apply_rotation(rplan, verify=True)

The errors and findings are imported at once, everything else on first use, so
``import cosdoc_certs`` stays fast. See docs/api.md.
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
    from cosdoc_certs.inventory import load_inventory
    from cosdoc_certs.lab.runner import Lab
    from cosdoc_certs.rotation import (
        InstallationStatus,
        RotationCheck,
        RotationPlan,
        RotationResult,
        RotationVerifyReport,
        Target,
        installation_status,
        installation_status_async,
        lab_target,
        status_many,
        status_many_async,
    )
    from cosdoc_certs.rotation import apply as apply_rotation
    from cosdoc_certs.rotation import apply_async as apply_rotation_async
    from cosdoc_certs.rotation import plan as plan_rotation
    from cosdoc_certs.rotation import plan_async as plan_rotation_async
    from cosdoc_certs.rotation import rollback as rollback_rotation
    from cosdoc_certs.rotation import rollback_async as rollback_rotation_async
    from cosdoc_certs.rotation import verify as verify_rotation
    from cosdoc_certs.rotation import verify_async as verify_rotation_async
    from cosdoc_certs.svarut import SshOptions, SvarutTarget
    from cosdoc_certs.thumbprints import normalize_thumbprint, thumbprint_of_der
    from cosdoc_certs.windows.connection import ConnectionOptions

__version__ = "0.1.0"

# name -> (the module that defines it, its name there), imported on first access (PEP 562)
_LAZY = {
    "AppSettings": ("cosdoc_certs.appsettings", "AppSettings"),
    "CertificateBundle": ("cosdoc_certs.certs", "CertificateBundle"),
    "CertificateInfo": ("cosdoc_certs.certs", "CertificateInfo"),
    "ConnectionOptions": ("cosdoc_certs.windows.connection", "ConnectionOptions"),
    "InstallationStatus": ("cosdoc_certs.rotation", "InstallationStatus"),
    "Lab": ("cosdoc_certs.lab.runner", "Lab"),
    "PasswordRequiredError": ("cosdoc_certs.certs", "PasswordRequiredError"),
    "Role": ("cosdoc_certs.certs", "Role"),
    "RotationCheck": ("cosdoc_certs.rotation", "RotationCheck"),
    "RotationPlan": ("cosdoc_certs.rotation", "RotationPlan"),
    "RotationResult": ("cosdoc_certs.rotation", "RotationResult"),
    "RotationVerifyReport": ("cosdoc_certs.rotation", "RotationVerifyReport"),
    "SignalReceived": ("cosdoc_certs._signals", "SignalReceived"),
    "SshOptions": ("cosdoc_certs.svarut", "SshOptions"),
    "SvarutTarget": ("cosdoc_certs.svarut", "SvarutTarget"),
    "Target": ("cosdoc_certs.rotation", "Target"),
    "apply_rotation": ("cosdoc_certs.rotation", "apply"),
    "apply_rotation_async": ("cosdoc_certs.rotation", "apply_async"),
    "installation_status": ("cosdoc_certs.rotation", "installation_status"),
    "installation_status_async": ("cosdoc_certs.rotation", "installation_status_async"),
    "lab_target": ("cosdoc_certs.rotation", "lab_target"),
    "load_bundle": ("cosdoc_certs.certs", "load_bundle"),
    "load_inventory": ("cosdoc_certs.inventory", "load_inventory"),
    "normalize_thumbprint": ("cosdoc_certs.thumbprints", "normalize_thumbprint"),
    "plan_rotation": ("cosdoc_certs.rotation", "plan"),
    "plan_rotation_async": ("cosdoc_certs.rotation", "plan_async"),
    "rollback_rotation": ("cosdoc_certs.rotation", "rollback"),
    "rollback_rotation_async": ("cosdoc_certs.rotation", "rollback_async"),
    "status_many": ("cosdoc_certs.rotation", "status_many"),
    "status_many_async": ("cosdoc_certs.rotation", "status_many_async"),
    "thumbprint_of_der": ("cosdoc_certs.thumbprints", "thumbprint_of_der"),
    "verify_rotation": ("cosdoc_certs.rotation", "verify"),
    "verify_rotation_async": ("cosdoc_certs.rotation", "verify_async"),
}
_SUBMODULES = ("rotation", "svarut")

__all__ = [
    "AppSettings",
    "ApplyError",
    "CertificateBundle",
    "CertificateInfo",
    "CertificateLoadError",
    "ConfigFileError",
    "ConnectionOptions",
    "CosDocCertsError",
    "Finding",
    "InputError",
    "InstallationStatus",
    "Lab",
    "PasswordRequiredError",
    "RemoteError",
    "Role",
    "RotationCheck",
    "RotationPlan",
    "RotationResult",
    "RotationVerifyReport",
    "Severity",
    "SignalReceived",
    "SshOptions",
    "SvarutTarget",
    "Target",
    "ThumbprintError",
    "__version__",
    "apply_rotation",
    "apply_rotation_async",
    "installation_status",
    "installation_status_async",
    "lab_target",
    "load_bundle",
    "load_inventory",
    "normalize_thumbprint",
    "plan_rotation",
    "plan_rotation_async",
    "rollback_rotation",
    "rollback_rotation_async",
    "rotation",
    "status_many",
    "status_many_async",
    "svarut",
    "thumbprint_of_der",
    "verify_rotation",
    "verify_rotation_async",
]


def __getattr__(name: str) -> Any:
    """Import a re-exported name's module on first use."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, for completion in notebooks."""
    return sorted(set(globals()) | set(__all__))
