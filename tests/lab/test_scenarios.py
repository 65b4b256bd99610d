"""The lab's ready-made installations: the default one runs, each scenario breaks what it says."""

from __future__ import annotations

import datetime
import socket
import ssl
import stat
from pathlib import Path

import pytest

from cosdoc_certs.appsettings import AppSettings
from cosdoc_certs.certs import load_bundle
from cosdoc_certs.lab.model import CAPI_KEY_FOLDER, CNG_KEY_FOLDER, CertificateUse
from cosdoc_certs.lab.scenarios import (
    SCENARIOS,
    LabCertificates,
    LabServer,
    default_installation,
    reboot,
)
from cosdoc_certs.lab.server.rules import service_problems
from cosdoc_certs.thumbprints import thumbprint_of_der

BOM = b"\xef\xbb\xbf"


def test_the_default_installation_runs_everything(default_server: LabServer) -> None:
    assert {name: s.state for name, s in default_server.services.items()} == {
        "Digihelse.Meldingstjeneste": "Running",
        "Digihelse.Adressering": "Running",
        "KPR.Innsending": "Running",
        "KPR.Overvaker": "Running",
    }
    assert {pool.state for pool in default_server.app_pools.values()} == {"Started"}
    assert default_server.event_log == []
    assert reboot(default_server) == {}


def test_the_default_installation_has_two_environments_with_the_cosdoc_applications(
    default_server: LabServer,
) -> None:
    assert sorted(default_server.sites) == ["CosDoc Drift", "CosDoc Test"]
    for site in ("CosDoc Drift", "CosDoc Test"):
        paths = sorted(app.path for app in default_server.applications if app.site == site)
        assert paths == [
            "/Authentication",
            "/SkatteIntegrasjonApi",
            "/kodeverk",
            "/persontjenesten",
        ]
    folders = {app.physical_path for app in default_server.applications}
    assert len(folders) == 8
    identities = {pool.identity_type for pool in default_server.app_pools.values()}
    assert identities == {"ApplicationPoolIdentity", "SpecificUser"}
    assert default_server.app_pool("Authentication Drift").account == "DOMENE\\svc-cosdoc-auth"
    https = [b for _, b in default_server.bindings() if b.protocol == "https"]
    assert sorted((b.binding_information, b.ssl_flags) for b in https) == [
        ("*:443:", 0),
        ("*:443:cosdoc-test.testkommune.no", 1),
        ("*:443:cosdoc.testkommune.no", 1),
    ]


def test_the_default_store_holds_current_and_previous_certificates_with_cng_and_capi_keys(
    default_server: LabServer, lab_certificates: LabCertificates
) -> None:
    store = default_server.store
    now = default_server.now()
    current = [lab_certificates.current.signing, lab_certificates.current.encryption]
    previous = [lab_certificates.previous.signing, lab_certificates.previous.encryption]
    assert set(store.entries) == {
        issued.thumbprint for issued in [*current, *previous, lab_certificates.current_ssl]
    }
    for issued in previous:
        assert store.get(issued.thumbprint).certificate.not_valid_after_utc < now
    folders = {
        role: store.get(lab_certificates.by_role(role).thumbprint).key_file.rsplit("\\", 1)[0]  # type: ignore[union-attr]
        for role in ("signing", "encryption", "ssl")
    }
    assert folders == {
        "signing": CNG_KEY_FOLDER,
        "encryption": CAPI_KEY_FOLDER,
        "ssl": CNG_KEY_FOLDER,
    }
    for role in ("signing", "encryption", "ssl"):
        assert (
            store.get(lab_certificates.by_role(role).thumbprint).certificate.not_valid_after_utc
            > now
        )


@pytest.mark.parametrize(
    ("account", "roles"),
    [
        ("DOMENE\\svc-digihelse", {"signing", "encryption"}),
        ("DOMENE\\svc-kpr", {"signing", "encryption"}),
        ("NT AUTHORITY\\NetworkService", {"signing", "encryption"}),
        ("DOMENE\\svc-cosdoc-auth", {"signing", "encryption", "ssl"}),
        ("IIS AppPool\\SkatteIntegrasjonApi Drift", {"signing"}),
        ("IIS AppPool\\kodeverk Drift", set()),
    ],
)
def test_key_acls_grant_exactly_the_accounts_that_use_each_key(
    default_server: LabServer, account: str, roles: set[str]
) -> None:
    readable = {
        role
        for role in ("signing", "encryption", "ssl")
        if default_server.store.get(
            default_server.certificates.by_role(role).thumbprint
        ).can_read_key(account)
    }
    assert readable == roles


