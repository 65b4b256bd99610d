"""The lab twin of ``gather.ps1``: the same JSON document, computed from the simulated server.

It follows the script step by step over the model (:mod:`cosdoc_certs.lab.model`), asking the
questions the script asks the way Windows answers them:

1. the language mode first: Constrained Language Mode is one terminating error;
2. services matching ``-ServicePatterns``: ``StartName`` resolved to a SID the way the script
   does it (``.\\user`` → ``COMPUTERNAME\\user``, the SCM's short spellings to their SIDs,
   then ``NTAccount.Translate``), nssm's ``AppDirectory`` from the Parameters key, the install
   folder from both;
3. IIS only when it is installed (W3SVC) *and* WebAdministration is there; pools' identities
   resolved like services'; http.sys from ``netsh http show sslcert`` (text, parsed in Python);
4. every certificate of ``LocalMachine\\My``: what ``GetRSAPrivateKey`` returns, the key file
   found by its unique name in every machine key folder, the readers as SIDs with the
   server's own names;
5. each of ``-ConfigFiles`` under every folder, combined as text (no provider check), read in
   its own try: missing is ``exists: false``, unreadable is ``error``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Iterable
from typing import Any

from cosdoc_certs.lab.model import AppPool, CosDocServer, SimulatedWindowsError, StoreEntry
from cosdoc_certs.lab.server.accounts import (
    LOCAL_SERVICE_SID,
    NETWORK_SERVICE_SID,
    SYSTEM_SID,
)
from cosdoc_certs.lab.server.files import windows_join
from cosdoc_certs.lab.server.store import MACHINE_KEY_FOLDERS
from cosdoc_certs.lab.winrm import ScriptCall, ScriptRegistry, ScriptResult
from cosdoc_certs.lab.winrm.records import POWERSHELL_VERSION
from cosdoc_certs.windows.gather import (
    SCHEMA_VERSION,
    ApplicationFact,
    AppPoolFact,
    BindingFact,
    CertificateFact,
    CommandOutput,
    ConfigFileFact,
    GatherDocument,
    IdentityFact,
    IisFacts,
    IisPresence,
    ServiceFact,
    SiteFact,
    install_folder,
)

logger = logging.getLogger(__name__)

SCRIPT_NAME = "gather"
PS_VERSION = POWERSHELL_VERSION  # what the session data says too
CONSTRAINED_LANGUAGE = (
    "{script} cannot run: PowerShell on this server is in Constrained Language Mode "
    "(AppLocker or WDAC), which blocks the .NET calls it needs; it needs FullLanguage. Run it "
    "from a session the policy exempts (an administrator's allow-listed path or a JEA "
    "endpoint in FullLanguage), or ask the server's administrators to allow the script."
)
_PARAMETERS = {"servicepatterns": "ServicePatterns", "configfiles": "ConfigFiles"}
_DEFAULT_CONFIG_FILES = ("appsettings.json",)
# The Service Control Manager's own spellings in StartName (gather.ps1's $ScmAccounts).
_SCM_ACCOUNTS = {
    "localsystem": SYSTEM_SID,
    ".\\localsystem": SYSTEM_SID,
    "nt authority\\localservice": LOCAL_SERVICE_SID,
    "nt authority\\networkservice": NETWORK_SERVICE_SID,
}
# Built-in app-pool identities (gather.ps1's $PoolAccounts).
_POOL_ACCOUNTS = {
    "localsystem": SYSTEM_SID,
    "localservice": LOCAL_SERVICE_SID,
    "networkservice": NETWORK_SERVICE_SID,
}
_FILE_NOT_FOUND = ("System.IO.FileNotFoundException", "System.IO.DirectoryNotFoundException")


def register(registry: ScriptRegistry, server: CosDocServer) -> None:
    """Answer ``gather.ps1`` from ``server``."""
    registry.register(SCRIPT_NAME, lambda call: gather(server, call))


def gather(server: CosDocServer, call: ScriptCall) -> ScriptResult:
    """Run ``gather`` against ``server``: one JSON string, as ``gather.ps1`` writes it."""
    if server.language_mode != "FullLanguage":  # gather.ps1's first check: one document
        return _failure(CONSTRAINED_LANGUAGE.format(script="gather.ps1"))
    try:
        parameters = _bind(call.parameters)
    except ValueError as error:
        return ScriptResult(terminating_error=str(error))
    with server.lock:
        text = gather_text(
            server,
            parameters.get("ServicePatterns", ()),
            parameters.get("ConfigFiles", _DEFAULT_CONFIG_FILES),
        )
    return ScriptResult(output=[text])


def gather_text(
    server: CosDocServer,
    service_patterns: Iterable[str],
    config_files: Iterable[str],
    *,
    post_state: bool = False,
) -> str:
    """The JSON text gather.ps1 writes in FullLanguage (the caller holds ``server.lock``).

    Also what ``apply.ps1`` runs at the end of a successful run (``-PostStateScript``):
    ``post_state`` then.
    """
    try:
        injected = server.faults.gather_failure(post_state=post_state)
        if injected is not None:  # the lab's fail_gather: a CIM query timed out
            return _failure_text(injected)
        return gather_document(server, service_patterns, config_files).to_json()
    except SimulatedWindowsError as error:  # gather.ps1's outer catch: still one document
        return _failure_text(error.message)


def _failure(reason: str) -> ScriptResult:
    """The document gather.ps1 writes when it fails as a whole: ``{schemaVersion, error}``."""
    return ScriptResult(output=[_failure_text(reason)])


def _failure_text(reason: str) -> str:
    return json.dumps({"schemaVersion": SCHEMA_VERSION, "error": reason}, separators=(",", ":"))


def gather_document(
    server: CosDocServer, service_patterns: Iterable[str], config_files: Iterable[str]
) -> GatherDocument:
    """The facts of ``server`` as the contract's document."""
    services = _services(server, list(service_patterns))
    presence = IisPresence(server.iis_installed, server.web_administration, None)
    iis = _iis(server) if presence.installed and presence.module else None
    folders = [service.install_folder for service in services]
    folders += [application.physical_path for application in (iis.applications if iis else ())]
    return GatherDocument(
        schema_version=SCHEMA_VERSION,
        computer_name=server.hostname,
        gathered_at=server.now().replace(microsecond=0),
        ps_version=PS_VERSION,
        services=services,
        iis_presence=presence,
        iis=iis,
        http_sys=CommandOutput(0, server.netsh_show_sslcert()),
        certificates=tuple(_certificate(server, entry) for entry in server.store.entries.values()),
        config_files=_config_files(server, folders, list(config_files)),
    )


