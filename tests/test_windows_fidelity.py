"""What real Windows servers do that broke gather, plan or apply: one lab scenario each.

Each test runs the real pypsrp client against the lab in a scenario that models a Windows
behaviour (see ``docs/lab.md``): a Norwegian-language server, a ``.\\user`` service account,
CAPI keys opened through CNG, a TPM key, another program's http.sys binding, config files
that are locked, denied or on a share, a service on a drive that is gone, Constrained
Language Mode, services run by ``dotnet.exe``/nssm/``cmd.exe``, and IIS without its module
(or the module without IIS).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.consumers import COSDOC_CATALOG
from cosdoc_certs.errors import InputError, RemoteError
from cosdoc_certs.facts import WindowsFacts, diagnose
from cosdoc_certs.journal import Journal, Outcome
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import SCENARIOS, LabCertificates, make_lab_certificates
from cosdoc_certs.status import gather
from cosdoc_certs.windows.apply import apply_windows, rollback_windows
from cosdoc_certs.windows.apply_contract import ApplyDocument
from cosdoc_certs.windows.connection import WindowsHost
from cosdoc_certs.windows.planning import plan_windows

pytestmark = pytest.mark.timeout(120)
HOST = "cosdoc-app01.testkommune.no"
MACHINE_KEYS = "C:\\ProgramData\\Microsoft\\Crypto\\RSA\\MachineKeys\\"
ANY_IP = "0.0.0.0"  # noqa: S104 -- an http.sys entry, not a socket


@pytest.fixture(scope="module")
def certificates() -> LabCertificates:
    return make_lab_certificates()


@contextmanager
def _running(scenario: str, tmp_path: Path, certificates: LabCertificates) -> Iterator[Lab]:
    server = SCENARIOS[scenario](tmp_path / "server", certificates=certificates)
    with Lab(server=server, root=tmp_path / "lab", svarut=False) as lab:
        yield lab


def _host(lab: Lab) -> WindowsHost:
    return WindowsHost(lab.connection_info().options(https=False))


def _gather(lab: Lab) -> WindowsFacts:
    with _host(lab) as host:
        return gather(host)


def _facts_of(scenario: str, tmp_path: Path, certificates: LabCertificates) -> WindowsFacts:
    """One gather against a running lab of ``scenario``."""
    with _running(scenario, tmp_path, certificates) as lab:
        return _gather(lab)


def _bundle(certificates: LabCertificates, tmp_path: Path) -> CertificateBundle:
    files = certificates.write_files(tmp_path / "pfx")
    return load_bundle([files.pair_pfx, files.ssl_pfx], certificates.pfx_password.encode())


def _findings(facts: WindowsFacts) -> list[tuple[str, str, str]]:
    return [
        (finding.code, finding.subject, finding.message)
        for status in diagnose(facts, COSDOC_CATALOG, now=facts.document.gathered_at)
        for finding in status.findings
    ]


def _rotate_and_roll_back(lab: Lab, certificates: LabCertificates, tmp_path: Path) -> str:
    """Plan, apply and roll back; every config file has its original bytes afterwards."""
    root = lab.server.files.root
    before = {p: p.read_bytes() for p in root.rglob("appsettings.json")}
    bundle = _bundle(certificates, tmp_path)
    with _host(lab) as host:
        facts = gather(host)
        plan = plan_windows(facts, bundle, host=HOST)
        result = apply_windows(host, plan, bundle, facts, journal_dir=tmp_path / "journals")
        assert result.outcome is Outcome.APPLIED, result.to_text()
        (journal,) = sorted((tmp_path / "journals").glob("*.json"))
        undone = rollback_windows(host, Journal.load(journal))
    assert undone.outcome is Outcome.ROLLED_BACK
    assert {p: p.read_bytes() for p in root.rglob("appsettings.json")} == before
    return plan.to_text()


# -- identities (SIDs) -------------------------------------------------------------------------


def test_a_norwegian_server_rotates_and_rolls_back(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    with _running("norwegian", tmp_path, certificates) as lab:
        text = _rotate_and_roll_back(lab, certificates, tmp_path)
        assert "NT-MYNDIGHET\\NETTVERKSTJENESTE" in text  # the server's own name, shown
        assert "NT AUTHORITY\\NETWORK SERVICE" not in text
        assert all(s.state == "Running" for s in lab.server.services.values())


def test_a_dot_user_service_account_gets_its_grant(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    with _running("dot-user", tmp_path, certificates) as lab:
        text = _rotate_and_roll_back(lab, certificates, tmp_path)
        assert "COSDOC-APP01\\svc-kpr" in text


def test_a_norwegian_server_reads_the_keys_its_accounts_can_read(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    facts = _facts_of("norwegian", tmp_path, certificates)
    assert not [f for f in _findings(facts) if f[0] == "key-not-readable"]


# -- keys --------------------------------------------------------------------------------------


def test_capi_keys_opened_through_cng_are_found_in_machine_keys(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    with _running("capi-via-cng", tmp_path, certificates) as lab:
        facts = _gather(lab)
        keyed = [c.fact for c in facts.certificates if c.fact.has_private_key]
        assert keyed
        for fact in keyed:
            assert fact.key_error is None
            assert fact.key_file is not None
            assert fact.key_file.startswith(MACHINE_KEYS)
        assert not [f for f in _findings(facts) if f[0] == "key-file-unknown"]
        _rotate_and_roll_back(lab, certificates, tmp_path)


def test_apply_grants_on_a_capi_key_opened_through_cng(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    with _running("capi-via-cng", tmp_path, certificates) as lab:
        thumbprint = certificates.current.encryption.thumbprint
        action = {"action": "grant-read", "thumbprint": thumbprint, "account": "DOMENE\\ny"}
        action["sid"] = lab.server.accounts.lookup("DOMENE\\ny")
        with _host(lab) as host:
            document = host.run_script("apply", Actions=json.dumps([action]), RunId="t1")
        (result,) = document["results"]
        assert result["ok"], result["message"]
        assert result["before"]["key_file"].startswith(MACHINE_KEYS)
        assert lab.server.store.get(thumbprint).can_read_key("DOMENE\\ny")


def test_a_tpm_key_is_refused_before_anything_changes(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    facts = _facts_of("tpm-key", tmp_path, certificates)
    renewed = facts.certificate(certificates.renewed_ssl.thumbprint)
    assert renewed is not None
    assert renewed.fact.key_provider == "Microsoft Platform Crypto Provider"
    with pytest.raises(InputError, match="cannot be granted by a file ACL") as raised:
        plan_windows(facts, _bundle(certificates, tmp_path), host=HOST)
    assert "Microsoft Platform Crypto Provider" in str(raised.value)


# -- http.sys ----------------------------------------------------------------------------------


def test_another_programs_http_sys_binding_does_not_stop_gather(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    facts = _facts_of("foreign-sslcert", tmp_path, certificates)
    assert facts.iis is not None
    served = {(e.ip, e.port, e.host): e.thumbprint for e in facts.iis.ssl_bindings}
    ssl = certificates.current_ssl.thumbprint
    assert served[(ANY_IP, 8443, "")] == certificates.previous.signing.thumbprint
    assert served[(ANY_IP, 443, "")] == ssl
    assert served[("", 443, "cosdoc.testkommune.no")] == ssl


def test_netsh_in_norwegian_gives_the_same_bindings(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    facts = _facts_of("norwegian", tmp_path, certificates)
    assert facts.iis is not None
    assert {(e.ip, e.port, e.host) for e in facts.iis.ssl_bindings} == {
        (ANY_IP, 443, ""),
        ("", 443, "cosdoc.testkommune.no"),
        ("", 443, "cosdoc-test.testkommune.no"),
    }


# -- config files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "subject", "reason"),
    [
        ("locked-config", "Digihelse.Adressering", "locked by another process"),
        ("unreadable-config", "KPR.Innsending", "access denied"),
        ("unc-config", "CosDoc Drift/SkatteIntegrasjonApi", "CredSSP"),
    ],
)
def test_a_config_file_that_cannot_be_read_is_reported_with_why(
    tmp_path: Path, certificates: LabCertificates, scenario: str, subject: str, reason: str
) -> None:
    facts = _facts_of(scenario, tmp_path, certificates)
    unreadable = [f for f in _findings(facts) if f[0] == "config-unreadable"]
    assert [f[1] for f in unreadable] == [subject]
    assert reason in unreadable[0][2]
    assert not [f for f in _findings(facts) if f[0] == "config-missing" and f[1] == subject]
    with pytest.raises(InputError, match="cannot read"):
        plan_windows(facts, _bundle(certificates, tmp_path), host=HOST)


def test_a_service_on_a_missing_drive_does_not_stop_gather(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    facts = _facts_of("missing-drive", tmp_path, certificates)
    (file,) = [f for f in facts.document.config_files if f.path.startswith("Q:")]
    assert (file.path, file.exists) == ("Q:\\DIPS\\KPR\\Arkiv\\appsettings.json", False)
    assert len(facts.document.config_files) > 1


# -- the session -------------------------------------------------------------------------------


def test_constrained_language_mode_is_one_clear_error(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    with _running("constrained-language", tmp_path, certificates) as lab, _host(lab) as host:
        with pytest.raises(RemoteError, match="Constrained Language Mode") as gathered:
            gather(host)
        assert "FullLanguage" in str(gathered.value)
        applied = ApplyDocument.from_data(host.run_script("apply", Actions="[]", RunId="t1"))
    assert applied.results == ()  # nothing ran
    assert applied.error is not None
    assert "Constrained Language Mode" in applied.error


# -- where services live ---------------------------------------------------------------------


def test_services_run_by_a_host_program_have_the_applications_folder(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    with _running("dotnet-hosted", tmp_path, certificates) as lab:
        facts = _gather(lab)
        expected = {s.name: s.install_folder for s in lab.server.services.values()}
    assert {s.name: s.install_folder for s in facts.services} == expected
    assert not [f for f in _findings(facts) if f[0] == "config-missing"]


# -- IIS and its module ------------------------------------------------------------------------


def test_iis_without_its_module_blocks_the_plan(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    facts = _facts_of("iis-without-module", tmp_path, certificates)
    assert facts.iis is None
    errors = [f for f in _findings(facts) if f[0] == "iis-module-missing"]
    assert errors
    with pytest.raises(InputError, match="Web-Scripting-Tools"):
        plan_windows(facts, _bundle(certificates, tmp_path), host=HOST)


def test_the_module_without_iis_still_gathers_the_services(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    facts = _facts_of("module-without-iis", tmp_path, certificates)
    assert facts.iis is None
    assert {s.name for s in facts.services} >= {"Digihelse.Adressering", "KPR.Innsending"}
    assert not [f for f in _findings(facts) if f[0] == "iis-module-missing"]
