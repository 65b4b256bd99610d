"""Ready-made CosDoc installations for the lab, the demo and the tests.

:func:`default_installation` is what ``cosdoc-certs lab`` starts: one application server
(``COSDOC-APP01``) with current certificates from the test factory and everything running:

- ``LocalMachine\\My``: the current enterprise pair (signing key CNG, encryption key CAPI),
  the current SSL certificate (CNG) and the previous, expired pair (clutter, as found);
- services ``Digihelse.Meldingstjeneste``, ``Digihelse.Adressering`` (account
  ``DOMENE\\svc-digihelse``), ``KPR.Innsending`` (``DOMENE\\svc-kpr``) and ``KPR.Overvaker``
  (``NT AUTHORITY\\NetworkService``), each in its own folder with its own appsettings.json;
- IIS sites «CosDoc Drift» and «CosDoc Test», each with the applications /Authentication,
  /SkatteIntegrasjonApi, /kodeverk and /persontjenesten in their own folders and app pools
  (ApplicationPoolIdentity, except Authentication: SpecificUser ``DOMENE\\svc-cosdoc-auth``);
- HTTPS bindings ``*:443:cosdoc.testkommune.no`` and ``*:443:cosdoc-test.testkommune.no``
  (SNI) and the non-SNI fallback ``*:443:``, all on the current SSL certificate;
- realistic appsettings.json files: comments, trailing commas, a UTF-8 BOM and CRLF in some,
  lower-case hex in one, a connection string with a password, and — as found in the field —
  a U+200E before ``KPR.Overvaker``'s ``CertSettings.SigningThumbprint``. KPR.Overvaker runs
  on modern .NET, whose ``X509Store.Find`` skips a leading U+200E, so it starts; the doctor
  should still flag the value, and the same value breaks a STRICT consumer;
- key-file ACLs granting read to exactly the accounts that run each consumer.

:func:`make_lab_certificates` makes the certificates (current, previous, and the *renewed*
pair and SSL certificate a demo rotates to); :meth:`LabCertificates.write_files` writes the
renewed ones as PFX files. The scenario builders (:data:`SCENARIOS`) vary the default for
tests: all keys CAPI or CNG, CAPI-only Digihelse services (.NET Framework, signing with
SHA-256: ``capi-signer``) whose keys must stay in a CAPI provider, a missing ACL, an expired
certificate, a wrong role, samdrift of two municipalities' sites, and a customer whose
services live under ``D:\\DIPS``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cosdoc_certs.appsettings import AppSettings
from cosdoc_certs.certs.providers import ENHANCED_RSA_AES, PLATFORM_KSP, KeyApi
from cosdoc_certs.lab.certs import (
    EnterprisePair,
    Issued,
    TestCA,
    default_ca,
    make_enterprise_pair,
    make_ssl_certificate,
    to_pfx,
    two_key_pfx,
)
from cosdoc_certs.lab.model import (
    AUTHENTICATION_USE,
    DIGIHELSE_USE,
    KPR_USE,
    NO_CERTIFICATES,
    SKATT_USE,
    AppPool,
    Binding,
    CertificateUse,
    CosDocServer,
    HttpSysEntry,
    IisApplication,
    IisSite,
    KeyStorage,
    ThumbprintLookup,
    WindowsService,
)
from cosdoc_certs.lab.server.accounts import Language
from cosdoc_certs.lab.server.files import windows_join
from cosdoc_certs.lab.server.httpsys import DEFAULT_SETTINGS
from cosdoc_certs.lab.server.rules import lookup_value
from cosdoc_certs.lab.server.uses import SETTINGS_FILE_NAME

logger = logging.getLogger(__name__)

PFX_PASSWORD_ENV = "COSDOC_LAB_PFX_PASSWORD"  # noqa: S105 -- a variable name
HOSTNAME = "COSDOC-APP01"
DRIFT_HOST = "cosdoc.testkommune.no"
TEST_HOST = "cosdoc-test.testkommune.no"
NEIGHBOUR_HOST = "cosdoc.nabokommune.no"
DIGIHELSE_ACCOUNT = "DOMENE\\svc-digihelse"
KPR_ACCOUNT = "DOMENE\\svc-kpr"
AUTHENTICATION_ACCOUNT = "DOMENE\\svc-cosdoc-auth"
_LRM = "\u200e"
_DAY = datetime.timedelta(days=1)
_YEARS_3 = datetime.timedelta(days=3 * 365)
_CURRENT_LEFT = datetime.timedelta(days=40)  # the current certificates expire in 40 days
_HOSTNAMES = (DRIFT_HOST, TEST_HOST)


def _pfx_password() -> str:
    """The renewed PFX files' password: ``$COSDOC_LAB_PFX_PASSWORD`` if set, else random."""
    return os.environ.get(PFX_PASSWORD_ENV) or secrets.token_urlsafe(12)


