"""The doctor, table-driven: a lab scenario → the findings it must produce (and where).

Each scenario changes the default lab installation the way it goes wrong at customers, gathers
with the lab twin of gather.ps1 (the same document the real pypsrp path carries, see
tests/test_status_lab.py) and runs :func:`cosdoc_certs.facts.diagnose`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cosdoc_certs.consumers import COSDOC_CATALOG, config_files, service_patterns
from cosdoc_certs.facts import WindowsFacts, can_read, diagnose
from cosdoc_certs.findings import Finding, Severity
from cosdoc_certs.lab.model import Binding
from cosdoc_certs.lab.scenarios import SCENARIOS as SCENARIO_BUILDERS
from cosdoc_certs.lab.scenarios import (
    LabCertificates,
    LabServer,
    default_installation,
    edit_settings,
    make_lab_certificates,
)
from cosdoc_certs.lab.twins.gather import gather_document

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
DIGIHELSE = "Digihelse.Meldingstjeneste"
SIGNING_KEY = "$.CertSettings.SigningThumbprint"
DEFAULT_CODES = {"thumbprint-invisible-char", "thumbprint-lowercase", "cng-key"}


@pytest.fixture(scope="module")
def certificates() -> LabCertificates:
    return make_lab_certificates(now=NOW)


@pytest.fixture
def server(certificates: LabCertificates) -> Iterator[LabServer]:
    installation = default_installation(now=NOW, certificates=certificates)
    yield installation
    installation.close()


def _findings(server: LabServer, *, now: dt.datetime = NOW, warn_days: int = 30) -> list[Finding]:
    document = gather_document(
        server, service_patterns(COSDOC_CATALOG), config_files(COSDOC_CATALOG)
    )
    facts = WindowsFacts.from_json(document.to_json())
    statuses = diagnose(facts, COSDOC_CATALOG, now=now, warn_days=warn_days)
    return [finding for status in statuses for finding in status.findings]


def _settings(server: LabServer, service: str = DIGIHELSE) -> str:
    return server.service(service).settings_file


def _set_digihelse_signing(value: str) -> Callable[[LabServer], None]:
    return lambda server: edit_settings(server, _settings(server), {SIGNING_KEY[2:]: value})


def _add_renewed_signing(server: LabServer) -> None:
    renewed = server.certificates.renewed.signing
    server.store.add(renewed.certificate, renewed.private_key)


def _rotate_kpr_signing_only(server: LabServer) -> None:
    """A rotation that reached KPR but missed Digihelse: the newer certificate is in use."""
    _add_renewed_signing(server)
    renewed = server.certificates.renewed.signing.thumbprint
    for service in ("KPR.Innsending", "KPR.Overvaker"):
        edit_settings(server, _settings(server, service), {SIGNING_KEY[2:]: renewed})


def _point_at_public_only_certificate(server: LabServer) -> None:
    renewed = server.certificates.renewed.signing
    server.store.add(renewed.certificate)
    _set_digihelse_signing(renewed.thumbprint)(server)


def _delete_signing_key_file(server: LabServer) -> None:
    entry = server.store.get(server.certificates.current.signing.thumbprint)
    assert entry.key_file is not None
    server.files.delete(entry.key_file)


def _revoke_digihelse_read(server: LabServer) -> None:
    thumbprint = server.certificates.current.signing.thumbprint
    server.store.revoke_read(thumbprint, server.service(DIGIHELSE).account)


def _swap_kpr_roles(server: LabServer) -> None:
    pair = server.certificates.current
    edit_settings(
        server,
        _settings(server, "KPR.Innsending"),
        {
            "CertSettings.EncryptionThumbprint": pair.signing.thumbprint,
            "CertSettings.SigningThumbprint": pair.encryption.thumbprint,
        },
    )


def _point_at_expired_previous(server: LabServer) -> None:
    _set_digihelse_signing(server.certificates.previous.signing.thumbprint)(server)


def _serve_expired_on_drift(server: LabServer) -> None:
    expired = server.certificates.previous.encryption
    binding = server.find_binding("CosDoc Drift", "*:443:cosdoc.testkommune.no")
    binding.thumbprint = expired.thumbprint


def _add_specific_ip_binding(server: LabServer) -> None:
    thumbprint = server.certificates.current_ssl.thumbprint
    server.site("CosDoc Test").bindings.append(Binding("https", "10.0.0.5", 443, "", 0, thumbprint))


def _add_binding_without_certificate(server: LabServer) -> None:
    server.site("CosDoc Test").bindings.append(Binding("https", "*", 8443, "", 0, None))


def _remove_kpr(server: LabServer) -> None:
    for name in ("KPR.Innsending", "KPR.Overvaker"):
        del server.services[name]


def _delete_digihelse_config(server: LabServer) -> None:
    server.files.delete(_settings(server))


def _break_digihelse_config(server: LabServer) -> None:
    server.files.write(
        _settings(server), b'{\r\n  "CertSettings": {\r\n    "SigningThumbprint": \r\n'
    )


def _drop_digihelse_signing_key(server: LabServer) -> None:
    server.files.write(_settings(server), b'{ "CertSettings": { "EncryptionThumbprint": "" } }')


def _stop_digihelse(server: LabServer) -> None:
    server.stop_service(DIGIHELSE)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A change to the default lab and the finding it must produce."""

    change: Callable[[LabServer], None]
    code: str
    subject: str
    severity: Severity
    now: dt.datetime = NOW
    warn_days: int = 30