def test_the_config_files_look_like_the_ones_found_at_customers(default_server: LabServer) -> None:
    files = default_server.files
    meldingstjeneste = files.read(
        default_server.service("Digihelse.Meldingstjeneste").settings_file
    )
    assert meldingstjeneste.startswith(BOM)
    assert b"\r\n" in meldingstjeneste
    assert b"//" in meldingstjeneste
    assert b"Password=" in meldingstjeneste
    overvaker_file = default_server.service("KPR.Overvaker").settings_file
    signing = AppSettings.parse(files.read(overvaker_file)).get("CertSettings.SigningThumbprint")
    assert signing == "\u200e" + default_server.certificates.current.signing.thumbprint
    authentication = next(
        app for app in default_server.applications if app.path == "/Authentication"
    )
    settings = AppSettings.parse(files.read(authentication.physical_path + "\\appsettings.json"))
    assert settings.get("SSLCertificateThumbprint") == (
        default_server.certificates.current_ssl.thumbprint.lower()
    )


def test_the_invisible_character_would_stop_a_strict_consumer(default_server: LabServer) -> None:
    overvaker = default_server.service("KPR.Overvaker")
    assert service_problems(default_server, overvaker) == []
    overvaker.uses = CertificateUse(overvaker.uses.settings)  # STRICT, as .NET Framework
    problems = service_problems(default_server, overvaker)
    assert len(problems) == 1
    assert "<U+200E>" in problems[0]


FAILING = {
    "default": set(),
    "cng-keys": set(),
    "capi-keys": set(),
    "deviating-paths": set(),
    "capi-signer": set(),
    "samdrift": set(),
    "large-config": set(),
    "stuck-service": set(),
    "readonly-config": set(),
    "central-store": set(),
    "sslcert-options": set(),
    "ipv6-binding": set(),
    "broken-wmi": set(),
    "deny-write-config": set(),
    "missing-acl": {"Digihelse.Meldingstjeneste", "Digihelse.Adressering"},
    "wrong-role": {"KPR.Innsending"},
    # Windows behaviours the scripts must cope with: every consumer still starts
    **{
        name: set()
        for name in (
            "norwegian",
            "dot-user",
            "capi-via-cng",
            "tpm-key",
            "foreign-sslcert",
            "locked-config",
            "unreadable-config",
            "unc-config",
            "constrained-language",
            "dotnet-hosted",
            "iis-without-module",
            "module-without-iis",
        )
    },
    "missing-drive": {"KPR.Arkiv"},  # stale, Manual, on a drive that is gone: never started
    "expired-certificate": {
        "Digihelse.Meldingstjeneste",
        "Digihelse.Adressering",
        "KPR.Innsending",
        "KPR.Overvaker",
        "Authentication Drift",
        "Authentication Test",
        "SkatteIntegrasjonApi Drift",
        "SkatteIntegrasjonApi Test",
    },
}


NEVER_STARTED = {"KPR.Arkiv"}  # a Manual service: stopped without a failure


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_scenario_fails_exactly_the_consumers_it_breaks(
    tmp_path: Path, name: str, lab_certificates: LabCertificates
) -> None:
    server = SCENARIOS[name](tmp_path, certificates=lab_certificates)
    try:
        stopped = {s.name for s in server.services.values() if s.state != "Running"}
        stopped |= {p.name for p in server.app_pools.values() if p.state != "Started"}
        assert stopped == FAILING[name]
        assert bool(server.event_log) == bool(FAILING[name] - NEVER_STARTED)
    finally:
        server.close()