@dataclass(frozen=True)
class Layout:
    """Where a customer installed things; a deviation from the usual is a different Layout."""

    services_folder: str = "C:\\Program Files\\DIPS"
    kpr_folder: str = "C:\\DIPS\\KPR"
    iis_folder: str = "C:\\inetpub\\CosDoc"
    key_storage: dict[str, KeyStorage] = field(
        default_factory=lambda: {"signing": "CNG", "encryption": "CAPI", "ssl": "CNG"}
    )
    key_providers: dict[str, str] = field(default_factory=dict)
    """Role → the provider of the current key (by name; wins over ``key_storage``)."""
    digihelse_key_api: KeyApi = KeyApi.ANY
    """How the Digihelse services open their keys (``CAPI``: a .NET Framework build)."""
    language: Language = "en"


DEVIATING_LAYOUT = Layout(
    services_folder="D:\\DIPS", kpr_folder="D:\\DIPS\\KPR", iis_folder="D:\\Web\\CosDoc"
)


@dataclass(frozen=True)
class LabCertificateFiles:
    """The renewed certificates written as files, for the demo and for people trying the tool."""

    signing_pfx: Path
    encryption_pfx: Path
    pair_pfx: Path
    ssl_pfx: Path
    ca_pem: Path


@dataclass(frozen=True)
class LabCertificates:
    """Every certificate of a lab installation: in the store now, and renewed ones to rotate to.

    ``pfx_password`` protects the PFX files :meth:`write_files` writes
    (``$COSDOC_LAB_PFX_PASSWORD`` when set, else a fresh random value; hidden from the repr).
    """

    ca: TestCA
    current: EnterprisePair
    current_ssl: Issued
    previous: EnterprisePair
    renewed: EnterprisePair
    renewed_ssl: Issued
    pfx_password: str = field(repr=False, default_factory=_pfx_password)

    def by_role(self, role: str) -> Issued:
        """The *current* certificate for ``role`` (``signing``, ``encryption`` or ``ssl``)."""
        return {
            "signing": self.current.signing,
            "encryption": self.current.encryption,
            "ssl": self.current_ssl,
        }[role]

    def write_files(self, folder: Path) -> LabCertificateFiles:
        """Write the renewed certificates as PFX files (mode 0600) and the test CA as PEM."""
        folder.mkdir(parents=True, exist_ok=True)
        password = self.pfx_password.encode("utf-8")
        files = LabCertificateFiles(
            signing_pfx=folder / "renewed-signing.pfx",
            encryption_pfx=folder / "renewed-encryption.pfx",
            pair_pfx=folder / "renewed-pair.pfx",
            ssl_pfx=folder / "renewed-ssl.pfx",
            ca_pem=folder / "lab-test-ca.pem",
        )
        _write_private(files.signing_pfx, to_pfx(self.renewed.signing, password))
        _write_private(files.encryption_pfx, to_pfx(self.renewed.encryption, password))
        _write_private(files.pair_pfx, two_key_pfx(self.renewed, password))
        _write_private(files.ssl_pfx, to_pfx(self.renewed_ssl, password))
        files.ca_pem.write_bytes(self.ca.root_pem())
        return files


class LabServer(CosDocServer):
    """A :class:`CosDocServer` built by a scenario, with the certificates it was seeded with.

    ``close()`` (or leaving the ``with`` block) stops its TLS listeners and removes its
    files if the scenario made a temporary folder for them.
    """

    def __init__(
        self,
        root: Path | None,
        certificates: LabCertificates,
        *,
        now: datetime.datetime | None = None,
        language: Language = "en",
    ) -> None:
        self._temporary = (
            tempfile.TemporaryDirectory(prefix="cosdoc-lab-server-") if root is None else None
        )
        folder = Path(self._temporary.name) if self._temporary is not None else root
        assert folder is not None
        super().__init__(
            folder, hostname=HOSTNAME, clock=(lambda: now) if now else None, language=language
        )
        self.certificates = certificates
        self.tenants: dict[str, LabCertificates] = {}

    def close(self) -> None:
        """Stop the TLS listeners and remove a temporary root folder."""
        super().close()
        if self._temporary is not None:
            self._temporary.cleanup()


def make_lab_certificates(
    ca: TestCA | None = None, *, now: datetime.datetime | None = None
) -> LabCertificates:
    """Current (expiring in 40 days), previous (expired) and renewed certificates."""
    ca = ca or default_ca()
    now = now or _utc_now()
    current_from, current_to = now - _YEARS_3 + _CURRENT_LEFT, now + _CURRENT_LEFT
    return LabCertificates(
        ca=ca,
        current=make_enterprise_pair(ca, not_before=current_from, not_after=current_to),
        current_ssl=make_ssl_certificate(ca, _HOSTNAMES, current_from, current_to),
        previous=make_enterprise_pair(
            ca, not_before=now - 2 * _YEARS_3, not_after=now - _YEARS_3 + _CURRENT_LEFT
        ),
        renewed=make_enterprise_pair(ca, not_before=now - _DAY, not_after=now + _YEARS_3),
        renewed_ssl=make_ssl_certificate(
            ca, _HOSTNAMES, not_before=now - _DAY, not_after=now + _YEARS_3
        ),
    )


