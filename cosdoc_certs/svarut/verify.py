"""Verify a SvarUT host: it serves the expected certificate, runs, and prod.env agrees.

Checks made on freshly gathered facts, each a :class:`~cosdoc_certs.findings.Finding`: the
TLS endpoint serves the expected thumbprint; every container of the compose project runs;
prod.env names a certificate file holding that certificate (else the next restart would
serve something else); the key file is mode 0600 and root-owned; the served certificate is
not about to expire.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cosdoc_certs.display import Displayed
from cosdoc_certs.findings import Finding, Severity, worst
from cosdoc_certs.svarut.gather import SvarutFacts

__all__ = ["VerifyReport", "check_facts"]

EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class VerifyReport(Displayed):
    """The facts verified and what was found."""

    facts: SvarutFacts
    expected_thumbprint: str | None
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return worst(self.findings) is not Severity.ERROR

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "host": self.facts.host,
            "expected_thumbprint": self.expected_thumbprint,
            "ok": self.ok,
            "findings": [finding.to_dict() for finding in self.findings],
            "facts": self.facts.to_dict(),
        }

    def to_text(self) -> str:
        """The findings, one per line, under a header."""
        verdict = "verified" if self.ok else "NOT verified"
        lines = [f"{self.facts.host}: {verdict}"]
        lines.extend(f"  {finding}" for finding in self.findings)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.to_text())}</pre>"

    def __repr__(self) -> str:
        return f"<VerifyReport {self.facts.host} ok={self.ok} {len(self.findings)} finding(s)>"


def _served_findings(facts: SvarutFacts, expected: str | None) -> list[Finding]:
    subject = str(facts.endpoint)
    if facts.served is None:
        return [
            Finding(
                "not-served", Severity.ERROR, f"no TLS handshake: {facts.served_error}", subject
            )
        ]
    if expected and facts.served_thumbprint != expected:
        message = f"serves {facts.served_thumbprint}, expected {expected}"
        return [Finding("wrong-certificate", Severity.ERROR, message, subject)]
    found = [Finding("served", Severity.INFO, f"serves {facts.served_thumbprint}", subject)]
    days = (facts.served.certificate.not_valid_after_utc - datetime.now(timezone.utc)).days
    if days < 0:
        found.append(
            Finding("expired", Severity.ERROR, "the served certificate has expired", subject)
        )
    elif days < EXPIRY_WARNING_DAYS:
        found.append(
            Finding("expires-soon", Severity.WARNING, f"expires in {days} day(s)", subject)
        )
    return found


def _config_findings(facts: SvarutFacts, expected: str | None) -> list[Finding]:
    env = facts.layout.env_path
    found = []
    want = expected or facts.served_thumbprint
    if want and facts.current_thumbprint != want:
        message = f"{facts.cert_filename} holds {facts.current_thumbprint}, not {want}"
        found.append(
            Finding("env-mismatch", Severity.ERROR, message + " (a restart would change it)", env)
        )
    if facts.key_mode and facts.key_mode != "600 root:root":
        message = f"key file {facts.key_filename} is {facts.key_mode}, expected 600 root:root"
        found.append(Finding("key-mode", Severity.WARNING, message, env))
    return found


def _container_findings(facts: SvarutFacts) -> list[Finding]:
    if not facts.containers:
        return [
            Finding(
                "no-containers",
                Severity.ERROR,
                "no container in the compose project",
                facts.layout.root,
            )
        ]
    return [
        Finding("container-down", Severity.ERROR, f"container {container}", facts.layout.root)
        for container in facts.containers
        if not container.running
    ]


def check_facts(facts: SvarutFacts, expected_thumbprint: str | None) -> VerifyReport:
    """Verify ``facts`` against the thumbprint that should be served (pure)."""
    findings = (
        _served_findings(facts, expected_thumbprint)
        + _container_findings(facts)
        + _config_findings(facts, expected_thumbprint)
    )
    return VerifyReport(facts, expected_thumbprint, tuple(findings))
