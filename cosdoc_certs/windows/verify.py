r"""Verify a Windows rotation: the server's state now proves that the plan took effect.

:func:`verify_windows` gathers the server's facts once more (one pipeline, the same
``gather.ps1`` as ``status``), shakes hands with every HTTPS binding over real TLS (SNI with
the binding's host name where it has one), and checks with :func:`check_windows` (pure):

- ``config`` — every key the plan edited names its new thumbprint (normalised compare);
- ``service`` / ``pool`` — every service the plan restarted runs, every pool it recycled is
  Started;
- ``doctor`` — the doctor finds no error on the consumers the plan changed;
- ``binding`` — every HTTPS binding *serves* what it should: the new certificate where the
  plan rebound its http.sys entry, otherwise the certificate http.sys is configured with.

:func:`verify_desired` / :func:`check_desired` verify against the *desired* state instead of a
plan — what ``cosdoc-certs verify`` does, so a no-op run and a rolled-back run are judged too:

- ``uses`` — every configured certificate use (config key, HTTPS binding) names the newest
  valid certificate of its role in ``LocalMachine\My`` (else: what it names, and the newest);
- ``doctor`` — no error on any consumer (missing certificate, wrong role, key not readable by
  the consumer's identity, expiry...);
- ``service`` / ``pool`` — every automatic service of the consumers runs, every pool of their
  applications is Started;
- ``binding`` — every HTTPS binding serves the newest SSL certificate in a real handshake.

:func:`verify_desired_facts` makes the same checks over facts already read — the post-state
``apply.ps1`` read at the end of its pipeline — with real handshakes made now.

The :class:`WindowsVerifyReport` lists each check with ok/failed and a message; ``.ok`` is
True when all passed; ``facts_from`` says where the server's facts came from. It renders as
text, JSON (``to_dict``) and HTML in notebooks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from cosdoc_certs.appsettings import AppSettings, same_thumbprint
from cosdoc_certs.certs.model import Role, utc_now
from cosdoc_certs.consumers import COSDOC_CATALOG, Consumer
from cosdoc_certs.display import Displayed
from cosdoc_certs.errors import CosDocCertsError, InputError
from cosdoc_certs.facts import (
    ConsumerStatus,
    StoreCertificate,
    WindowsFacts,
    diagnose,
    served_thumbprint,
)
from cosdoc_certs.findings import Severity
from cosdoc_certs.plan import Change, ChangeKind, Plan
from cosdoc_certs.status import gather
from cosdoc_certs.tls import fetch_certificate
from cosdoc_certs.windows.connection import WindowsHost
from cosdoc_certs.windows.gather import BindingFact
from cosdoc_certs.windows.planning import http_sys_entry, short_thumbprint

__all__ = [
    "Served",
    "TlsAddress",
    "VerifyCheck",
    "WindowsVerifyReport",
    "check_desired",
    "check_windows",
    "endpoint_map",
    "newest_valid",
    "verify_desired",
    "verify_desired_facts",
    "verify_windows",
]

log = logging.getLogger(__name__)

TlsAddress = Callable[[BindingFact], tuple[str, int]]
"""Where to shake hands with a binding: ``(host, port)``."""
Served = str | CosDocCertsError
"""What a binding served in a handshake: a thumbprint, or why there was no handshake."""
FRESH_GATHER = "a gather of its own (gather.ps1)"
"""Where a verification's facts came from when it read the server itself."""
POST_STATE = "the post-state apply.ps1 read at the end of its pipeline (gather.ps1)"
"""Where they came from when the apply's own read was used."""


@dataclasses.dataclass(frozen=True)
class VerifyCheck:
    """One thing verified: its kind, what it is about, whether it holds, and what was seen."""

    kind: str
    subject: str
    ok: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'FAILED'} [{self.kind}] {self.subject}: {self.message}"