def with_expired(
    certificates: LabCertificates, role: str, *, now: datetime.datetime | None = None
) -> LabCertificates:
    """``certificates`` whose current ``role`` certificate is replaced by one expired yesterday."""
    now = now or _utc_now()
    ca, start, end = certificates.ca, now - _YEARS_3, now - _DAY
    if role == "ssl":
        return replace(certificates, current_ssl=make_ssl_certificate(ca, _HOSTNAMES, start, end))
    stale = make_enterprise_pair(ca, not_before=start, not_after=end)
    return replace(
        certificates, current=replace(certificates.current, **{role: getattr(stale, role)})
    )


def default_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
    layout: Layout | None = None,
) -> LabServer:
    """The lab's CosDoc application server, everything running (see the module docstring).

    ``root`` keeps the server's files (default: a temporary folder removed by ``close()``);
    ``now`` fixes the server's clock; ``certificates`` reuses certificates already made.
    """
    layout = layout or Layout()
    certificates = certificates or make_lab_certificates(now=now)
    server = LabServer(root, certificates, now=now, language=layout.language)
    _seed_store(server, certificates, layout)
    _install_services(server, certificates, layout)
    _install_environment(server, "Drift", 1, DRIFT_HOST, certificates, layout, fallback=True)
    _install_environment(server, "Test", 2, TEST_HOST, certificates, layout, fallback=False)
    grant_consumers_read(server)
    failures = server.boot()
    if failures:
        logger.info("lab installation started with failures: %s", sorted(failures))
    return server


def grant_consumers_read(server: CosDocServer) -> None:
    """Give every service and app pool read on the keys its appsettings.json names."""
    for service in server.services.values():
        _grant(server, service.settings_file, service.uses, service.account)
    for application in server.applications:
        folder = server.expand_environment(application.physical_path)
        account = server.app_pool(application.app_pool).account
        _grant(server, windows_join(folder, SETTINGS_FILE_NAME), application.uses, account)


def reboot(server: CosDocServer) -> dict[str, list[str]]:
    """Stop every service and app pool, then start them as at power-on; returns the failures."""
    for service in server.services.values():
        server.stop_service(service.name)
    for pool in server.app_pools.values():
        server.stop_app_pool(pool.name)
    return server.boot()


def edit_settings(server: CosDocServer, settings_file: str, values: dict[str, str]) -> None:
    """Set string values of an appsettings.json on the server, keeping every other byte."""
    settings = AppSettings.parse(server.files.read(settings_file), source=settings_file)
    server.files.write(settings_file, settings.replace(values))


# -- scenario builders -------------------------------------------------------------------------


def all_keys_installation(
    key_storage: KeyStorage,
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The default installation with every private key stored as ``key_storage`` (CNG/CAPI)."""
    layout = Layout(key_storage=dict.fromkeys(("signing", "encryption", "ssl"), key_storage))
    return default_installation(root, now=now, certificates=certificates, layout=layout)


def key_provider_installation(
    key_api: KeyApi,
    key_providers: dict[str, str],
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The default installation with Digihelse opening keys with ``key_api`` and the current
    keys in ``key_providers`` (role → provider name).

    With ``KeyApi.CAPI`` the Digihelse services are .NET Framework builds using
    ``X509Certificate2.PrivateKey``: they do not start with a CNG key ("Invalid provider type
    specified"), nor sign with a key in a legacy PROV_RSA_FULL provider ("Invalid algorithm
    specified"); with ``KeyApi.CNG`` they cast the key to ``RSACng`` and refuse CAPI keys.
    """
    layout = Layout(key_providers=dict(key_providers), digihelse_key_api=key_api)
    return default_installation(root, now=now, certificates=certificates, layout=layout)


def _capi_signer_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    providers = {"signing": ENHANCED_RSA_AES, "encryption": ENHANCED_RSA_AES}
    return key_provider_installation(
        KeyApi.CAPI, providers, root, now=now, certificates=certificates
    )


def missing_acl_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
    service: str = "Digihelse.Meldingstjeneste",
    role: str = "signing",
) -> LabServer:
    """The default installation where ``service``'s account lost read on the ``role`` key."""
    server = default_installation(root, now=now, certificates=certificates)
    account = server.service(service).account
    server.store.revoke_read(server.certificates.by_role(role).thumbprint, account)
    reboot(server)
    return server


def expired_certificate_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
    role: str = "signing",
) -> LabServer:
    """The default installation whose current ``role`` certificate expired yesterday."""
    certificates = with_expired(certificates or make_lab_certificates(now=now), role, now=now)
    return default_installation(root, now=now, certificates=certificates)


def wrong_role_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
    service: str = "KPR.Innsending",
) -> LabServer:
    """The default installation where ``service`` has signing and encryption swapped."""
    server = default_installation(root, now=now, certificates=certificates)
    pair = server.certificates.current
    edit_settings(
        server,
        server.service(service).settings_file,
        {
            "CertSettings.EncryptionThumbprint": pair.signing.thumbprint,
            "CertSettings.SigningThumbprint": pair.encryption.thumbprint,
        },
    )
    reboot(server)
    return server


