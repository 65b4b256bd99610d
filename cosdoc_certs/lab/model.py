"""The simulated CosDoc application server: its state and the rules Windows would enforce.

This is the model layer of the lab (the WinRM endpoint is the protocol layer; the script
twins in :mod:`cosdoc_certs.lab.twins` translate between them). A :class:`CosDocServer` has

- ``files``: a :class:`WindowsFileSystem` (real files under a local folder, Windows paths);
- ``store``: ``Cert:\\LocalMachine\\My`` as a :class:`CertificateStore` (keys, key files, ACLs);
- ``services``: Windows services (``Win32_Service``: name, StartName account, PathName, state);
- IIS: ``sites`` with HTTPS ``bindings``, ``applications`` and ``app_pools`` with identities;
- ``event_log``: what the simulated applications and Windows wrote when something failed.

The rules make it an oracle for a rotation: a service or an app pool *starts* only if every
certificate its ``appsettings.json`` names (see :class:`CertificateSetting`) is in the store,
time-valid, of the role the key wants, has a private key that the account running it can
read; otherwise it stays stopped and the reason is in ``event_log``
(:mod:`cosdoc_certs.lab.server.rules`). HTTPS bindings are served as real TLS listeners on
loopback (:meth:`CosDocServer.start_tls`, :meth:`CosDocServer.tls_endpoints`).

Every method that changes state takes ``lock`` so the WinRM threads, the TLS listeners and a
test can use one server at once. Failures raise :class:`SimulatedWindowsError` carrying the
message, FullyQualifiedErrorId and HRESULT Windows would report.
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from cosdoc_certs.lab.faults import ServerFaults
from cosdoc_certs.lab.server.accounts import (
    APP_POOL_PREFIX,
    LOCAL_SERVICE_SID,
    NETWORK_SERVICE_SID,
    SYSTEM_SID,
    AccountDirectory,
    Language,
)
from cosdoc_certs.lab.server.errors import PathNotFoundError, SimulatedWindowsError
from cosdoc_certs.lab.server.files import WindowsFileSystem, windows_join, windows_parent
from cosdoc_certs.lab.server.httpsys import (
    DEFAULT_SETTINGS,
    SettingValue,
    entry_key,
    netsh_error,
    parse_endpoint,
    settings_from_options,
    split_arguments,
)
from cosdoc_certs.lab.server.rules import pool_problems, service_problems
from cosdoc_certs.lab.server.store import (
    CAPI_KEY_FOLDER,
    CNG_KEY_FOLDER,
    CertificateStore,
    KeyStorage,
    StoreEntry,
)
from cosdoc_certs.lab.server.tls import TlsListeners
from cosdoc_certs.lab.server.uses import (
    AUTHENTICATION_USE,
    DIGIHELSE_USE,
    KPR_USE,
    NO_CERTIFICATES,
    SETTINGS_FILE_NAME,
    SKATT_USE,
    CertificateSetting,
    CertificateUse,
    RoleName,
    ThumbprintLookup,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AUTHENTICATION_USE",
    "CAPI_KEY_FOLDER",
    "CNG_KEY_FOLDER",
    "DIGIHELSE_USE",
    "KPR_USE",
    "NO_CERTIFICATES",
    "SKATT_USE",
    "AppPool",
    "Binding",
    "CertificateSetting",
    "CertificateStore",
    "CertificateUse",
    "CosDocServer",
    "EventLogEntry",
    "IisApplication",
    "IisSite",
    "KeyStorage",
    "PathNotFoundError",
    "RoleName",
    "SimulatedWindowsError",
    "StoreEntry",
    "ThumbprintLookup",
    "WindowsFileSystem",
    "WindowsService",
]

ServiceState = Literal["Running", "Stopped", "StopPending"]
PoolState = Literal["Started", "Stopped"]
IdentityType = Literal[
    "ApplicationPoolIdentity", "SpecificUser", "NetworkService", "LocalService", "LocalSystem"
]
LanguageMode = Literal["FullLanguage", "ConstrainedLanguage"]
SNI_FLAG = 1
CENTRAL_STORE_FLAG = 2
_DISABLED = (
    "The service cannot be started, either because it is disabled or because it has no "
    "enabled devices associated with it."
)


@dataclass(frozen=True)
class EventLogEntry:
    """One Windows event log record (``Get-WinEvent``): when, who wrote it, how bad, what."""

    time: datetime.datetime
    source: str
    level: Literal["Error", "Warning", "Information"]
    message: str
    log: Literal["Application", "System"] = "Application"
    event_id: int = 0


@dataclass
class RemoteSession:
    """What the remoting session that runs our scripts is allowed: as the account connecting.

    ``elevated``: the token holds the Administrators group (a domain admin, or a local one
    with LocalAccountTokenFilterPolicy=1); without it ``LocalMachine\\My`` does not open for
    writing. (The language mode and the WebAdministration module are the server's:
    :attr:`CosDocServer.language_mode`, :attr:`CosDocServer.web_administration`.)
    """

    elevated: bool = True


@dataclass(eq=False)
class WindowsService:
    """A Windows service as ``Win32_Service`` shows it, plus what it does with certificates.

    ``account`` is StartName (``DOMENE\\svc-digihelse``, ``NT AUTHORITY\\NetworkService``,
    ``LocalSystem``, ``.\\user``); ``path_name`` is PathName (the executable, quoted or not,
    maybe with arguments); ``state`` is ``"Running"``, ``"Stopped"`` or ``"StopPending"``;
    ``start_mode`` is ``"Auto"``, ``"Manual"`` or ``"Disabled"``. ``process_id`` is
    Win32_Service.ProcessId (0 when no process runs). ``hangs_on_stop``: the process never
    finishes stopping (a hung shutdown), so the service stays ``StopPending`` with its process
    alive. ``parameters`` is the service's registry ``Parameters`` key (nssm keeps
    ``AppDirectory`` there); ``app_folder`` is where the application really reads its
    appsettings.json when that is not the executable's folder (a DLL run by ``dotnet.exe``,
    an nssm-wrapped program).
    """

    name: str
    display_name: str
    account: str
    path_name: str
    state: ServiceState = "Stopped"
    start_mode: str = "Auto"
    uses: CertificateUse = NO_CERTIFICATES
    process_id: int = 0
    hangs_on_stop: bool = False
    parameters: dict[str, str] = field(default_factory=dict)
    app_folder: str | None = None

    @property
    def process_name(self) -> str:
        """The service process's name as ``Get-Process`` shows it (the executable, no .exe)."""
        return re.sub(r"(?i)\.exe$", "", self.executable.rsplit("\\", 1)[-1])

    @property
    def executable(self) -> str:
        """The executable's Windows path, taken out of ``path_name``."""
        return executable_of(self.path_name)

    @property
    def install_folder(self) -> str:
        """The folder the application runs from, where its appsettings.json lives."""
        return self.app_folder or windows_parent(self.executable)

    @property
    def settings_file(self) -> str:
        """The Windows path of the service's appsettings.json."""
        return windows_join(self.install_folder, SETTINGS_FILE_NAME)


