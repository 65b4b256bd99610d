"""The lab twin of gather.ps1 against the contract: what the real pypsrp client receives."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator

import pytest

from cosdoc_certs.facts import WindowsFacts
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.windows.connection import ScriptError, WindowsHost
from cosdoc_certs.windows.gather import GatherDocument

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as running:
        yield running


@pytest.fixture(scope="module")
def raw(lab: Lab) -> dict[str, object]:
    with WindowsHost(lab.connection_info().options(https=False)) as host:
        data: dict[str, object] = host.run_script(
            "gather",
            ServicePatterns=["digihelse*", "KPR.Overvaker"],
            ConfigFiles=["appsettings.json", "config\\appsettings.json"],
        )
    return data


def test_the_twin_output_follows_the_contract(raw: dict[str, object]) -> None:
    document = GatherDocument.from_data(raw)
    assert document.computer_name == "COSDOC-APP01"
    assert document.gathered_at.tzinfo is dt.timezone.utc


def test_services_are_matched_like_powershell_like(lab: Lab, raw: dict[str, object]) -> None:
    document = GatherDocument.from_data(raw)
    assert [s.name for s in document.services] == [
        "Digihelse.Meldingstjeneste",
        "Digihelse.Adressering",
        "KPR.Overvaker",
    ]
    for service in document.services:
        assert service.install_folder == lab.server.service(service.name).install_folder
        assert service.account == lab.server.service(service.name).account
        assert service.identity.sid == lab.server.accounts.logon_sid(service.account)


def test_certificates_carry_key_storage_files_and_readers(lab: Lab, raw: dict[str, object]) -> None:
    document = GatherDocument.from_data(raw)
    store = lab.server.store.entries
    assert {c.thumbprint for c in document.certificates} == set(store)
    for fact in document.certificates:
        entry = store[fact.thumbprint]
        assert fact.der == entry.der
        assert fact.key_storage == entry.key_storage
        assert fact.key_file == entry.key_file
        assert {reader.sid for reader in fact.readers} == entry.readers
        assert {reader.name for reader in fact.readers} >= {"NT AUTHORITY\\SYSTEM"}
    storages = {c.key_storage for c in document.certificates}
    assert {"CNG", "CAPI"} <= storages


def test_config_files_are_the_exact_bytes_and_missing_ones_are_listed(
    lab: Lab, raw: dict[str, object]
) -> None:
    document = GatherDocument.from_data(raw)
    settings = lab.server.service("KPR.Overvaker").settings_file
    found = {f.path: f for f in document.config_files}
    assert found[settings].content == lab.server.files.read(settings)
    assert found[settings].content is not None
    assert found[settings].content.startswith(b"\xef\xbb\xbf")
    assert "\u200e".encode() in found[settings].content
    nested = [f for f in document.config_files if f.path.endswith("config\\appsettings.json")]
    assert nested
    assert not any(f.exists for f in nested)
    raw_files = raw["configFiles"]
    assert isinstance(raw_files, list)
    assert base64.b64decode(raw_files[0]["content"]) == document.config_files[0].content


def test_iis_applications_include_site_roots_with_expanded_paths(raw: dict[str, object]) -> None:
    document = GatherDocument.from_data(raw)
    assert document.iis is not None
    paths = {(a.site, a.path): a.physical_path for a in document.iis.applications}
    assert ("CosDoc Drift", "/") in paths
    assert paths[("CosDoc Drift", "/kodeverk")].startswith("C:\\")
    pools = {p.name: p.account for p in document.iis.app_pools}
    assert pools["Authentication Drift"] == "DOMENE\\svc-cosdoc-auth"
    assert pools["SkatteIntegrasjonApi Drift"] == "IIS AppPool\\SkatteIntegrasjonApi Drift"
    identities = {p.name: p.identity.sid for p in document.iis.app_pools}
    assert str(identities["SkatteIntegrasjonApi Drift"]).startswith("S-1-5-82-")


def test_an_unknown_parameter_fails_like_powershell(lab: Lab) -> None:
    with (
        WindowsHost(lab.connection_info().options(https=False)) as host,
        pytest.raises(ScriptError, match="cannot be found that matches parameter name 'Pattern'"),
    ):
        host.run_script("gather", Pattern=["Digihelse*"])


def test_facts_have_a_readable_repr_and_html(raw: dict[str, object]) -> None:
    facts = WindowsFacts.from_document(GatherDocument.from_data(raw))
    assert repr(facts).startswith("<WindowsFacts COSDOC-APP01")
    assert "3 services" in repr(facts)
    html = facts._repr_html_()
    assert html.count("<tr>") == len(facts.certificates) + 1