SCENARIOS = {
    "malformed thumbprint": Scenario(
        _set_digihelse_signing("ABC123"),
        "thumbprint-malformed",
        f"{DIGIHELSE} {SIGNING_KEY}",
        Severity.ERROR,
    ),
    "thumbprint with spaces": Scenario(
        lambda s: _set_digihelse_signing(" ".join(s.certificates.current.signing.thumbprint))(s),
        "thumbprint-separators",
        f"{DIGIHELSE} {SIGNING_KEY}",
        Severity.WARNING,
    ),
    "thumbprint not in the store": Scenario(
        _set_digihelse_signing("AB" * 20),
        "thumbprint-not-in-store",
        f"{DIGIHELSE} {SIGNING_KEY}",
        Severity.ERROR,
    ),
    "expired certificate": Scenario(
        _point_at_expired_previous, "expired", f"{DIGIHELSE} {SIGNING_KEY}", Severity.ERROR
    ),
    "expiring within the warning window": Scenario(
        lambda server: None,
        "expires-soon",
        f"{DIGIHELSE} {SIGNING_KEY}",
        Severity.WARNING,
        warn_days=60,
    ),
    "not valid yet": Scenario(
        lambda server: None,
        "not-yet-valid",
        f"{DIGIHELSE} {SIGNING_KEY}",
        Severity.ERROR,
        now=NOW - dt.timedelta(days=3 * 365),
    ),
    "signing and encryption swapped": Scenario(
        _swap_kpr_roles, "wrong-role", f"KPR.Innsending {SIGNING_KEY}", Severity.ERROR
    ),
    "certificate without its private key": Scenario(
        _point_at_public_only_certificate,
        "no-private-key",
        f"{DIGIHELSE} {SIGNING_KEY}",
        Severity.ERROR,
    ),
    "account cannot read the key": Scenario(
        _revoke_digihelse_read, "key-not-readable", f"{DIGIHELSE} {SIGNING_KEY}", Severity.ERROR
    ),
    "key file gone": Scenario(
        _delete_signing_key_file, "key-file-unknown", f"{DIGIHELSE} {SIGNING_KEY}", Severity.WARNING
    ),
    "old certificate still referenced where another consumer uses the newer": Scenario(
        _rotate_kpr_signing_only, "superseded", f"{DIGIHELSE} {SIGNING_KEY}", Severity.WARNING
    ),
    "newer certificate imported but used by no consumer": Scenario(
        _add_renewed_signing, "newer-not-used", f"{DIGIHELSE} {SIGNING_KEY}", Severity.INFO
    ),
    "binding serves an expired certificate": Scenario(
        _serve_expired_on_drift,
        "expired",
        "https *:443:cosdoc.testkommune.no (CosDoc Drift)",
        Severity.ERROR,
    ),
    "binding without certificate": Scenario(
        _add_binding_without_certificate,
        "binding-no-certificate",
        "https *:8443: (CosDoc Test)",
        Severity.ERROR,
    ),
    "non-SNI binding on a specific IP": Scenario(
        _add_specific_ip_binding,
        "sni-shadowed",
        "https *:443:cosdoc-test.testkommune.no (CosDoc Test)",
        Severity.WARNING,
    ),
    "services not installed": Scenario(_remove_kpr, "consumer-not-found", "KPR", Severity.WARNING),
    "config file missing": Scenario(
        _delete_digihelse_config, "config-missing", DIGIHELSE, Severity.ERROR
    ),
    "config file broken": Scenario(
        _break_digihelse_config, "config-invalid", DIGIHELSE, Severity.ERROR
    ),
    "setting missing": Scenario(
        _drop_digihelse_signing_key, "setting-missing", f"{DIGIHELSE} {SIGNING_KEY}", Severity.ERROR
    ),
    "service stopped": Scenario(_stop_digihelse, "not-running", DIGIHELSE, Severity.WARNING),
}