@dataclass(eq=False)
class AppPool:
    """An IIS application pool: its identity and whether it runs.

    ``identity_type`` is ``processModel.identityType``; ``user_name`` is
    ``processModel.userName`` (used with ``SpecificUser``).
    """

    name: str
    identity_type: IdentityType = "ApplicationPoolIdentity"
    user_name: str = ""
    state: PoolState = "Started"

    @property
    def account(self) -> str:
        """The account the pool's worker process runs as (``IIS AppPool\\<name>`` by default).

        The built-in identities are given as their SIDs: their names depend on the language.
        """
        if self.identity_type == "ApplicationPoolIdentity":
            return APP_POOL_PREFIX + self.name
        if self.identity_type == "SpecificUser":
            return self.user_name
        return {"NetworkService": NETWORK_SERVICE_SID, "LocalService": LOCAL_SERVICE_SID}.get(
            self.identity_type, SYSTEM_SID
        )


@dataclass(eq=False)
class Binding:
    """An IIS site binding (``Get-WebBinding``).

    ``ip`` is ``"*"``, ``"0.0.0.0"`` or an address; ``ssl_flags`` bit 1 is SNI (the
    certificate is chosen by host name); ``thumbprint`` is the certificate bound (https).
    """

    protocol: str
    ip: str
    port: int
    host: str = ""
    ssl_flags: int = 0
    thumbprint: str | None = None

    @property
    def binding_information(self) -> str:
        """``ip:port:host`` as IIS stores it."""
        return f"{self.ip}:{self.port}:{self.host}"

    @property
    def sni(self) -> bool:
        """True if the certificate is picked by host name (SNI)."""
        return bool(self.ssl_flags & SNI_FLAG) and bool(self.host)

    @property
    def endpoint(self) -> tuple[str, int]:
        """The listening address; ``*`` and ``0.0.0.0`` are the same listener."""
        return (_listener_ip(self.ip), self.port)

    @property
    def http_sys_entry(self) -> tuple[str, str]:
        """The http.sys entry serving it: ``("hostnameport"|"ipport", key)`` (see httpsys)."""
        return entry_key(self.ip, self.port, self.host, sni=self.sni)