def samdrift_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """Two municipalities on one server: a second Drift site with its own pair and SSL cert.

    «CosDoc Drift Nabokommune» (host ``cosdoc.nabokommune.no``, SNI on ``*:443``) has its own
    applications, app pools and certificates; ``server.tenants["Nabokommune"]`` holds them.
    """
    server = default_installation(root, now=now, certificates=certificates)
    ca = server.certificates.ca
    start, end = server.now() - _DAY, server.now() + _YEARS_3
    neighbour = replace(
        server.certificates,
        current=make_enterprise_pair(ca, "Nabokommune", "987654321", start, end),
        current_ssl=make_ssl_certificate(ca, (NEIGHBOUR_HOST,), start, end),
    )
    layout = Layout(iis_folder="C:\\inetpub\\Nabokommune")
    _seed_store(server, neighbour, layout, previous=False)
    _install_environment(
        server, "Drift", 3, NEIGHBOUR_HOST, neighbour, layout, fallback=False, tenant="Nabokommune"
    )
    server.tenants["Nabokommune"] = neighbour
    grant_consumers_read(server)
    server.boot()
    return server


def deviating_paths_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """A customer who installed the services under ``D:\\DIPS`` and IIS under ``D:\\Web``."""
    return default_installation(root, now=now, certificates=certificates, layout=DEVIATING_LAYOUT)


def large_config_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
    service: str = "Digihelse.Adressering",
    size: int = 1_700_000,
) -> LabServer:
    """The default installation where ``service``'s appsettings.json is about ``size`` bytes.

    A large routing table in the file, as some installations have: its base64 alone is
    longer than Windows PowerShell 5.1's ``ConvertFrom-Json`` accepts (2,097,152 characters).
    """
    server = default_installation(root, now=now, certificates=certificates)
    settings_file = server.service(service).settings_file
    text = server.files.read(settings_file).decode("utf-8-sig")
    route = '    "{name}": "https://adresse.nhn.no/{name}/",\n'
    routes: list[str] = []
    length = 0
    while length < size:
        routes.append(route.format(name=f"r{len(routes):06d}"))
        length += len(routes[-1])
    table = '  "Routes": {\n' + "".join(routes) + "  },\n"
    server.files.write(settings_file, text.replace("{", "{\n" + table, 1).encode("utf-8"))
    reboot(server)
    return server


def stuck_service_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
    service: str = "Digihelse.Adressering",
) -> LabServer:
    """The default installation where ``service``'s process hangs when asked to stop.

    The service stays ``StopPending`` with its process running, as a service does whose
    shutdown waits on something that never comes; ``Restart-Service`` waits for it for ever.
    """
    server = default_installation(root, now=now, certificates=certificates)
    server.service(service).hangs_on_stop = True
    return server


def readonly_config_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The default installation with protected config files, as some admins leave them.

    Digihelse.Adressering's appsettings.json is ReadOnly, KPR.Innsending's ReadOnly and
    Hidden: ``File.WriteAllBytes`` is denied on both until the attributes are cleared.
    """
    server = default_installation(root, now=now, certificates=certificates)
    for service, attributes in (
        ("Digihelse.Adressering", {"ReadOnly"}),
        ("KPR.Innsending", {"ReadOnly", "Hidden"}),
    ):
        server.files.set_attributes(server.service(service).settings_file, frozenset(attributes))
    return server


def central_store_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The default installation whose «CosDoc Test» HTTPS binding uses the Central Certificate
    Store (sslFlags 3: SNI + CCS): IIS has no hash for it and http.sys no host:port entry.
    """
    server = default_installation(root, now=now, certificates=certificates)
    binding = server.find_binding("CosDoc Test", f"*:443:{TEST_HOST}")
    with server.lock:
        binding.ssl_flags = 3
        binding.thumbprint = None
    return server


SSLCERT_OPTIONS: dict[tuple[str, str], dict[str, int | str]] = {
    ("ipport", "0.0.0.0:443"): {
        "DefaultFlags": 0x2 | 0x10 | 0x400,
        "DefaultSslCertCheckMode": 0x1 | 0x10000,
        "DefaultSslRevocationUrlRetrievalTimeout": 5000,
        "DefaultSslCtlStoreName": "ClientAuthIssuer",
    },
    ("hostnameport", f"{DRIFT_HOST}:443"): {
        "DefaultFlags": 0x40 | 0x400 | 0x80,
        "DefaultSslCertCheckMode": 0x2 | 0x4,
        "DefaultSslRevocationFreshnessTime": 3600,
        "DefaultSslCtlIdentifier": "CosDocClients",
        "DefaultSslCtlStoreName": "ClientAuthIssuer",
    },
}
"""The http.sys settings :func:`sslcert_options_installation` gives its entries."""