@pytest.mark.parametrize(
    ("name", "folder"), [("cng-keys", CNG_KEY_FOLDER), ("capi-keys", CAPI_KEY_FOLDER)]
)
def test_key_storage_scenarios_put_every_key_in_one_kind_of_file(
    tmp_path: Path, name: str, folder: str, lab_certificates: LabCertificates
) -> None:
    with SCENARIOS[name](tmp_path, certificates=lab_certificates) as server:
        key_files = [entry.key_file for entry in server.store.entries.values()]
        assert key_files
        assert all(path and path.startswith(folder) for path in key_files)


def test_deviating_paths_put_the_services_under_d_dips(
    tmp_path: Path, lab_certificates: LabCertificates
) -> None:
    with SCENARIOS["deviating-paths"](tmp_path, certificates=lab_certificates) as server:
        for service in server.services.values():
            assert service.settings_file.startswith("D:\\DIPS\\")
            assert (tmp_path / "D" / "DIPS").is_dir()
            assert server.files.is_file(service.settings_file)
        assert all(app.physical_path.startswith("D:\\Web\\") for app in server.applications)
        assert server.site("CosDoc Drift").physical_path == "D:\\Web\\CosDoc\\Drift"


def test_samdrift_serves_each_municipality_its_own_certificate(
    tmp_path: Path, lab_certificates: LabCertificates
) -> None:
    with SCENARIOS["samdrift"](tmp_path, certificates=lab_certificates) as server:
        neighbour = server.tenants["Nabokommune"]
        assert sorted(server.sites) == ["CosDoc Drift", "CosDoc Drift Nabokommune", "CosDoc Test"]
        host, port = server.tls_endpoints()[("*", 443)]
        context = ssl.create_default_context(cadata=neighbour.ca.root_pem().decode())
        with (
            socket.create_connection((host, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="cosdoc.nabokommune.no") as tls,
        ):
            served = thumbprint_of_der(tls.getpeercert(binary_form=True) or b"")
        assert served == neighbour.current_ssl.thumbprint
        authentication = next(
            app
            for app in server.applications
            if app.site == "CosDoc Drift Nabokommune" and app.path == "/Authentication"
        )
        settings = AppSettings.parse(
            server.files.read(authentication.physical_path + "\\appsettings.json")
        )
        assert settings.get("ClientCertThumbprint") == neighbour.current.encryption.thumbprint


def test_the_renewed_certificates_are_written_as_pfx_files(
    tmp_path: Path, lab_certificates: LabCertificates
) -> None:
    files = lab_certificates.write_files(tmp_path / "client")
    for pfx in (files.signing_pfx, files.encryption_pfx, files.pair_pfx, files.ssl_pfx):
        assert stat.S_IMODE(pfx.stat().st_mode) == 0o600
    bundle = load_bundle([files.pair_pfx, files.ssl_pfx], lab_certificates.pfx_password)
    assert bundle.signing is not None
    assert bundle.signing.thumbprint == lab_certificates.renewed.signing.thumbprint
    assert bundle.encryption is not None
    assert bundle.encryption.thumbprint == lab_certificates.renewed.encryption.thumbprint
    assert bundle.ssl is not None
    assert bundle.ssl.thumbprint == lab_certificates.renewed_ssl.thumbprint
    assert files.ca_pem.read_bytes() == lab_certificates.ca.root_pem()
    assert lab_certificates.pfx_password not in repr(lab_certificates)


def test_a_temporary_server_folder_is_removed_on_close_and_a_given_root_is_kept(
    tmp_path: Path, lab_certificates: LabCertificates
) -> None:
    temporary = default_installation(certificates=lab_certificates)
    folder = temporary.files.root
    assert (folder / "C" / "Program Files" / "DIPS").is_dir()
    temporary.close()
    assert not folder.exists()
    kept = default_installation(tmp_path / "kept", certificates=lab_certificates)
    kept.close()
    assert (tmp_path / "kept" / "C" / "DIPS" / "KPR" / "Innsending" / "appsettings.json").is_file()


def test_a_fixed_clock_decides_validity(tmp_path: Path, lab_certificates: LabCertificates) -> None:
    later = lab_certificates.current.signing.certificate.not_valid_after_utc + datetime.timedelta(
        days=1
    )
    with default_installation(tmp_path, now=later, certificates=lab_certificates) as server:
        assert server.now() == later
        assert all(service.state == "Stopped" for service in server.services.values())
        assert any("expired on" in entry.message for entry in server.event_log)