@dataclass(eq=False)
class IisSite:
    """An IIS site: root folder and pool of its root application, and its bindings."""

    name: str
    id: int
    physical_path: str
    app_pool: str
    bindings: list[Binding] = field(default_factory=list)


@dataclass(eq=False)
class IisApplication:
    """An application under an IIS site (``Get-WebApplication``), ``path`` like ``/Authentication``.

    ``uses`` says which certificates the application reads from its appsettings.json.
    """

    site: str
    path: str
    physical_path: str
    app_pool: str
    uses: CertificateUse = NO_CERTIFICATES


@dataclass(frozen=True)
class HttpSysEntry:
    """An http.sys certificate binding that no IIS site owns (another program's, or a stale one).

    ``endpoint`` is ``ip:port`` or ``host:port`` as netsh prints it; ``store`` may be empty
    (netsh prints ``(null)``), which the ``IIS:\\SslBindings`` provider cannot map.
    """

    endpoint: str
    thumbprint: str
    app_id: str
    store: str = "My"
    sni: bool = False


class CosDocServer:
    """One simulated CosDoc application server (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        hostname: str = "COSDOC-APP01",
        clock: Callable[[], datetime.datetime] | None = None,
        language: Language = "en",
    ) -> None:
        self.hostname = hostname
        self.clock = clock or _utc_now
        self.machine_guid = str(uuid.uuid4())
        self.faults = ServerFaults()
        self.files = WindowsFileSystem(root, self.faults.write_failure)
        self.accounts = AccountDirectory(hostname, language)
        self.store = CertificateStore(self.files, self.machine_guid, self.accounts)
        self.language_mode: LanguageMode = "FullLanguage"
        self.iis_installed = True
        self.web_administration = True
        self.foreign_http_sys: list[HttpSysEntry] = []
        self.environment: dict[str, str] = {
            "SystemDrive": "C:",
            "SystemRoot": "C:\\Windows",
            "windir": "C:\\Windows",
            "ProgramData": "C:\\ProgramData",
            "ProgramFiles": "C:\\Program Files",
            "ProgramFiles(x86)": "C:\\Program Files (x86)",
            "COMPUTERNAME": hostname,
        }
        self.services: dict[str, WindowsService] = {}
        self.sites: dict[str, IisSite] = {}
        self.applications: list[IisApplication] = []
        self.app_pools: dict[str, AppPool] = {}
        self.event_log: list[EventLogEntry] = []
        self.lock = threading.RLock()
        self._tls: TlsListeners | None = None
        self._released = threading.Event()
        self._next_process_id = 4200
        self.http_sys_settings: dict[tuple[str, str], dict[str, SettingValue]] = {}
        self.wmi_error: str | None = None
        self.session = RemoteSession()

    def __repr__(self) -> str:
        return (
            f"CosDocServer(hostname={self.hostname!r}, services={len(self.services)}, "
            f"sites={len(self.sites)}, certificates={len(self.store.entries)})"
        )

    def now(self) -> datetime.datetime:
        """The server's current time (UTC), from ``clock``."""
        return self.clock()

    def expand_environment(self, text: str) -> str:
        """``text`` with ``%Variable%`` references expanded like Windows (unknown ones kept)."""
        lookup = {name.casefold(): value for name, value in self.environment.items()}

        def replace(match: re.Match[str]) -> str:
            return lookup.get(match.group(1).casefold(), match.group(0))

        return re.sub(r"%([^%]+)%", replace, text)

    # -- building the installation -------------------------------------------------------

    def add_service(self, service: WindowsService) -> WindowsService:
        """Install ``service`` (the registry entry only; files are written separately)."""
        with self.lock:
            self.services[service.name] = service
        return service

    def add_app_pool(self, pool: AppPool) -> AppPool:
        """Create the IIS application pool ``pool``."""
        with self.lock:
            self.app_pools[pool.name] = pool
        return pool

    def add_site(self, site: IisSite) -> IisSite:
        """Create the IIS site ``site``; its bindings must name certificates in the store."""
        with self.lock:
            for binding in site.bindings:
                if binding.thumbprint is not None:
                    self.store.get(binding.thumbprint)
            self.sites[site.name] = site
            self._refresh_tls()
        return site

    def add_application(self, application: IisApplication) -> IisApplication:
        """Create an application under an existing site."""
        with self.lock:
            self.site(application.site)
            self.app_pool(application.app_pool)
            self.applications.append(application)
        return application

    # -- lookups ------------------------------------------------------------------------------

    def service(self, name: str) -> WindowsService:
        """The service called ``name`` (case-insensitive), or the error ``Get-Service`` gives."""
        for service in self.services.values():
            if service.name.casefold() == name.casefold():
                return service
        raise SimulatedWindowsError(
            f"Cannot find any service with service name '{name}'.",
            error_id="NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand",
            category="ObjectNotFound",
            target=name,
        )

    def win32_services(self) -> list[WindowsService]:
        """``Get-CimInstance Win32_Service``; fails like a broken WMI when ``wmi_error`` is set."""
        with self.lock:
            if self.wmi_error is not None:
                raise SimulatedWindowsError(
                    self.wmi_error,
                    error_id="HRESULT 0x80041010,Microsoft.Management.Infrastructure.CimCmdlets."
                    "GetCimInstanceCommand",
                    category="InvalidType",
                    hresult=0x80041010,
                )
            return list(self.services.values())

    def app_pool(self, name: str) -> AppPool:
        """The app pool ``name`` (case-insensitive), or the error WebAdministration gives."""
        for pool in self.app_pools.values():
            if pool.name.casefold() == name.casefold():
                return pool
        raise SimulatedWindowsError(
            f"Cannot find path 'IIS:\\AppPools\\{name}' because it does not exist.",
            error_id="PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand",
            category="ObjectNotFound",
            target=name,
        )

    def site(self, name: str) -> IisSite:
        """The site ``name`` (case-insensitive), or the error WebAdministration gives."""
        for site in self.sites.values():
            if site.name.casefold() == name.casefold():
                return site
        raise SimulatedWindowsError(
            f"Cannot find path 'IIS:\\Sites\\{name}' because it does not exist.",
            error_id="PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand",
            category="ObjectNotFound",
            target=name,
        )

    def applications_in_pool(self, pool: str) -> list[IisApplication]:
        """The applications that run in the app pool ``pool``."""
        return [app for app in self.applications if app.app_pool.casefold() == pool.casefold()]

    def bindings(self) -> Iterator[tuple[IisSite, Binding]]:
        """Every (site, binding) pair of the server."""
        for site in self.sites.values():
            for binding in site.bindings:
                yield site, binding

    def http_sys_entries(self) -> list[HttpSysEntry]:
        """http.sys's certificate bindings: IIS's (one per entry, see ``httpsys``; the first
        binding's certificate) and every other program's."""
        entries: dict[tuple[str, str], HttpSysEntry] = {}
        for _, binding in self.bindings():
            if binding.protocol.casefold() != "https" or not binding.thumbprint:
                continue
            if binding.ssl_flags & CENTRAL_STORE_FLAG:
                continue  # no entry of its own (ccs=port)
            kind, key = binding.http_sys_entry
            app_id = str(self.http_sys_settings.get((kind, key), DEFAULT_SETTINGS)["AppId"])
            entries.setdefault(
                (kind, key),
                HttpSysEntry(key, binding.thumbprint, app_id, sni=kind == "hostnameport"),
            )
        return [*entries.values(), *self.foreign_http_sys]

    def netsh_show_sslcert(self) -> str:
        """What ``netsh http show sslcert`` prints, in the server's display language."""
        return render_netsh_sslcert(self.http_sys_entries(), self.accounts.language)

    def iis_ssl_bindings(self) -> list[HttpSysEntry]:
        """``Get-ChildItem IIS:\\SslBindings``: throws on an entry the provider cannot map."""
        entries = self.http_sys_entries()
        for entry in entries:
            if not entry.store:
                raise SimulatedWindowsError(
                    "Value cannot be null.\r\nParameter name: storeName",
                    error_id="System.ArgumentNullException,"
                    "Microsoft.PowerShell.Commands.GetChildItemCommand",
                    category="InvalidArgument",
                    target=entry.endpoint,
                )
        return entries

    def service_parameter(self, name: str, value: str) -> str | None:
        """A value of ``HKLM:\\SYSTEM\\CurrentControlSet\\Services\\<name>\\Parameters``."""
        return self.service(name).parameters.get(value)

    # -- operations ---------------------------------------------------------------------------

    def start_service(self, name: str) -> WindowsService:
        """``Start-Service``: runs the start rules; raises (and logs why) if the service fails."""
        with self.lock:
            service = self.service(name)
            if service.state != "Running" and self._start(service):
                raise SimulatedWindowsError(
                    f"Service '{service.display_name} ({service.name})' cannot be started due "
                    f"to the following error: Cannot start service {service.name} on computer "
                    "'.'.",
                    error_id=(
                        "CouldNotStartService,Microsoft.PowerShell.Commands.StartServiceCommand"
                    ),
                    category="OpenError",
                    hresult=0x80131509,
                    target=service.name,
                )
            return service

    def stop_service(self, name: str) -> WindowsService:
        """``Stop-Service``: the service is Stopped afterwards (already stopped is fine)."""
        with self.lock:
            service = self.service(name)
            service.state = "Stopped"
            service.process_id = 0
            return service

    def restart_service(self, name: str) -> WindowsService:
        """``Restart-Service``: stop, then start with the start rules (raises if it fails).

        Like the cmdlet, it waits for the stop without a time limit: a service whose process
        hangs while stopping keeps it waiting in ``StopPending`` for ever (here: until the
        server is closed, when the wait ends with "The pipeline has been stopped.").
        """
        with self.lock:
            service = self.service(name)
            if service.hangs_on_stop and service.state != "Stopped":
                service.state = "StopPending"
                self._released.wait()
                raise SimulatedWindowsError(
                    "The pipeline has been stopped.",
                    error_id="PipelineStopped",
                    category="OperationStopped",
                )
            self.stop_service(name)
            return self.start_service(name)

    # ServiceController (System.ServiceProcess): requests that return at once, and a wait.

    def request_service_stop(self, name: str) -> WindowsService:
        """``ServiceController.Stop()``: asks the service to stop and returns at once.

        A running service stops (or, if its process hangs, stays ``StopPending``); a stopped
        or stopping one cannot accept the control: InvalidOperationException.
        """
        with self.lock:
            service = self.service(name)
            if service.state != "Running":
                raise _invalid_operation(service, f"Cannot stop {service.name} service")
            if service.hangs_on_stop:
                service.state = "StopPending"
            else:
                self.stop_service(name)
            return service

    def request_service_start(self, name: str) -> WindowsService:
        """``ServiceController.Start()``: the SCM starts the service and returns at once.

        A disabled service, or one still stopping, cannot be started (InvalidOperationException);
        a service that fails its start rules stops again, with the reason in ``event_log`` —
        Start() itself does not fail then, the status simply never becomes Running.
        """
        with self.lock:
            service = self.service(name)
            if service.state == "Running":
                return service
            if service.state == "StopPending" or service.start_mode == "Disabled":
                reason = (
                    "An instance of the service is already running."
                    if service.state == "StopPending"
                    else _DISABLED
                )
                raise _invalid_operation(service, f"Cannot start service {service.name}", reason)
            self._start(service)
            return service

    def wait_for_service_status(self, name: str, status: str, timeout_seconds: int) -> None:
        """``ServiceController.WaitForStatus(status, timeout)``.

        The lab's services settle at once, so a status not reached now is never reached:
        the wait ends as it would after ``timeout_seconds``, with System.ServiceProcess's
        TimeoutException.
        """
        with self.lock:
            if self.service(name).state != status:
                raise SimulatedWindowsError(
                    "Time out has expired and the operation has not been completed.",
                    error_id="System.ServiceProcess.TimeoutException",
                    category="OperationTimeout",
                    hresult=0x80131505,
                    target=name,
                )

    def start_app_pool(self, name: str) -> AppPool:
        """``Start-WebAppPool``: the pool starts if its applications' start rules pass.

        IIS itself starts the pool and the ASP.NET Core module fails on the first requests
        until rapid-fail protection stops it; the lab collapses that into "the pool stops
        at once" and logs both events. Returns the pool: check ``state``.
        """
        with self.lock:
            pool = self.app_pool(name)
            self._start_pool(pool)
            return pool

    def stop_app_pool(self, name: str) -> AppPool:
        """``Stop-WebAppPool``: the pool is Stopped afterwards."""
        with self.lock:
            pool = self.app_pool(name)
            pool.state = "Stopped"
            return pool

    def recycle_app_pool(self, name: str) -> AppPool:
        """``Restart-WebAppPool``: errors if the pool is stopped, else restarts it by the rules.

        Like IIS, a recycle that the applications cannot survive does not raise: the pool
        ends up Stopped with the reason in ``event_log``. Returns the pool: check ``state``.
        """
        with self.lock:
            pool = self.app_pool(name)
            if pool.state != "Started":
                raise SimulatedWindowsError(
                    "The object identifier does not represent a valid object. (Exception from "
                    "HRESULT: 0x800710D8)",
                    error_id=(
                        "System.Runtime.InteropServices.COMException,"
                        "Microsoft.IIs.PowerShell.Provider.RestartAppPoolCommand"
                    ),
                    category="InvalidOperation",
                    hresult=0x800710D8,
                    target=pool.name,
                )
            return self.start_app_pool(name)

    def find_binding(self, site: str, binding: str | Binding) -> Binding:
        """The binding of ``site`` given as a :class:`Binding` or as ``ip:port:host``."""
        found = self.site(site)
        for candidate in found.bindings:
            if candidate is binding or (
                isinstance(binding, str)
                and candidate.binding_information.casefold() == binding.casefold()
            ):
                return candidate
        wanted = binding if isinstance(binding, str) else binding.binding_information
        raise SimulatedWindowsError(
            f"The site '{found.name}' has no binding '{wanted}'.",
            error_id="BindingNotFound,Microsoft.IIs.PowerShell.Provider.GetWebBindingCommand",
            category="ObjectNotFound",
            target=wanted,
        )

    def set_binding_certificate(
        self, site: str, binding: str | Binding, thumbprint: str
    ) -> Binding:
        """Bind the certificate ``thumbprint`` to an HTTPS binding (``netsh http update sslcert``).

        Fails if the certificate is not in ``LocalMachine\\My`` or has no private key. A
        non-SNI binding shares its certificate with every other non-SNI binding on the same
        ip:port (one http.sys ``ipport`` entry), so those change too. Served at once.
        """
        with self.lock:
            target = self.find_binding(site, binding)
            entry = self.store.find(thumbprint)
            if entry is None or not entry.has_private_key:
                raise SimulatedWindowsError(
                    "SSL Certificate add failed, Error: 1312 A specified logon session does not "
                    "exist. It may already have been terminated.",
                    error_id="NetshSslCertFailed",
                    category="InvalidOperation",
                    hresult=0x80070520,
                    target=thumbprint,
                )
            for _, other in self.bindings():
                if other is target or (
                    not target.sni and not other.sni and other.endpoint == target.endpoint
                ):
                    other.thumbprint = entry.thumbprint
            logger.info("binding %s now serves %s", target.binding_information, entry.thumbprint)
            return target

    def open_personal_store_for_writing(self) -> None:
        """``X509Store('My', 'LocalMachine').Open('ReadWrite')`` (Import-PfxCertificate does it):
        access denied unless the session is elevated."""
        if not self.session.elevated:
            raise SimulatedWindowsError(
                "Access is denied.",
                error_id="System.Security.Cryptography.CryptographicException",
                category="PermissionDenied",
                hresult=0x80070005,
                target="Cert:\\LocalMachine\\My",
            )

    def import_web_administration(self) -> None:
        """``Import-Module WebAdministration``: fails without the IIS management scripts."""
        if not self.web_administration:
            raise SimulatedWindowsError(
                "The specified module 'WebAdministration' was not loaded because no valid module "
                "file was found in any module directory.",
                error_id="Modules_ModuleNotFound,Microsoft.PowerShell.Commands.ImportModuleCommand",
                category="ResourceUnavailable",
                target="WebAdministration",
            )

    def sslcert_settings(self, entry: tuple[str, str]) -> dict[str, SettingValue] | None:
        """The registry values of the http.sys entry, or None when there is no such entry."""
        with self.lock:
            if not self._entry_bindings(entry):
                return None
            return dict(self.http_sys_settings.get(entry, DEFAULT_SETTINGS))

    def sslcert_registry(self, subkey: str) -> dict[str, SettingValue] | None:
        """``Get-ItemProperty HKLM:\\...\\HTTP\\Parameters\\<subkey>``: an entry's values.

        ``subkey`` is ``SslBindingInfo\\<ip:port>`` or ``SslSniBindingInfo\\<host:port>``
        (registry names are case-insensitive); None when the key does not exist.
        """
        folder, _, name = subkey.partition("\\")
        kinds = {"sslbindinginfo": "ipport", "sslsnibindinginfo": "hostnameport"}
        kind = kinds.get(folder.casefold())
        if kind is None:
            return None
        with self.lock:
            entries = {binding.http_sys_entry for _, binding in self.bindings()}
            for entry in entries:
                if entry[0] == kind and entry[1].casefold() == name.casefold():
                    return self.sslcert_settings(entry)
        return None

    def netsh_update_sslcert(self, arguments: list[str]) -> None:
        """``netsh http update sslcert <ipport=|hostnameport=> certhash= appid= [options]``.

        Like netsh, it replaces the whole record: every option not given takes its default.
        Fails like netsh when the entry does not exist or an argument is malformed.
        """
        with self.lock:
            if not arguments:
                raise netsh_error("The parameter is incorrect.")
            entry = parse_endpoint(arguments[0])
            given = split_arguments(arguments[1:])
            thumbprint, app_id = given.pop("certhash", ""), given.pop("appid", "")
            given.pop("certstorename", None)
            bindings = self._entry_bindings(entry)
            if not bindings or not thumbprint or not app_id:
                raise netsh_error(
                    "SSL Certificate update failed, Error: 2 The system cannot find the file "
                    "specified."
                )
            settings = settings_from_options(app_id, given)
            site, binding = bindings[0]
            self.set_binding_certificate(site.name, binding, thumbprint)
            self.http_sys_settings[entry] = settings

    def _entry_bindings(self, entry: tuple[str, str]) -> list[tuple[IisSite, Binding]]:
        return [
            (site, binding)
            for site, binding in self.bindings()
            if binding.protocol.casefold() == "https"
            and binding.thumbprint
            and not binding.ssl_flags & CENTRAL_STORE_FLAG
            and binding.http_sys_entry == entry
        ]

    def boot(self) -> dict[str, list[str]]:
        """Start every Auto service and every app pool, as at power-on; returns the failures.

        The result maps a service or pool name to the reasons it did not start (empty if
        everything runs); the reasons are in ``event_log`` too.
        """
        failures: dict[str, list[str]] = {}
        with self.lock:
            for service in self.services.values():
                if service.start_mode == "Auto" and service.state != "Running":
                    problems = self._start(service)
                    if problems:
                        failures[service.name] = problems
            for pool in self.app_pools.values():
                problems = self._start_pool(pool)
                if problems:
                    failures[pool.name] = problems
        return failures

    def log_event(
        self,
        source: str,
        message: str,
        *,
        level: Literal["Error", "Warning", "Information"] = "Error",
        log: Literal["Application", "System"] = "Application",
        event_id: int = 0,
    ) -> EventLogEntry:
        """Append an entry to the event log and return it."""
        entry = EventLogEntry(self.now(), source, level, message, log, event_id)
        with self.lock:
            self.event_log.append(entry)
        return entry

    # -- TLS ------------------------------------------------------------------------------------

    def start_tls(self) -> None:
        """Serve every HTTPS binding as a real TLS listener on 127.0.0.1 (ephemeral ports)."""
        with self.lock:
            if self._tls is None:
                self._tls = TlsListeners(self)
                self._tls.refresh()

    def stop_tls(self) -> None:
        """Stop every TLS listener (idempotent)."""
        with self.lock:
            tls, self._tls = self._tls, None
        if tls is not None:
            tls.close()

    def tls_endpoints(self) -> dict[tuple[str, int], tuple[str, int]]:
        """Simulated ``(ip, port)`` of each HTTPS binding → the real ``(host, port)`` serving it.

        ``*`` and ``0.0.0.0`` both appear as keys for a wildcard listener. Empty until
        :meth:`start_tls`.
        """
        with self.lock:
            return {} if self._tls is None else self._tls.endpoints()

    def close(self) -> None:
        """Release what the server holds while running: waits that never end, TLS listeners."""
        self._released.set()
        self.stop_tls()

    def __enter__(self) -> CosDocServer:
        self.start_tls()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- private ------------------------------------------------------------------------------

    def _refresh_tls(self) -> None:
        if self._tls is not None:
            self._tls.refresh()

    def _start(self, service: WindowsService) -> list[str]:
        """Start ``service`` by the rules; returns (and logs) why it did not start."""
        if service.start_mode == "Disabled":
            self.log_event(
                "Service Control Manager",
                f"The {service.display_name} service failed to start due to the following "
                f"error: {_DISABLED}",
                log="System",
                event_id=7000,
            )
            return [_DISABLED]
        broken = self.faults.service_failure(service.name)
        problems = [broken] if broken else service_problems(self, service)
        if problems:
            self._log_service_failure(service, problems)
        else:
            service.state = "Running"
            self._next_process_id += 4
            service.process_id = self._next_process_id
            logger.info("service %s started", service.name)
        return problems

    def _start_pool(self, pool: AppPool) -> list[str]:
        """Start ``pool`` by the rules; returns (and logs) why it stopped."""
        problems = pool_problems(self, pool)
        if problems:
            self._log_pool_failure(pool, problems)
        pool.state = "Stopped" if problems else "Started"
        return problems

    def _log_service_failure(self, service: WindowsService, problems: list[str]) -> None:
        for problem in problems:
            self.log_event(service.name, problem, event_id=1026)
        self.log_event(
            "Service Control Manager",
            f"The {service.display_name} service terminated with the following service-specific "
            "error: Incorrect function.",
            log="System",
            event_id=7024,
        )

    def _log_pool_failure(self, pool: AppPool, problems: list[str]) -> None:
        for problem in problems:
            self.log_event("IIS AspNetCore Module V2", problem, event_id=1011)
        self.log_event(
            "WAS",
            f"Application pool '{pool.name}' is being automatically disabled due to a series of "
            "failures in the process(es) serving that application pool.",
            log="System",
            event_id=5002,
        )


