"""SvarUT: rotate the SSL certificate of the nginx container on the SvarUT Linux host.

Over SSH (asyncssh): gather the host's facts, plan (pure), apply with a journal and rollback,
verify with a TLS handshake. No PFX and no password ever reaches the host; the key file is
installed root-owned 0600 through a private temp folder that is removed afterwards.

Library use::

    from cosdoc_certs import svarut
    target = svarut.SvarutTarget(svarut.SshOptions("svarut01.kommune.no", username="drift"))
    new = svarut.load_new_certificate(["ssl.pfx"], password)
    plan = svarut.plan(target, new)        # read it first
    result = svarut.apply(target, plan)    # rolls back and raises ApplyError on failure
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cosdoc_certs.svarut.api import (
    SvarutTarget,
    apply,
    apply_async,
    check,
    check_async,
    load_new_certificate,
    plan,
    plan_async,
    rollback,
    rollback_async,
    status,
    status_async,
    verify,
    verify_async,
)
from cosdoc_certs.svarut.apply import RunResult
from cosdoc_certs.svarut.check import StepVerdict, SvarutCheck
from cosdoc_certs.svarut.connection import (
    CommandResult,
    ConnectionLostError,
    HostConnection,
    SshOptions,
    SudoPasswordError,
)
from cosdoc_certs.svarut.gather import ContainerState, Endpoint, SvarutFacts
from cosdoc_certs.svarut.layout import SAMDRIFT, SINGLE, Layout
from cosdoc_certs.svarut.planning import NewCertificate, SvarutPlan, plan_rotation
from cosdoc_certs.svarut.verify import VerifyReport

if TYPE_CHECKING:
    from cosdoc_certs.svarut.ssh import SvarutConnection, connect

__all__ = [
    "SAMDRIFT",
    "SINGLE",
    "CommandResult",
    "ConnectionLostError",
    "ContainerState",
    "Endpoint",
    "HostConnection",
    "Layout",
    "NewCertificate",
    "RunResult",
    "SshOptions",
    "StepVerdict",
    "SudoPasswordError",
    "SvarutCheck",
    "SvarutConnection",
    "SvarutFacts",
    "SvarutPlan",
    "SvarutTarget",
    "VerifyReport",
    "apply",
    "apply_async",
    "check",
    "check_async",
    "connect",
    "load_new_certificate",
    "plan",
    "plan_async",
    "plan_rotation",
    "rollback",
    "rollback_async",
    "status",
    "status_async",
    "verify",
    "verify_async",
]


_OVER_SSH = frozenset({"SvarutConnection", "connect"})


def __getattr__(name: str) -> Any:
    """``SvarutConnection`` and ``connect`` load asyncssh: imported when first asked for."""
    if name in _OVER_SSH:
        from cosdoc_certs.svarut import ssh

        return getattr(ssh, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