def test_the_default_installation_has_only_the_seeded_findings(server: LabServer) -> None:
    findings = _findings(server)
    assert {finding.code for finding in findings} == DEFAULT_CODES
    invisible = [f for f in findings if f.code == "thumbprint-invisible-char"]
    assert [f.subject for f in invisible] == [f"KPR.Overvaker {SIGNING_KEY}"]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_scenario_gives_its_finding(server: LabServer, name: str) -> None:
    scenario = SCENARIOS[name]
    scenario.change(server)
    findings = _findings(server, now=scenario.now, warn_days=scenario.warn_days)
    matching = [f for f in findings if f.code == scenario.code and f.subject == scenario.subject]
    assert matching, sorted((f.code, f.subject) for f in findings)
    assert {f.severity for f in matching} == {scenario.severity}
    assert all(f.message and "\n" not in f.message for f in matching)


def test_every_finding_code_of_the_doctor_has_a_scenario() -> None:
    documented = Path(__file__).resolve().parent.parent / "docs" / "status.md"
    text = documented.read_text(encoding="utf-8")
    codes = (
        {scenario.code for scenario in SCENARIOS.values()} | DEFAULT_CODES | {"binding-mismatch"}
    )
    for code in codes:
        assert f"`{code}`" in text, f"docs/status.md does not explain {code}"


def test_iis_and_http_sys_disagreeing_is_flagged() -> None:
    sample = Path(__file__).parent / "windows" / "gather-sample.json"
    data = json.loads(sample.read_text(encoding="utf-8"))
    served = data["certificates"][0]["thumbprint"]  # netsh serves it on 0.0.0.0:8443
    data["iis"]["bindings"][1]["certificateHash"] = data["certificates"][1]["thumbprint"]
    facts = WindowsFacts.from_json(json.dumps(data))
    statuses = diagnose(facts, COSDOC_CATALOG, now=NOW)
    bindings = next(s for s in statuses if s.name == "IIS HTTPS bindings")
    mismatch = [f for f in bindings.findings if f.code == "binding-mismatch"]
    assert [f.subject for f in mismatch] == ["https *:8443: (CosDoc Drift)"]
    assert served in mismatch[0].message
    assert [use.thumbprint for use in bindings.uses][1] == served