def _invalid_operation(
    service: WindowsService, what: str, reason: str = ""
) -> SimulatedWindowsError:
    """ServiceController's InvalidOperationException: "<what> on computer '.'. <reason>"."""
    return SimulatedWindowsError(
        f"{what} on computer '.'. {reason}".strip(),
        error_id="InvalidOperationException",
        category="InvalidOperation",
        hresult=0x80131509,
        target=service.name,
    )


_NETSH_LABELS: dict[Language, dict[str, str]] = {
    "en": {
        "title": "SSL Certificate bindings:",
        "ipport": "IP:port",
        "hostnameport": "Hostname:port",
        "hash": "Certificate Hash",
        "appid": "Application ID",
        "store": "Certificate Store Name",
        "revocation": "Verify Client Certificate Revocation",
        "enabled": "Enabled",
        "negotiate": "Negotiate Client Certificate",
        "disabled": "Disabled",
    },
    "nb": {
        "title": "SSL-sertifikatbindinger:",
        "ipport": "IP:port",
        "hostnameport": "Vertsnavn:port",
        "hash": "Sertifikatets hash-verdi",
        "appid": "Program-ID",
        "store": "Navn på sertifikatlager",
        "revocation": "Bekreft tilbakekalling av klientsertifikat",
        "enabled": "Aktivert",
        "negotiate": "Forhandle klientsertifikat",
        "disabled": "Deaktivert",
    },
}