def _bind(parameters: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Bind parameters as PowerShell does: names case-insensitive, unknown names an error."""
    bound: dict[str, tuple[str, ...]] = {}
    for name, value in parameters.items():
        canonical = _PARAMETERS.get(name.casefold())
        if canonical is None:
            raise ValueError(f"A parameter cannot be found that matches parameter name '{name}'.")
        values = value if isinstance(value, list) else [value]
        bound[canonical] = tuple(str(item) for item in values if item is not None)
    return bound


def _identity(server: CosDocServer, name: str = "", sid: str | None = None) -> IdentityFact:
    """gather.ps1's Resolve-Identity: a name (``.\\`` made ``COMPUTERNAME\\``) or SID → both."""
    try:
        if sid is None:
            spelling = name.strip()
            if spelling.startswith(".\\"):
                spelling = server.hostname + spelling[1:]
            sid = server.accounts.lookup(spelling)
    except SimulatedWindowsError as error:
        return IdentityFact(None, None, error.message)
    return IdentityFact(sid, server.accounts.name_of(sid), None)


def _services(server: CosDocServer, patterns: list[str]) -> tuple[ServiceFact, ...]:
    facts = []
    for service in server.win32_services():
        if not any(_like(service.name, pattern) for pattern in patterns):
            continue
        app_directory = server.service_parameter(service.name, "AppDirectory")
        facts.append(
            ServiceFact(
                name=service.name,
                display_name=service.display_name,
                state=service.state,
                start_mode=service.start_mode,
                account=service.account,
                path_name=service.path_name,
                app_directory=app_directory,
                install_folder=install_folder(service.path_name, app_directory),
                identity=_identity(
                    server, service.account, _SCM_ACCOUNTS.get(service.account.casefold())
                ),
            )
        )
    return tuple(facts)


def _like(name: str, pattern: str) -> bool:
    """PowerShell's ``-like``: wildcards * ? [..], case-insensitive."""
    return fnmatch.fnmatchcase(name.casefold(), pattern.casefold())


def _iis(server: CosDocServer) -> IisFacts:
    sites, applications, bindings = [], [], []
    for site in server.sites.values():
        physical_path = server.expand_environment(site.physical_path)
        sites.append(SiteFact(site.name, site.id, physical_path, site.app_pool))
        applications.append(ApplicationFact(site.name, "/", physical_path, site.app_pool))
        applications += [
            ApplicationFact(
                site.name,
                application.path,
                server.expand_environment(application.physical_path),
                application.app_pool,
            )
            for application in server.applications
            if application.site.casefold() == site.name.casefold()
        ]
        bindings += [
            BindingFact(
                site=site.name,
                binding_information=binding.binding_information,
                ssl_flags=binding.ssl_flags,
                certificate_hash=binding.thumbprint or "",
                certificate_store_name="My" if binding.thumbprint else "",
            )
            for binding in site.bindings
            if binding.protocol.casefold() == "https"
        ]
    pools = tuple(
        AppPoolFact(
            pool.name, pool.state, pool.identity_type, pool.user_name, _pool_identity(server, pool)
        )
        for pool in server.app_pools.values()
    )
    return IisFacts(tuple(sites), tuple(applications), pools, tuple(bindings))


def _pool_identity(server: CosDocServer, pool: AppPool) -> IdentityFact:
    kind = str(pool.identity_type).casefold()
    if kind == "specificuser":
        return _identity(server, pool.user_name)
    if kind in _POOL_ACCOUNTS:
        return _identity(server, sid=_POOL_ACCOUNTS[kind])
    return _identity(server, f"IIS APPPOOL\\{pool.name}")


def _certificate(server: CosDocServer, entry: StoreEntry) -> CertificateFact:
    handle = server.store.key_handle(entry.thumbprint)
    storage = provider = folder = key_file = key_error = None
    readers: tuple[IdentityFact, ...] = ()
    if handle is not None:
        storage = "CNG" if handle.kind == "RSACng" else "CAPI"
        # Get-CapiProviderName: .PrivateKey names the CSP of any CAPI key, however it opened.
        provider = entry.key_provider if entry.key_storage == "CAPI" else handle.provider
        found = find_key_file(server, handle.unique_name)
        if found is None:
            key_error = (
                f"no file named {handle.unique_name} in any machine key folder "
                f"({', '.join(_relative(f) for f in MACHINE_KEY_FOLDERS)})"
            )
        else:
            folder, key_file = found
            readers = tuple(_identity(server, sid=sid) for sid in sorted(entry.readers))
    return CertificateFact(
        thumbprint=entry.thumbprint,
        der=entry.der,
        has_private_key=entry.has_private_key,
        not_after=entry.certificate.not_valid_after_utc,
        key_storage=storage,
        key_provider=provider,
        key_folder=folder,
        key_file=key_file,
        readers=readers,
        key_error=key_error,
    )


def find_key_file(server: CosDocServer, unique_name: str) -> tuple[str, str] | None:
    """Find-KeyFile (both scripts): the first machine key folder with a file of that name;
    returns (folder below ``ProgramData\\Microsoft``, path)."""
    for folder in MACHINE_KEY_FOLDERS:
        path = windows_join(folder, unique_name)
        if server.files.is_file(path):
            return _relative(folder), path
    return None


def _relative(folder: str) -> str:
    return folder.split("\\Microsoft\\", 1)[1]


def _config_files(
    server: CosDocServer, folders: list[str | None], relative_paths: list[str]
) -> tuple[ConfigFileFact, ...]:
    files: dict[str, ConfigFileFact] = {}
    for folder in folders:
        if not folder or not folder.strip():
            continue
        for relative_path in relative_paths:
            path = windows_join(folder, relative_path.lstrip("\\/"))
            if path.casefold() not in files:
                files[path.casefold()] = _config_file(server, path)
    return tuple(files.values())


def _config_file(server: CosDocServer, path: str) -> ConfigFileFact:
    """``[IO.File]::ReadAllBytes`` in its own try, as gather.ps1 reads each file."""
    try:
        content = server.files.read_in_session(path)
    except SimulatedWindowsError as error:
        kind = error.error_id.split(",", 1)[0]
        if kind in _FILE_NOT_FOUND:
            return ConfigFileFact(path, False, None, None)
        return ConfigFileFact(path, True, None, f"{kind}: {error.message}")
    return ConfigFileFact(path, True, content, None)