@dataclasses.dataclass(frozen=True)
class WindowsVerifyReport(Displayed):
    """The checks made after a Windows rotation; ``ok`` when every one passed."""

    host: str
    computer_name: str
    gathered_at: dt.datetime
    checks: tuple[VerifyCheck, ...]
    facts_from: str = FRESH_GATHER

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> tuple[VerifyCheck, ...]:
        """The checks that did not pass."""
        return tuple(check for check in self.checks if not check.ok)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``--json``)."""
        return {
            "host": self.host,
            "computer_name": self.computer_name,
            "gathered_at": self.gathered_at.isoformat(),
            "facts_from": self.facts_from,
            "ok": self.ok,
            "checks": [check.to_dict() for check in self.checks],
        }

    def to_text(self) -> str:
        """A verdict line, then one line per check (failures first)."""
        verdict = "verified" if self.ok else f"NOT verified: {len(self.failed)} check(s) failed"
        lines = [
            f"{self.host} ({self.computer_name}): {verdict}",
            f"  server facts from {self.facts_from} at {self.gathered_at:%Y-%m-%d %H:%M:%S}Z; "
            "TLS handshakes made now",
        ]
        ordered = sorted(self.checks, key=lambda check: check.ok)
        lines.extend(f"  {check}" for check in ordered)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<WindowsVerifyReport {self.host} ok={self.ok}: {len(self.checks)} check(s), "
            f"{len(self.failed)} failed>"
        )

    def _repr_html_(self) -> str:
        rows = "".join(_html_row(check) for check in sorted(self.checks, key=lambda c: c.ok))
        return (
            f"<div><b>{html.escape(repr(self))}</b>"
            f"<p>server facts from {html.escape(self.facts_from)}</p>"
            f"<table><tr><th></th><th>check</th><th>subject</th><th>seen</th></tr>{rows}</table></div>"
        )


def _html_row(check: VerifyCheck) -> str:
    style = "" if check.ok else ' style="color:red"'
    cells = ("ok" if check.ok else "FAILED", check.kind, check.subject, check.message)
    return f"<tr{style}>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"


def verify_windows(
    host: WindowsHost,
    plan: Plan,
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
    *,
    tls_address: TlsAddress | None = None,
    now: dt.datetime | None = None,
) -> WindowsVerifyReport:
    """Re-gather once, shake hands with every HTTPS binding, and check the plan took effect."""
    facts = gather(host, consumers)
    address = tls_address or _connection_address(host)
    bindings = facts.iis.bindings if facts.iis else ()
    served = {binding: _handshake(binding, address) for binding in bindings}
    report = check_windows(facts, plan, served, consumers, now=now, host=host.options.address)
    log.info("verify of %s: %r", host.options.address, report)
    return report


def verify_desired(
    host: WindowsHost,
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
    *,
    tls_address: TlsAddress | None = None,
    now: dt.datetime | None = None,
) -> tuple[WindowsVerifyReport, WindowsFacts]:
    """Gather once, shake hands with every binding, check the desired state; and the facts."""
    facts = gather(host, consumers)
    report = verify_desired_facts(
        facts,
        consumers,
        server=host.options.server,
        host=host.options.address,
        tls_address=tls_address,
        now=now,
    )
    return report, facts


def verify_desired_facts(
    facts: WindowsFacts,
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
    *,
    server: str,
    host: str | None = None,
    tls_address: TlsAddress | None = None,
    now: dt.datetime | None = None,
    facts_from: str = FRESH_GATHER,
) -> WindowsVerifyReport:
    """:func:`verify_desired` over facts already read (``facts_from`` says where from).

    The handshakes are made now, with every HTTPS binding of ``facts`` (at ``server`` and
    the binding's port, unless ``tls_address`` says otherwise).
    """
    address = tls_address or (lambda binding: (server, binding.port))
    bindings = facts.iis.bindings if facts.iis else ()
    served = {binding: _handshake(binding, address) for binding in bindings}
    report = check_desired(facts, served, consumers, now=now, host=host or server)
    report = dataclasses.replace(report, facts_from=facts_from)
    log.info("verify of %s against the desired state: %r", host or server, report)
    return report


def newest_valid(facts: WindowsFacts, role: Role, now: dt.datetime) -> StoreCertificate | None:
    """The newest certificate of ``role`` in the store that is valid at ``now``."""
    valid = [
        certificate
        for certificate in facts.certificates
        if certificate.role is role
        and certificate.info.not_before <= now < certificate.info.not_after
    ]
    return max(valid, key=lambda certificate: certificate.info.not_before, default=None)


def check_desired(
    facts: WindowsFacts,
    served: Mapping[BindingFact, Served],
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
    *,
    now: dt.datetime | None = None,
    host: str | None = None,
) -> WindowsVerifyReport:
    """The checks of :func:`verify_desired` over facts and handshake results (pure)."""
    moment = now or utc_now()
    statuses = diagnose(facts, consumers, now=moment)
    newest = {role: newest_valid(facts, role, moment) for role in Role}
    checks = [
        *_use_checks(statuses, newest),
        *(_doctor_check(status) for status in statuses if status.uses),
        *_all_running_checks(facts),
        *_served_checks(facts, served, newest[Role.SSL]),
    ]
    name = host or facts.computer_name
    return WindowsVerifyReport(name, facts.computer_name, facts.document.gathered_at, tuple(checks))


def _use_checks(
    statuses: Iterable[ConsumerStatus], newest: Mapping[Role, StoreCertificate | None]
) -> Iterator[VerifyCheck]:
    for status in statuses:
        for use in status.uses:
            if use.configured is None:  # a certificate to select by hand, not a use
                continue
            best = newest[use.role]
            subject = f"{status.name}: {use.subject}"
            named = use.thumbprint or repr(use.configured)
            if best is None:
                yield VerifyCheck("uses", subject, False, f"names {named}; no valid {use.role}")
            elif use.thumbprint == best.thumbprint:
                yield VerifyCheck("uses", subject, True, f"names {named}, the newest {use.role}")
            else:
                yield VerifyCheck(
                    "uses",
                    subject,
                    False,
                    f"names {named}, not the newest valid {use.role} certificate "
                    f"{best.thumbprint} (valid to {best.info.not_after:%Y-%m-%d})",
                )


def _doctor_check(status: ConsumerStatus) -> VerifyCheck:
    errors = [f for f in status.findings if f.severity is Severity.ERROR]
    message = "; ".join(f"{f.subject}: {f.message} ({f.code})" for f in errors)
    return VerifyCheck("doctor", status.name, not errors, message or "no errors")


def _all_running_checks(facts: WindowsFacts) -> Iterator[VerifyCheck]:
    for service in facts.services:
        if service.start_mode.casefold().startswith("auto"):
            ok = service.state == "Running"
            yield VerifyCheck("service", service.name, ok, f"is {service.state}")
    if facts.iis is None:
        return
    used = {application.app_pool.casefold() for application in facts.iis.applications}
    for pool in facts.iis.app_pools:
        if pool.name.casefold() in used:
            yield VerifyCheck("pool", pool.name, pool.state == "Started", f"is {pool.state}")


def _served_checks(
    facts: WindowsFacts, served: Mapping[BindingFact, Served], newest: StoreCertificate | None
) -> Iterator[VerifyCheck]:
    bindings = facts.iis.bindings if facts.iis else ()
    for binding in bindings:
        seen = served.get(binding)
        if seen is None or isinstance(seen, CosDocCertsError):
            problem = seen.problem if seen is not None else "no handshake was made"
            yield VerifyCheck("binding", str(binding), False, problem)
        elif newest is not None and seen.upper() == newest.thumbprint:
            yield VerifyCheck("binding", str(binding), True, f"serves {seen} (the newest SSL)")
        else:
            wanted = newest.thumbprint if newest else "a valid SSL certificate"
            yield VerifyCheck("binding", str(binding), False, f"serves {seen}, not {wanted}")


def check_windows(
    facts: WindowsFacts,
    plan: Plan,
    served: Mapping[BindingFact, Served],
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
    *,
    now: dt.datetime | None = None,
    host: str | None = None,
) -> WindowsVerifyReport:
    """The checks of :func:`verify_windows` over facts and handshake results (pure)."""
    checks = [
        *_config_checks(facts, plan),
        *_running_checks(facts, plan),
        *_doctor_checks(facts, plan, consumers, now or utc_now()),
        *_binding_checks(facts, plan, served),
    ]
    name = host or (plan.hosts[0] if plan.hosts else facts.computer_name)
    return WindowsVerifyReport(name, facts.computer_name, facts.document.gathered_at, tuple(checks))


def endpoint_map(endpoints: Mapping[str, str]) -> TlsAddress:
    """A ``tls_address`` from ``{"ip:port": "host:port"}`` (the lab's ``tls_endpoints``)."""

    def address(binding: BindingFact) -> tuple[str, int]:
        key = f"{binding.ip or '*'}:{binding.port}"
        target = endpoints.get(key)
        if target is None:
            raise InputError(
                f"no TLS address for {binding} ({key})",
                f"the endpoints map knows {', '.join(sorted(endpoints)) or 'nothing'}",
            )
        where, _, port = target.rpartition(":")
        return where, int(port)

    return address


def _connection_address(host: WindowsHost) -> TlsAddress:
    server = host.options.server
    return lambda binding: (server, binding.port)


def _handshake(binding: BindingFact, address: TlsAddress) -> Served:
    try:
        where, port = address(binding)
        return fetch_certificate(where, port, server_name=binding.host or "").thumbprint
    except CosDocCertsError as error:
        return error


def _actions(plan: Plan, kind: ChangeKind) -> Iterator[Change]:
    return (change for change in plan.actions if change.kind is kind)


# -- config values ----------------------------------------------------------------------------


def _config_checks(facts: WindowsFacts, plan: Plan) -> Iterator[VerifyCheck]:
    for change in _actions(plan, ChangeKind.EDIT_CONFIG_KEY):
        path = change.details["file"]
        gathered = facts.config_file(path)
        if gathered is None or gathered.content is None:
            yield VerifyCheck("config", path, False, "the file is gone")
            continue
        try:
            settings = AppSettings.parse(gathered.content, source=path)
            yield from (_edit_check(settings, edit) for edit in change.details["edits"])
        except CosDocCertsError as error:
            yield VerifyCheck("config", path, False, str(error))


def _edit_check(settings: AppSettings, edit: Mapping[str, str]) -> VerifyCheck:
    subject = f"{settings.source} {edit['path']}"
    value = settings.find(edit["path"])
    if value is None:
        return VerifyCheck("config", subject, False, "the setting is gone")
    if same_thumbprint(value.value, edit["new"]):
        return VerifyCheck("config", subject, True, f"names {edit['new']} ({edit['role']})")
    return VerifyCheck(
        "config", subject, False, f"names {value.value!r}, not {edit['new']} ({edit['role']})"
    )


# -- services and pools -----------------------------------------------------------------------


def _running_checks(facts: WindowsFacts, plan: Plan) -> Iterator[VerifyCheck]:
    states = {service.name.casefold(): service.state for service in facts.services}
    for change in _actions(plan, ChangeKind.RESTART_SERVICE):
        name = change.details["service"]
        state = states.get(name.casefold(), "not found")
        yield VerifyCheck("service", name, state == "Running", f"is {state}")
    pools = {
        pool.name.casefold(): pool.state for pool in (facts.iis.app_pools if facts.iis else ())
    }
    for change in _actions(plan, ChangeKind.RECYCLE_POOL):
        name = change.details["pool"]
        state = pools.get(name.casefold(), "not found")
        yield VerifyCheck("pool", name, state == "Started", f"is {state}")


# -- the doctor -------------------------------------------------------------------------------


def _doctor_checks(
    facts: WindowsFacts, plan: Plan, consumers: Sequence[Consumer], now: dt.datetime
) -> Iterator[VerifyCheck]:
    rotated = {change.consumer for change in plan.actions}
    for status in diagnose(facts, consumers, now=now):
        if status.name not in rotated:
            continue
        errors = [f for f in status.findings if f.severity is Severity.ERROR]
        message = "; ".join(f"{f.subject}: {f.message} ({f.code})" for f in errors)
        yield VerifyCheck("doctor", status.name, not errors, message or "no errors")


# -- HTTPS bindings ---------------------------------------------------------------------------


def _binding_checks(
    facts: WindowsFacts, plan: Plan, served: Mapping[BindingFact, Served]
) -> Iterator[VerifyCheck]:
    iis = facts.iis
    if iis is None:
        return
    rebound = _rebound_entries(iis.bindings, plan.actions)
    for binding in iis.bindings:
        configured = served_thumbprint(iis, binding).upper()
        new = rebound.get(http_sys_entry(binding))
        yield _binding_check(binding, configured, new, served.get(binding))


def _rebound_entries(
    bindings: Iterable[BindingFact], changes: Iterable[Change]
) -> dict[tuple[str, str, int], str]:
    """The http.sys entries the plan rebound, with the thumbprint each must serve now."""
    wanted = {
        (change.details["site"].casefold(), change.details["binding"].casefold()): change.details[
            "new_thumbprint"
        ]
        for change in changes
        if change.kind is ChangeKind.REBIND_HTTPS
    }
    return {
        http_sys_entry(binding): wanted[key]
        for binding in bindings
        if (key := (binding.site.casefold(), binding.binding_information.casefold())) in wanted
    }


def _binding_check(
    binding: BindingFact, configured: str, new: str | None, served: Served | None
) -> VerifyCheck:
    subject = str(binding)
    expected = new or configured
    if served is None:
        return VerifyCheck("binding", subject, False, "no handshake was made")
    if isinstance(served, CosDocCertsError):
        return VerifyCheck("binding", subject, False, served.problem)
    if binding.central_store:
        return VerifyCheck(
            "binding",
            subject,
            True,
            f"serves {short_thumbprint(served)} from the Central Certificate Store — not "
            "compared: its PFX is replaced by hand (see the plan's manual step)",
        )
    if new is not None and configured != new:
        return VerifyCheck(
            "binding",
            subject,
            False,
            f"http.sys is configured with {configured or 'nothing'}, not the new {new}",
        )
    if served.upper() != expected:
        return VerifyCheck(
            "binding", subject, False, f"serves {served}, expected {expected or 'a certificate'}"
        )
    what = "the new certificate" if new else "its configured certificate"
    return VerifyCheck("binding", subject, True, f"serves {short_thumbprint(served)} ({what})")
