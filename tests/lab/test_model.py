"""The simulated CosDoc server's state and rules: files, accounts, store, services, IIS."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cosdoc_certs.certs.model import thumbprint_of
from cosdoc_certs.certs.pkcs12 import serialize_pfx
from cosdoc_certs.lab.certs import (
    expired_window,
    make_enterprise_pair,
    not_yet_valid_window,
    to_pfx,
    two_key_pfx,
)
from cosdoc_certs.lab.model import (
    CAPI_KEY_FOLDER,
    CNG_KEY_FOLDER,
    Binding,
    CertificateUse,
    SimulatedWindowsError,
    ThumbprintLookup,
    WindowsFileSystem,
    executable_of,
)
from cosdoc_certs.lab.scenarios import LabServer, edit_settings
from cosdoc_certs.lab.server.accounts import NETWORK_SERVICE_SID, AccountDirectory, Language
from cosdoc_certs.lab.server.store import DEFAULT_PROVIDERS

DIGIHELSE = "Digihelse.Meldingstjeneste"
LRM = "\u200e"
# Windows' SID for IIS AppPool\DefaultAppPool (the same on every server)
DEFAULT_APP_POOL_SID = "S-1-5-82-3006700770-424185619-1745488364-794895919-4004696415"


# -- files ---------------------------------------------------------------------------------------


def test_windows_paths_map_to_drive_folders_and_ignore_case(tmp_path: Path) -> None:
    files = WindowsFileSystem(tmp_path)
    files.write("C:\\Program Files\\DIPS\\App\\appsettings.json", b"{}")
    assert (tmp_path / "C" / "Program Files" / "DIPS" / "App" / "appsettings.json").is_file()
    assert files.read("c:/program files/dips/APP/AppSettings.JSON") == b"{}"
    files.write("C:\\PROGRAM FILES\\dips\\app\\appsettings.json", b"{ }")
    assert files.list_folder("C:\\Program Files\\DIPS\\App") == ["appsettings.json"]
    assert files.read("C:\\Program Files\\DIPS\\App\\appsettings.json") == b"{ }"


def test_the_remoting_session_cannot_read_everything_a_service_can(tmp_path: Path) -> None:
    files = WindowsFileSystem(tmp_path)
    share = "\\\\fs01\\cosdoc\\appsettings.json"
    files.write(share, b"{}")
    files.write("C:\\a\\denied.json", b"{}")
    files.write("C:\\a\\locked.json", b"{}")
    files.denied.add("c:\\a\\denied.json")
    files.locked.add("c:\\a\\locked.json")
    assert files.read(share) == b"{}"  # the service (IIS) reads it
    for path, error in [
        (share, "System.UnauthorizedAccessException"),  # the second hop
        ("C:\\a\\denied.json", "System.UnauthorizedAccessException"),
        ("C:\\a\\locked.json", "System.IO.IOException"),
        ("C:\\a\\none.json", "System.IO.FileNotFoundException"),
        ("Q:\\a\\x.json", "System.IO.DirectoryNotFoundException"),
    ]:
        with pytest.raises(SimulatedWindowsError) as caught:
            files.read_in_session(path)
        assert caught.value.error_id == error
    assert [files.test_path(p) for p in (share, "C:\\a\\denied.json", "C:\\a\\locked.json")] == [
        False,
        False,
        True,
    ]
    with pytest.raises(SimulatedWindowsError, match="drive with the name 'Q'"):
        files.join_path("Q:\\DIPS", "appsettings.json")


@pytest.mark.parametrize("path", ["relative\\file.txt", "C:\\a\\..\\b"])
def test_paths_that_are_not_absolute_drive_paths_are_refused(tmp_path: Path, path: str) -> None:
    files = WindowsFileSystem(tmp_path)
    with pytest.raises(SimulatedWindowsError, match="path"):
        files.write(path, b"x")


def test_reading_a_missing_file_fails_like_get_content(tmp_path: Path) -> None:
    files = WindowsFileSystem(tmp_path)
    with pytest.raises(SimulatedWindowsError) as caught:
        files.read("C:\\nowhere\\appsettings.json")
    assert caught.value.message == (
        "Cannot find path 'C:\\nowhere\\appsettings.json' because it does not exist."
    )
    assert caught.value.category == "ObjectNotFound"


@pytest.mark.parametrize(
    ("path_name", "executable"),
    [
        ('"C:\\Program Files\\DIPS\\A\\A.exe"', "C:\\Program Files\\DIPS\\A\\A.exe"),
        ('"C:\\Program Files\\DIPS\\A\\A.exe" --service', "C:\\Program Files\\DIPS\\A\\A.exe"),
        ("C:\\DIPS\\KPR\\K.exe -k overvaker", "C:\\DIPS\\KPR\\K.exe"),
        ("C:\\Program Files\\DIPS\\B\\B.EXE /run", "C:\\Program Files\\DIPS\\B\\B.EXE"),
    ],
)
def test_the_executable_is_taken_out_of_a_service_path_name(
    path_name: str, executable: str
) -> None:
    assert executable_of(path_name) == executable


# -- accounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "name", "sid"),
    [
        ("en", "NT AUTHORITY\\NETWORK SERVICE", NETWORK_SERVICE_SID),
        ("en", "nt authority\\network service", NETWORK_SERVICE_SID),
        ("nb", "NT-MYNDIGHET\\NETTVERKSTJENESTE", NETWORK_SERVICE_SID),
        ("nb", "BUILTIN\\Administratorer", "S-1-5-32-544"),
        ("en", "IIS AppPool\\DefaultAppPool", DEFAULT_APP_POOL_SID),
        ("nb", "IIS APPPOOL\\DefaultAppPool", DEFAULT_APP_POOL_SID),
    ],
)
def test_names_resolve_to_sids_in_the_servers_language(
    language: Language, name: str, sid: str
) -> None:
    assert AccountDirectory("COSDOC-APP01", language).lookup(name) == sid


@pytest.mark.parametrize(
    ("language", "name"),
    [
        ("nb", "NT AUTHORITY\\NETWORK SERVICE"),  # English name on a Norwegian server
        ("en", "NT AUTHORITY\\NetworkService"),  # the SCM's short spelling
        ("en", "LocalSystem"),
        ("en", ".\\svc-lokal"),  # the SCM's spelling of a local account
    ],
)
def test_names_windows_cannot_map_fail_with_1332(language: Language, name: str) -> None:
    with pytest.raises(SimulatedWindowsError, match="No mapping between account names") as caught:
        AccountDirectory("COSDOC-APP01", language).lookup(name)
    assert caught.value.hresult & 0xFFFF == 1332


def test_the_scm_runs_short_spellings_and_dot_accounts_as_their_sids() -> None:
    accounts = AccountDirectory("COSDOC-APP01", "nb")
    local = accounts.add_local_user("svc-lokal")
    assert accounts.logon_sid(".\\svc-lokal") == local
    assert accounts.logon_sid("LocalSystem") == "S-1-5-18"
    assert accounts.logon_sid("NT AUTHORITY\\NetworkService") == NETWORK_SERVICE_SID
    assert accounts.name_of(NETWORK_SERVICE_SID) == "NT-MYNDIGHET\\NETTVERKSTJENESTE"
    assert accounts.name_of(local) == "COSDOC-APP01\\svc-lokal"


@pytest.mark.parametrize(
    ("account", "readers", "expected"),
    [
        ("domene\\SVC-KPR", {"DOMENE\\svc-kpr"}, True),
        ("IIS AppPool\\Authentication Drift", {"BUILTIN\\IIS_IUSRS"}, True),
        ("DOMENE\\svc-kpr", {"BUILTIN\\IIS_IUSRS"}, False),
        ("LocalSystem", {"BUILTIN\\Administrators"}, True),
        (
            "NT AUTHORITY\\NetworkService",
            {"NT AUTHORITY\\SYSTEM", "BUILTIN\\Administrators"},
            False,
        ),
        ("DOMENE\\anyone", {"Everyone"}, True),
    ],
)
def test_key_readers_include_the_modelled_groups(
    account: str, readers: set[str], expected: bool
) -> None:
    accounts = AccountDirectory("COSDOC-APP01")
    sids = {accounts.lookup(reader) for reader in readers}
    assert accounts.can_read(accounts.logon_sid(account), sids) is expected


# -- certificate store ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_storage", "folder"), [("CNG", CNG_KEY_FOLDER), ("CAPI", CAPI_KEY_FOLDER)]
)
def test_importing_a_pfx_stores_the_key_in_a_file_readable_by_system_and_administrators(
    default_server: LabServer, key_storage: str, folder: str
) -> None:
    renewed = default_server.certificates.renewed.signing
    pfx = to_pfx(renewed, b"Passord-1")
    provider = DEFAULT_PROVIDERS[key_storage]
    imported = default_server.store.import_pfx(pfx, "Passord-1", default_provider=provider)
    assert renewed.thumbprint in imported
    entry = default_server.store.get(renewed.thumbprint)
    assert entry.has_private_key
    assert entry.key_storage == key_storage
    assert entry.key_provider == provider
    assert entry.key_file is not None
    assert entry.key_file.startswith(folder + "\\")
    assert default_server.files.is_file(entry.key_file)
    assert b"PRIVATE KEY" not in default_server.files.read(entry.key_file)
    assert entry.readers == {"S-1-5-18", "S-1-5-32-544"}


def test_a_two_key_pfx_imports_both_certificates_with_their_keys(default_server: LabServer) -> None:
    renewed = default_server.certificates.renewed
    imported = default_server.store.import_pfx(two_key_pfx(renewed, b"pw", legacy=True), "pw")
    leaves = [renewed.signing.thumbprint, renewed.encryption.thumbprint]
    assert set(leaves) <= set(imported)
    assert all(default_server.store.get(thumbprint).has_private_key for thumbprint in leaves)


def test_the_ca_certificates_of_a_pfx_land_in_my_without_a_key_like_import_pfxcertificate(
    default_server: LabServer,
) -> None:
    renewed = default_server.certificates.renewed.signing
    imported = default_server.store.import_pfx(to_pfx(renewed, b"pw"), "pw")
    cas = [thumbprint_of(ca) for ca in renewed.chain]
    assert cas
    assert set(cas) <= set(imported)
    assert all(not default_server.store.get(ca).has_private_key for ca in cas)


@pytest.mark.parametrize(
    ("named", "expected"),
    [
        ("Microsoft Enhanced RSA and AES Cryptographic Provider", "CAPI"),
        ("Microsoft Software Key Storage Provider", "CNG"),
        ("Microsoft Enhanced Cryptographic Provider v1.0", "CAPI"),
    ],
)
def test_an_imported_key_lands_in_the_provider_its_pfx_names(
    default_server: LabServer, named: str, expected: str
) -> None:
    renewed = default_server.certificates.renewed.signing
    pfx = serialize_pfx(
        renewed.private_key, renewed.certificate, [], b"pw", name=b"x", provider=named
    )
    default_server.store.import_pfx(pfx, "pw")
    entry = default_server.store.get(renewed.thumbprint)
    assert (entry.key_provider, entry.key_storage) == (named, expected)


@pytest.mark.parametrize(
    ("data", "message", "hresult"),
    [
        (None, "The specified network password is not correct.", 0x80070056),
        (b"\x30\x03\x02\x01\x03", "The data is invalid.", 0x8007000D),
    ],
)
def test_a_pfx_that_cannot_be_opened_is_refused_like_windows(
    default_server: LabServer, data: bytes | None, message: str, hresult: int
) -> None:
    before = set(default_server.store.entries)
    pfx = data or to_pfx(default_server.certificates.renewed.signing, b"right")
    with pytest.raises(SimulatedWindowsError) as caught:
        default_server.store.import_pfx(pfx, "wrong")
    assert (caught.value.message, caught.value.hresult) == (message, hresult)
    assert "wrong" not in str(caught.value)
    assert set(default_server.store.entries) == before


def test_reimporting_a_certificate_makes_a_new_key_container_without_the_old_grants(
    default_server: LabServer,
) -> None:
    current = default_server.certificates.current.signing
    old_entry = default_server.store.get(current.thumbprint)
    assert old_entry.can_read_key("DOMENE\\svc-digihelse")
    default_server.store.import_pfx(to_pfx(current, b"pw"), "pw")
    new_entry = default_server.store.get(current.thumbprint)
    assert new_entry.key_file != old_entry.key_file
    assert old_entry.key_file is not None
    assert not default_server.files.exists(old_entry.key_file)
    assert not new_entry.can_read_key("DOMENE\\svc-digihelse")


def test_grant_revoke_and_remove(default_server: LabServer) -> None:
    store = default_server.store
    thumbprint = default_server.certificates.current_ssl.thumbprint
    store.grant_read(thumbprint.lower(), "DOMENE\\someone")
    assert store.get(thumbprint).can_read_key("domene\\SOMEONE")
    store.revoke_read(thumbprint, "DOMENE\\someone")
    assert not store.get(thumbprint).can_read_key("DOMENE\\someone")
    key_file = store.get(thumbprint).key_file
    assert key_file is not None
    store.remove(thumbprint)
    assert store.find(thumbprint) is None
    assert not default_server.files.exists(key_file)
    with pytest.raises(SimulatedWindowsError, match="Cert:"):
        store.grant_read(thumbprint, "DOMENE\\someone")


def test_the_chain_is_built_from_the_authorities(default_server: LabServer) -> None:
    ca = default_server.certificates.ca
    chain = default_server.store.chain_for(default_server.certificates.current_ssl.certificate)
    assert chain == [ca.intermediate.certificate, ca.root.certificate]


# -- services: the start rules -------------------------------------------------------------------


def _set_signing(server: LabServer, value: str) -> None:
    edit_settings(
        server, server.service(DIGIHELSE).settings_file, {"CertSettings.SigningThumbprint": value}
    )


def _wrong_thumbprint(server: LabServer) -> None:
    _set_signing(server, "0123456789ABCDEF0123456789ABCDEF01234567")


def _missing_acl(server: LabServer) -> None:
    signing = server.certificates.current.signing.thumbprint
    server.store.revoke_read(signing, "DOMENE\\svc-digihelse")


def _add_and_name(server: LabServer, window: dict[str, datetime.datetime], *, key: bool) -> None:
    issued = make_enterprise_pair(server.certificates.ca, **window).signing  # type: ignore[arg-type]
    server.store.add(issued.certificate, issued.private_key if key else None)
    if key:
        server.store.grant_read(issued.thumbprint, "DOMENE\\svc-digihelse")
    _set_signing(server, issued.thumbprint)


def _expired(server: LabServer) -> None:
    _add_and_name(server, expired_window(), key=True)


def _not_yet_valid(server: LabServer) -> None:
    _add_and_name(server, not_yet_valid_window(), key=True)


def _no_private_key(server: LabServer) -> None:
    _add_and_name(server, {}, key=False)


def _wrong_role(server: LabServer) -> None:
    _set_signing(server, server.certificates.current.encryption.thumbprint)


def _left_to_right_mark(server: LabServer) -> None:
    _set_signing(server, LRM + server.certificates.current.signing.thumbprint)


def _empty(server: LabServer) -> None:
    _set_signing(server, "")


def _no_file(server: LabServer) -> None:
    server.files.delete(server.service(DIGIHELSE).settings_file)


def _broken_json(server: LabServer) -> None:
    server.files.write(server.service(DIGIHELSE).settings_file, b'{"CertSettings": {')


BREAKAGES: list[tuple[str, Callable[[LabServer], None], str]] = [
    ("wrong thumbprint", _wrong_thumbprint, "Cannot find certificate with thumbprint '0123"),
    ("missing ACL", _missing_acl, "Keyset does not exist"),
    ("expired", _expired, "expired on"),
    ("not yet valid", _not_yet_valid, "is not valid before"),
    ("no private key", _no_private_key, "has no private key"),
    ("wrong role", _wrong_role, "is not a signing certificate (Key Usage Non-Repudiation)"),
    ("U+200E, .NET Framework lookup", _left_to_right_mark, "thumbprint '<U+200E>"),
    ("empty value", _empty, "The setting CertSettings:SigningThumbprint is not set"),
    ("no appsettings.json", _no_file, "System.IO.FileNotFoundException: Could not find file"),
    ("broken JSON", _broken_json, "Failed to load configuration from file"),
]


@pytest.mark.parametrize(
    ("breakage", "expected"), [(b[1], b[2]) for b in BREAKAGES], ids=[b[0] for b in BREAKAGES]
)
def test_a_service_whose_certificates_are_unusable_does_not_start_and_logs_why(
    default_server: LabServer, breakage: Callable[[LabServer], None], expected: str
) -> None:
    breakage(default_server)
    with pytest.raises(SimulatedWindowsError) as caught:
        default_server.restart_service(DIGIHELSE)
    assert caught.value.message == (
        f"Service 'Digihelse Meldingstjeneste ({DIGIHELSE})' cannot be started due to the "
        f"following error: Cannot start service {DIGIHELSE} on computer '.'."
    )
    assert default_server.service(DIGIHELSE).state == "Stopped"
    application_entries = [e for e in default_server.event_log if e.source == DIGIHELSE]
    assert any(expected in entry.message for entry in application_entries), application_entries
    assert default_server.event_log[-1].source == "Service Control Manager"
    assert default_server.event_log[-1].event_id == 7024
    assert default_server.service("Digihelse.Adressering").state == "Running"


@pytest.mark.parametrize(
    ("lookup", "value", "starts"),
    [
        (ThumbprintLookup.STRICT, "{t}", True),
        (ThumbprintLookup.STRICT, "{lower}", True),
        (ThumbprintLookup.STRICT, "{spaced}", True),
        (ThumbprintLookup.STRICT, LRM + "{t}", False),
        (ThumbprintLookup.NETCORE, LRM + "{t}", True),
        (ThumbprintLookup.NETCORE, "{head}" + LRM + "{tail}", False),
        (ThumbprintLookup.STRICT, "{t}" + LRM, True),  # a 41st character is never decoded
        (ThumbprintLookup.NETCORE, LRM + LRM + "{t}", False),
        (ThumbprintLookup.NETCORE, "{t}00", False),
    ],
)
def test_thumbprint_lookup_follows_the_dotnet_decoders(
    default_server: LabServer, lookup: ThumbprintLookup, value: str, starts: bool
) -> None:
    thumbprint = default_server.certificates.current.signing.thumbprint
    spaced = " ".join(thumbprint[i : i + 2] for i in range(0, 40, 2))
    service = default_server.service(DIGIHELSE)
    service.uses = CertificateUse(service.uses.settings, lookup)
    _set_signing(
        default_server,
        value.format(
            t=thumbprint,
            lower=thumbprint.lower(),
            spaced=spaced,
            head=thumbprint[:20],
            tail=thumbprint[20:],
        ),
    )
    default_server.stop_service(DIGIHELSE)
    if starts:
        assert default_server.start_service(DIGIHELSE).state == "Running"
    else:
        with pytest.raises(SimulatedWindowsError, match="cannot be started"):
            default_server.start_service(DIGIHELSE)


def test_a_disabled_service_does_not_start(default_server: LabServer) -> None:
    default_server.service(DIGIHELSE).start_mode = "Disabled"
    with pytest.raises(SimulatedWindowsError, match="cannot be started"):
        default_server.restart_service(DIGIHELSE)
    assert default_server.event_log[-1].event_id == 7000
    assert "because it is disabled" in default_server.event_log[-1].message
    assert DIGIHELSE not in default_server.boot()  # boot starts Auto services only


def test_service_operations_on_an_unknown_service_fail_like_get_service(
    default_server: LabServer,
) -> None:
    with pytest.raises(SimulatedWindowsError) as caught:
        default_server.restart_service("Digihelse.Finnesikke")
    assert caught.value.message == (
        "Cannot find any service with service name 'Digihelse.Finnesikke'."
    )


def test_a_fixed_service_starts_again(default_server: LabServer) -> None:
    _missing_acl(default_server)
    with pytest.raises(SimulatedWindowsError):
        default_server.restart_service(DIGIHELSE)
    default_server.store.grant_read(
        default_server.certificates.current.signing.thumbprint, "DOMENE\\svc-digihelse"
    )
    assert default_server.start_service(DIGIHELSE).state == "Running"


# -- IIS -----------------------------------------------------------------------------------------


def test_recycling_a_stopped_pool_fails_like_restart_webapppool(default_server: LabServer) -> None:
    default_server.stop_app_pool("Authentication Drift")
    with pytest.raises(SimulatedWindowsError) as caught:
        default_server.recycle_app_pool("Authentication Drift")
    assert caught.value.hresult == 0x800710D8
    assert "The object identifier does not represent a valid object" in caught.value.message


def test_a_pool_whose_application_cannot_read_its_key_stops_after_a_recycle(
    default_server: LabServer,
) -> None:
    signing = default_server.certificates.current.signing.thumbprint
    default_server.store.revoke_read(signing, "IIS AppPool\\SkatteIntegrasjonApi Drift")
    pool = default_server.recycle_app_pool("SkatteIntegrasjonApi Drift")
    assert pool.state == "Stopped"
    assert pool.account == "IIS AppPool\\SkatteIntegrasjonApi Drift"
    sources = [(entry.source, entry.event_id) for entry in default_server.event_log]
    assert sources == [("IIS AspNetCore Module V2", 1011), ("WAS", 5002)]
    assert "/LM/W3SVC/1/ROOT/SkatteIntegrasjonApi" in default_server.event_log[0].message
    assert "Keyset does not exist" in default_server.event_log[0].message
    assert default_server.app_pool("SkatteIntegrasjonApi Test").state == "Started"
    default_server.store.grant_read(signing, "BUILTIN\\IIS_IUSRS")
    assert default_server.start_app_pool("SkatteIntegrasjonApi Drift").state == "Started"


def test_binding_a_certificate_that_is_not_in_the_store_fails(default_server: LabServer) -> None:
    renewed = default_server.certificates.renewed_ssl.thumbprint
    binding = "*:443:cosdoc.testkommune.no"
    with pytest.raises(SimulatedWindowsError, match="A specified logon session does not exist"):
        default_server.set_binding_certificate("CosDoc Drift", binding, renewed)
    with pytest.raises(SimulatedWindowsError, match="has no binding"):
        default_server.set_binding_certificate("CosDoc Drift", "*:8443:", renewed)
    current = default_server.certificates.current_ssl.thumbprint
    assert default_server.find_binding("CosDoc Drift", binding).thumbprint == current


def test_a_non_sni_certificate_is_shared_by_every_non_sni_binding_on_its_ip_port(
    default_server: LabServer,
) -> None:
    renewed = default_server.certificates.renewed_ssl
    default_server.store.add(renewed.certificate, renewed.private_key)
    extra = default_server.find_binding("CosDoc Drift", "*:443:")
    default_server.site("CosDoc Test").bindings.append(
        Binding("https", "0.0.0.0", 443, "intern.testkommune.no", 0, extra.thumbprint)  # noqa: S104
    )
    default_server.set_binding_certificate("CosDoc Drift", "*:443:", renewed.thumbprint.lower())
    served = {
        b.binding_information: b.thumbprint
        for _, b in default_server.bindings()
        if b.protocol == "https"
    }
    old = default_server.certificates.current_ssl.thumbprint
    assert served == {
        "*:443:cosdoc.testkommune.no": old,
        "*:443:": renewed.thumbprint,
        "*:443:cosdoc-test.testkommune.no": old,
        "0.0.0.0:443:intern.testkommune.no": renewed.thumbprint,
    }


def test_environment_variables_in_physical_paths_expand_like_windows(
    default_server: LabServer,
) -> None:
    kodeverk = next(app for app in default_server.applications if app.path == "/kodeverk")
    assert kodeverk.physical_path.startswith("%SystemDrive%\\")
    expanded = default_server.expand_environment(kodeverk.physical_path)
    assert expanded == "C:\\inetpub\\CosDoc\\Drift\\kodeverk"
    assert default_server.files.is_file(expanded + "\\appsettings.json")
    assert default_server.expand_environment("%NOSUCH%\\x") == "%NOSUCH%\\x"


def test_store_entries_expose_der_and_friendly_name(default_server: LabServer) -> None:
    issued = default_server.certificates.current.signing
    entry = default_server.store.get(issued.thumbprint)
    assert entry.der == issued.certificate.public_bytes(serialization.Encoding.DER)
    assert entry.friendly_name.startswith("signing ")