def test_the_golden_sample_resolves_services_and_missing_files() -> None:
    sample = Path(__file__).parent / "windows" / "gather-sample.json"
    facts = WindowsFacts.from_json(sample.read_text(encoding="utf-8"))
    statuses = {s.name: s for s in diagnose(facts, COSDOC_CATALOG, now=NOW)}
    digihelse = statuses["Digihelse"]
    assert [use.setting for use in digihelse.uses] == [
        "$.CertSettings.EncryptionThumbprint",
        SIGNING_KEY,
    ]
    codes = {(f.code, f.subject) for f in statuses["KPR"].findings}
    assert ("config-missing", "KPR.Innsending") in codes
    assert ("not-running", "KPR.Innsending") in codes
    assert ("key-not-readable", f"Digihelse.Meldingstjeneste {SIGNING_KEY}") in {
        (f.code, f.subject) for f in digihelse.findings
    }


@pytest.mark.parametrize(
    ("account", "readers", "expected"),
    [
        ("S-1-5-21-1-2-3-1001", ["S-1-5-21-1-2-3-1001"], True),
        ("S-1-5-18", ["S-1-5-18"], True),
        ("S-1-5-18", ["S-1-5-32-544"], True),  # SYSTEM is an administrator
        ("S-1-5-20", ["S-1-5-20"], True),
        ("S-1-5-82-1-2-3-4-5", ["S-1-5-32-568"], True),  # app-pool identity in IIS_IUSRS
        ("S-1-5-21-1-2-3-1001", ["S-1-1-0"], True),  # Everyone
        ("S-1-5-21-1-2-3-1001", ["S-1-5-18", "S-1-5-32-544"], False),
        ("S-1-5-21-1-2-3-1001", ["S-1-5-32-568"], False),
        ("S-1-5-82-1-2-3-4-5", ["S-1-5-82-1-2-3-4-6"], False),
        ("S-1-5-20", [None, "S-1-5-19"], False),  # an unresolved reader matches nothing
    ],
)
def test_who_can_read_a_key(account: str, readers: list[str | None], expected: bool) -> None:
    assert can_read(account, readers) is expected


@pytest.mark.parametrize(
    ("scenario", "authentication_instances"),
    [
        ("deviating-paths", 1),
        ("capi-keys", 1),
        ("samdrift", 2),
    ],
)
def test_other_installations_are_found_without_deviations(
    scenario: str, authentication_instances: int
) -> None:
    with SCENARIO_BUILDERS[scenario](now=NOW) as server:
        findings = _findings(server)
        document = gather_document(
            server, service_patterns(COSDOC_CATALOG), config_files(COSDOC_CATALOG)
        )
        statuses = diagnose(WindowsFacts.from_document(document), COSDOC_CATALOG, now=NOW)
    assert {finding.code for finding in findings} <= DEFAULT_CODES
    by_name = {status.name: status for status in statuses}
    assert len(by_name["Authentication"].instances) == authentication_instances
    assert len(by_name["Digihelse"].uses) == 4


def test_netsh_failing_is_a_warning_and_iis_hashes_stand_in() -> None:
    sample = Path(__file__).parent / "windows" / "gather-sample.json"
    data = json.loads(sample.read_text(encoding="utf-8"))
    data["httpSys"] = {"exitCode": 1, "output": "Feil: tilgang nektet.\r\n"}
    facts = WindowsFacts.from_json(json.dumps(data))
    assert facts.iis is not None
    assert facts.iis.ssl_bindings == ()
    statuses = diagnose(facts, COSDOC_CATALOG, now=NOW)
    bindings = next(s for s in statuses if s.name == "IIS HTTPS bindings")
    (unread,) = [f for f in bindings.findings if f.code == "http-sys-unread"]
    assert "exit code 1: Feil: tilgang nektet." in unread.message
    assert bindings.uses[0].thumbprint == data["certificates"][0]["thumbprint"]