def sslcert_options_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The default installation whose http.sys entries carry settings beside the certificate.

    The non-SNI ``0.0.0.0:443`` entry negotiates client certificates (issuers limited to the
    ClientAuthIssuer store), has HTTP/2 and legacy TLS disabled and skips revocation and usage
    checks; the SNI entry of «CosDoc Drift» disables TLS 1.3, legacy TLS and OCSP stapling
    and checks revocation from the cache with a freshness time. ``netsh http update sslcert``
    given only certhash/appid would reset all of it.
    """
    server = default_installation(root, now=now, certificates=certificates)
    for entry, settings in SSLCERT_OPTIONS.items():
        server.http_sys_settings[entry] = {**DEFAULT_SETTINGS, **settings}
    return server


def ipv6_binding_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The default installation with IPv6 HTTPS bindings on «CosDoc Drift», as IIS writes them.

    ``[::]:443:`` (every IPv6 address: its own http.sys entry ``[::]:443``, apart from the
    ``0.0.0.0:443`` of ``*:443:``) and ``[fe80::1]:443:cosdoc.testkommune.no`` (one address,
    with a host name but no SNI: entry ``[fe80::1]:443``).
    """
    server = default_installation(root, now=now, certificates=certificates)
    thumbprint = server.certificates.current_ssl.thumbprint
    site = server.site("CosDoc Drift")
    with server.lock:
        site.bindings += [
            Binding("https", "[::]", 443, "", ssl_flags=0, thumbprint=thumbprint),
            Binding("https", "[fe80::1]", 443, DRIFT_HOST, ssl_flags=0, thumbprint=thumbprint),
        ]
        server.add_site(site)
    return server


def broken_wmi_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The default installation whose WMI repository is damaged: Win32_Service cannot be read."""
    server = default_installation(root, now=now, certificates=certificates)
    server.wmi_error = 'Invalid class "Win32_Service"'
    return server


# -- what real Windows servers do that the default does not show --------------------------------


def norwegian_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The default installation on a Norwegian-language Windows Server: account names are
    localized (``NT-MYNDIGHET\\NETTVERKSTJENESTE``), English ones do not resolve, and netsh
    prints Norwegian labels. KPR.Overvaker still runs as ``NT AUTHORITY\\NetworkService``."""
    layout = Layout(language="nb")
    return default_installation(root, now=now, certificates=certificates, layout=layout)


def dot_user_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """KPR.Innsending runs as the local account ``.\\svc-kpr`` (how the SCM stores a local
    account in StartName); icacls and ``NTAccount.Translate`` do not resolve that spelling."""
    server = default_installation(root, now=now, certificates=certificates)
    server.accounts.add_local_user("svc-kpr")
    server.service("KPR.Innsending").account = ".\\svc-kpr"
    grant_consumers_read(server)
    reboot(server)
    return server


def capi_via_cng_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """Every key CAPI (``RSA\\MachineKeys``), opened the way .NET Framework 4.8 opens it:
    ``GetRSAPrivateKey`` returns an ``RSACng`` whose ``Key.UniqueName`` is the CAPI file."""
    server = all_keys_installation("CAPI", root, now=now, certificates=certificates)
    server.store.dotnet_opens_capi_as_cng = True
    return server


def tpm_key_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The renewed SSL certificate was enrolled on the server with its key in the TPM
    (Microsoft Platform Crypto Provider): in the store with a key, but no key file to grant."""
    server = default_installation(root, now=now, certificates=certificates)
    renewed = server.certificates.renewed_ssl
    server.store.add(
        renewed.certificate,
        renewed.private_key,
        provider=PLATFORM_KSP,
        friendly_name=_friendly_name(renewed, "ssl"),
    )
    return server


def foreign_sslcert_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """Another program's http.sys binding (``0.0.0.0:8443``, no certificate store name) beside
    IIS's: the ``IIS:\\SslBindings`` provider throws on it, netsh lists it."""
    server = default_installation(root, now=now, certificates=certificates)
    server.foreign_http_sys.append(
        HttpSysEntry(
            "0.0.0.0:8443",
            server.certificates.previous.signing.thumbprint,
            "{a4b9e7d1-2c3f-4e5a-9b8c-1d2e3f4a5b6c}",
            store="",
        )
    )
    return server


def locked_config_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """Digihelse.Adressering's appsettings.json is held open without sharing (a backup agent)."""
    server = default_installation(root, now=now, certificates=certificates)
    server.files.locked.add(server.service("Digihelse.Adressering").settings_file.casefold())
    return server


def unreadable_config_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """KPR.Innsending's appsettings.json grants only its own account: administrators are denied."""
    server = default_installation(root, now=now, certificates=certificates)
    server.files.denied.add(server.service("KPR.Innsending").settings_file.casefold())
    return server