def render_netsh_sslcert(entries: list[HttpSysEntry], language: Language) -> str:
    """``netsh http show sslcert`` output: a title, then one block of ``label : value`` lines
    per entry (lower-case hash, ``(null)`` for no store name), labels in ``language``."""
    labels = _NETSH_LABELS[language]
    lines = ["", labels["title"], "-" * len(labels["title"]), ""]
    for entry in entries:
        rows = [
            (labels["hostnameport" if entry.sni else "ipport"], entry.endpoint),
            (labels["hash"], entry.thumbprint.lower()),
            (labels["appid"], entry.app_id),
            (labels["store"], entry.store or "(null)"),
            (labels["revocation"], labels["enabled"]),
            (labels["negotiate"], labels["disabled"]),
        ]
        lines += [f"    {label:<36} : {value}" for label, value in rows]
        lines.append("")
    return "\r\n".join(lines) + "\r\n"


def executable_of(path_name: str) -> str:
    """The executable in a Win32_Service PathName (quoted, or unquoted with arguments)."""
    text = path_name.strip()
    if text.startswith('"'):
        return text[1:].partition('"')[0]
    match = re.match(r"(?i)^(.*?\.exe)(\s|$)", text)
    return match.group(1) if match else text.split(" ")[0]


def _listener_ip(ip: str) -> str:
    return "0.0.0.0" if ip in ("*", "", "0.0.0.0") else ip  # noqa: S104 -- a simulated address


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