def unc_config_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """SkatteIntegrasjonApi (Drift) runs from a file share, ``\\\\fs01\\cosdoc\\Skatt``: IIS reads
    it, a remoting session cannot (the second hop)."""
    server = default_installation(root, now=now, certificates=certificates)
    (application,) = [
        app
        for app in server.applications
        if app.path == "/SkatteIntegrasjonApi" and app.site == "CosDoc Drift"
    ]
    share = "\\\\fs01\\cosdoc\\SkatteIntegrasjonApi"
    old = windows_join(server.expand_environment(application.physical_path), SETTINGS_FILE_NAME)
    server.files.write(windows_join(share, SETTINGS_FILE_NAME), server.files.read(old))
    application.physical_path = share
    return server


def missing_drive_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """A stale service left on a drive the server no longer has (``Q:``), Manual and Stopped."""
    server = default_installation(root, now=now, certificates=certificates)
    server.add_service(
        WindowsService(
            "KPR.Arkiv",
            "KPR Arkiv",
            KPR_ACCOUNT,
            "Q:\\DIPS\\KPR\\Arkiv\\KPR.Arkiv.exe",
            start_mode="Manual",
        )
    )
    return server


def constrained_language_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """An AppLocker/WDAC server: remote PowerShell runs in Constrained Language Mode."""
    server = default_installation(root, now=now, certificates=certificates)
    server.language_mode = "ConstrainedLanguage"
    return server


def dotnet_hosted_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """Services run by a host program: Digihelse.Adressering as ``dotnet.exe <dll>``,
    KPR.Innsending under nssm (``AppDirectory`` in its Parameters key) and
    Digihelse.Meldingstjeneste through ``cmd.exe /c <folder>\\start.cmd``."""
    server = default_installation(root, now=now, certificates=certificates)
    adressering = server.service("Digihelse.Adressering")
    folder = adressering.install_folder
    adressering.path_name = (
        f'"C:\\Program Files\\dotnet\\dotnet.exe" "{folder}\\Digihelse.Adressering.dll" --service'
    )
    adressering.app_folder = folder
    innsending = server.service("KPR.Innsending")
    innsending.app_folder = innsending.install_folder
    innsending.parameters["AppDirectory"] = innsending.app_folder
    innsending.parameters["Application"] = innsending.executable
    innsending.path_name = "C:\\tools\\nssm\\win64\\nssm.exe"
    meldingstjeneste = server.service("Digihelse.Meldingstjeneste")
    meldingstjeneste.app_folder = meldingstjeneste.install_folder
    meldingstjeneste.path_name = (
        f'C:\\Windows\\System32\\cmd.exe /c "{meldingstjeneste.app_folder}\\start.cmd"'
    )
    return server


def iis_without_module_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """IIS runs, but its PowerShell module (Web-Scripting-Tools) was never installed."""
    server = default_installation(root, now=now, certificates=certificates)
    server.web_administration = False
    return server


def module_without_iis_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The WebAdministration module is there (RSAT), IIS is not: the services only."""
    server = default_installation(root, now=now, certificates=certificates)
    server.iis_installed = False
    server.sites.clear()
    server.applications.clear()
    server.app_pools.clear()
    return server


def deny_write_config_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    """The default installation where KPR.Innsending's appsettings.json has a Deny Write rule
    for BUILTIN\\Administrators (left by a hardening script): the rotation cannot write it.
    """
    server = default_installation(root, now=now, certificates=certificates)
    server.files.deny_write(server.service("KPR.Innsending").settings_file)
    return server


def _cng_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    return all_keys_installation("CNG", root, now=now, certificates=certificates)


def _capi_installation(
    root: Path | None = None,
    *,
    now: datetime.datetime | None = None,
    certificates: LabCertificates | None = None,
) -> LabServer:
    return all_keys_installation("CAPI", root, now=now, certificates=certificates)


SCENARIOS: dict[str, Callable[..., LabServer]] = {
    "default": default_installation,
    "cng-keys": _cng_installation,
    "capi-keys": _capi_installation,
    "capi-signer": _capi_signer_installation,
    "missing-acl": missing_acl_installation,
    "expired-certificate": expired_certificate_installation,
    "wrong-role": wrong_role_installation,
    "samdrift": samdrift_installation,
    "deviating-paths": deviating_paths_installation,
    "large-config": large_config_installation,
    "stuck-service": stuck_service_installation,
    "readonly-config": readonly_config_installation,
    "central-store": central_store_installation,
    "sslcert-options": sslcert_options_installation,
    "ipv6-binding": ipv6_binding_installation,
    "broken-wmi": broken_wmi_installation,
    "norwegian": norwegian_installation,
    "dot-user": dot_user_installation,
    "capi-via-cng": capi_via_cng_installation,
    "tpm-key": tpm_key_installation,
    "foreign-sslcert": foreign_sslcert_installation,
    "locked-config": locked_config_installation,
    "unreadable-config": unreadable_config_installation,
    "unc-config": unc_config_installation,
    "missing-drive": missing_drive_installation,
    "constrained-language": constrained_language_installation,
    "dotnet-hosted": dotnet_hosted_installation,
    "iis-without-module": iis_without_module_installation,
    "module-without-iis": module_without_iis_installation,
    "deny-write-config": deny_write_config_installation,
}
"""Scenario name (``cosdoc-certs lab --scenario``) → builder(root, *, now=, certificates=)."""

REFUSED_BEFORE_APPLY = frozenset(
    {
        "broken-wmi",  # gather fails as a whole
        "constrained-language",  # gather stops at once
        "locked-config",  # planning refuses: a config file it cannot read...
        "unreadable-config",
        "unc-config",
        "missing-drive",  # ...or find
        "iis-without-module",  # IIS it cannot read
        "tpm-key",  # a key no file ACL can grant
    }
)
"""Scenarios with nothing to apply or check: gather fails or planning refuses, on purpose."""


# -- building blocks ---------------------------------------------------------------------------


def _seed_store(
    server: CosDocServer, certificates: LabCertificates, layout: Layout, *, previous: bool = True
) -> None:
    server.store.add_authority(certificates.ca.root.certificate)
    server.store.add_authority(certificates.ca.intermediate.certificate)
    seeded = [
        (certificates.current.signing, "signing"),
        (certificates.current.encryption, "encryption"),
        (certificates.current_ssl, "ssl"),
    ]
    if previous:
        seeded += [
            (certificates.previous.signing, "signing"),
            (certificates.previous.encryption, "encryption"),
        ]
    for issued, role in seeded:
        server.store.add(
            issued.certificate,
            issued.private_key,
            key_storage=layout.key_storage[role],
            friendly_name=_friendly_name(issued, role),
            provider=layout.key_providers.get(role),
        )


def _friendly_name(issued: Issued, role: str) -> str:
    year = issued.certificate.not_valid_after_utc.year
    return f"{role} {year}"


def _install_services(server: CosDocServer, certificates: LabCertificates, layout: Layout) -> None:
    pair = certificates.current
    signing, encryption = pair.signing.thumbprint, pair.encryption.thumbprint
    digihelse = [
        ("Digihelse.Meldingstjeneste", "Digihelse Meldingstjeneste", '"{exe}"', True),
        ("Digihelse.Adressering", "Digihelse Adressering", '"{exe}" --service', False),
    ]
    for name, display, path_form, crlf in digihelse:
        folder = windows_join(layout.services_folder, name)
        exe = windows_join(folder, f"{name}.exe")
        uses = replace(DIGIHELSE_USE, key_api=layout.digihelse_key_api)
        service = WindowsService(
            name, display, DIGIHELSE_ACCOUNT, path_form.format(exe=exe), uses=uses
        )
        server.add_service(service)
        text = _digihelse_settings(name, encryption, signing)
        server.files.write(service.settings_file, _encode(text, bom=crlf, crlf=crlf))
    kpr = [
        ("KPR.Innsending", "KPR Innsending", KPR_ACCOUNT, "", KPR_USE),
        (
            "KPR.Overvaker",
            "KPR Overvåker",
            "NT AUTHORITY\\NetworkService",
            " -k overvaker",
            CertificateUse(KPR_USE.settings, ThumbprintLookup.NETCORE),
        ),
    ]
    for name, display, account, arguments, uses in kpr:
        exe = windows_join(layout.kpr_folder, name.split(".", 1)[1], f"{name}.exe")
        service = WindowsService(name, display, account, exe + arguments, uses=uses)
        server.add_service(service)
        signing_value = _LRM + signing if name == "KPR.Overvaker" else signing
        text = _kpr_settings(name, encryption, signing_value)
        server.files.write(service.settings_file, _encode(text, bom=True, crlf=False))


def _install_environment(
    server: CosDocServer,
    environment: str,
    site_id: int,
    host: str,
    certificates: LabCertificates,
    layout: Layout,
    *,
    fallback: bool,
    tenant: str = "",
) -> None:
    label = f"{environment} {tenant}".strip()
    site_folder = windows_join(layout.iis_folder, label.replace(" ", ""))
    ssl_thumbprint = certificates.current_ssl.thumbprint
    bindings = [
        Binding("http", "*", 80, host),
        Binding("https", "*", 443, host, ssl_flags=1, thumbprint=ssl_thumbprint),
    ]
    if fallback:
        bindings.append(Binding("https", "*", 443, "", ssl_flags=0, thumbprint=ssl_thumbprint))
    root_pool = server.add_app_pool(AppPool(f"CosDoc {label}"))
    server.add_site(IisSite(f"CosDoc {label}", site_id, site_folder, root_pool.name, bindings))
    server.files.write(windows_join(site_folder, "index.html"), b"<h1>CosDoc</h1>\r\n")
    pair = certificates.current
    applications: list[tuple[str, CertificateUse, bytes, AppPool]] = [
        (
            "Authentication",
            AUTHENTICATION_USE,
            _encode(
                _authentication_settings(
                    pair.encryption.thumbprint, pair.signing.thumbprint, ssl_thumbprint.lower()
                ),
                bom=True,
                crlf=True,
            ),
            AppPool(f"Authentication {label}", "SpecificUser", AUTHENTICATION_ACCOUNT),
        ),
        (
            "SkatteIntegrasjonApi",
            SKATT_USE,
            _encode(_skatt_settings(pair.signing.thumbprint), bom=False, crlf=True),
            AppPool(f"SkatteIntegrasjonApi {label}"),
        ),
        ("kodeverk", NO_CERTIFICATES, _plain_settings("Kodeverk"), AppPool(f"kodeverk {label}")),
        (
            "persontjenesten",
            NO_CERTIFICATES,
            _plain_settings("Persontjenesten"),
            AppPool(f"persontjenesten {label}"),
        ),
    ]
    for name, uses, settings, pool in applications:
        folder = windows_join(site_folder, name)
        physical_path = folder.replace("C:", "%SystemDrive%", 1) if name == "kodeverk" else folder
        server.add_app_pool(pool)
        server.add_application(
            IisApplication(f"CosDoc {label}", f"/{name}", physical_path, pool.name, uses)
        )
        server.files.write(windows_join(folder, SETTINGS_FILE_NAME), settings)


def _grant(server: CosDocServer, settings_file: str, uses: CertificateUse, account: str) -> None:
    if not uses.settings or not server.files.is_file(settings_file):
        return
    settings = AppSettings.parse(server.files.read(settings_file), source=settings_file)
    for setting in uses.settings:
        found = settings.find(setting.key)
        entry = lookup_value(server, found.value, uses.lookup) if found else None
        if entry is not None and entry.has_private_key:
            server.store.grant_account(entry.thumbprint, account)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _encode(text: str, *, bom: bool, crlf: bool) -> bytes:
    if crlf:
        text = text.replace("\n", "\r\n")
    return ("\ufeff" if bom else "").encode("utf-8") + text.encode("utf-8")


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def _digihelse_settings(name: str, encryption: str, signing: str) -> str:
    return f"""{{
  // {name} — konfigurasjon. Endre sertifikat-avtrykk under CertSettings ved fornyelse.
  "Logging": {{
    "LogLevel": {{
      "Default": "Information",
      "Microsoft.Hosting.Lifetime": "Information",
    }},
  }},
  "ConnectionStrings": {{
    "CosDoc": "Server=SQL01\\\\COSDOC;Database=CosDoc;User Id=digihelse;Password=Lab-Sommer2024!;"
  }},
  "CertSettings": {{
    "EncryptionThumbprint": "{encryption}",
    /* Non-Repudiation */
    "SigningThumbprint": "{signing}",
  }},
  "Digihelse": {{ "HerId": 8094512, "PollIntervalSeconds": 30, "Endpoint": "https://api.nhn.no/" }}
}}
"""


def _kpr_settings(name: str, encryption: str, signing: str) -> str:
    document = {
        "Serilog": {"MinimumLevel": "Information", "WriteTo": [{"Name": "EventLog"}]},
        "ConnectionStrings": {
            "Kpr": "Data Source=SQL01\\COSDOC;Initial Catalog=KPR;User ID=kpr;"
            "Password=Lab-Kpr-2024;"
        },
        "CertSettings": {"EncryptionThumbprint": encryption, "SigningThumbprint": signing},
        "Kpr": {"Service": name, "Endpoint": "https://kpr.helsedirektoratet.no/"},
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _authentication_settings(client: str, signing: str, ssl_thumbprint: str) -> str:
    return f"""{{
  "AllowedHosts": "*",
  // Sertifikater: ClientCert = Digital Signature/Key Encipherment, Signing = Non-Repudiation
  "ClientCertThumbprint": "{client}",
  "SigningCertificateThumbprint": "{signing}",
  "SSLCertificateThumbprint": "{ssl_thumbprint}",
  "IdPorten": {{ "Authority": "https://idporten.no", "ClientId": "cosdoc-testkommune" }},
  "ConnectionStrings": {{ "Auth": "Server=SQL01;Database=CosDocAuth;Password=Lab-Auth-2024;" }}
}}
"""


def _skatt_settings(signing: str) -> str:
    return f"""{{
  "MaskinportenConfig": {{
    "SertifikatAvtrykk": "{signing}",
    "Audience": "https://maskinporten.no/",
    "Scope": "skatteetaten:skatteoppgjoer",
    "ClientId": "00000000-0000-0000-0000-000000000000"
  }},
  "Logging": {{ "LogLevel": {{ "Default": "Warning" }} }}
}}
"""


def _plain_settings(name: str) -> bytes:
    document = {name: {"CacheMinutes": 60}, "Logging": {"LogLevel": {"Default": "Warning"}}}
    return _encode(json.dumps(document, indent=2) + "\n", bom=False, crlf=True)


__all__ = [
    "PFX_PASSWORD_ENV",
    "SCENARIOS",
    "LabCertificateFiles",
    "LabCertificates",
    "LabServer",
    "Layout",
    "default_installation",
    "edit_settings",
    "grant_consumers_read",
    "make_lab_certificates",
    "reboot",
    "with_expired",
]
