"""The lab twin of ``gather.ps1``: the same JSON document, computed from the simulated server.

It follows the script step by step — services matching ``-ServicePatterns`` with the install
folder taken from ``PathName``; IIS sites, applications (the root "/" included), pools,
HTTPS bindings and the http.sys certificate bindings; every certificate of
``LocalMachine\\My`` with its key storage, key file and readers; each of ``-ConfigFiles``
under every service and application folder — and writes the document through the one
contract in :mod:`cosdoc_certs.windows.gather`.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Iterable
from typing import Any

from cosdoc_certs.lab.model import CosDocServer, SimulatedWindowsError, StoreEntry
from cosdoc_certs.lab.server.files import windows_join
from cosdoc_certs.lab.winrm import ScriptCall, ScriptRegistry, ScriptResult
from cosdoc_certs.windows.gather import (
    SCHEMA_VERSION,
    ApplicationFact,
    AppPoolFact,
    BindingFact,
    CertificateFact,
    ConfigFileFact,
    GatherDocument,
    IisFacts,
    ServiceFact,
    SiteFact,
    SslBindingFact,
    install_folder,
)

logger = logging.getLogger(__name__)

SCRIPT_NAME = "gather"
PS_VERSION = "5.1.20348.2849"
_PARAMETERS = {"servicepatterns": "ServicePatterns", "configfiles": "ConfigFiles"}
_DEFAULT_CONFIG_FILES = ("appsettings.json",)


def register(registry: ScriptRegistry, server: CosDocServer) -> None:
    """Answer ``gather.ps1`` from ``server``."""
    registry.register(SCRIPT_NAME, lambda call: gather(server, call))


def gather(server: CosDocServer, call: ScriptCall) -> ScriptResult:
    """Run ``gather`` against ``server``: one JSON string, as ``gather.ps1`` writes it."""
    try:
        parameters = _bind(call.parameters)
    except ValueError as error:
        return ScriptResult(terminating_error=str(error))
    try:
        with server.lock:
            document = gather_document(
                server,
                parameters.get("ServicePatterns", ()),
                parameters.get("ConfigFiles", _DEFAULT_CONFIG_FILES),
            )
    except SimulatedWindowsError as error:  # gather.ps1's outer catch: still one document
        failed = {"schemaVersion": SCHEMA_VERSION, "error": error.message}
        return ScriptResult(output=[json.dumps(failed, separators=(",", ":"))])
    return ScriptResult(output=[document.to_json()])


def gather_document(
    server: CosDocServer, service_patterns: Iterable[str], config_files: Iterable[str]
) -> GatherDocument:
    """The facts of ``server`` as the contract's document."""
    services = _services(server, list(service_patterns))
    iis = _iis(server)
    folders = [service.install_folder for service in services]
    folders += [application.physical_path for application in iis.applications]
    return GatherDocument(
        schema_version=SCHEMA_VERSION,
        computer_name=server.hostname,
        gathered_at=server.now().replace(microsecond=0),
        ps_version=PS_VERSION,
        services=services,
        iis=iis,
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


def _services(server: CosDocServer, patterns: list[str]) -> tuple[ServiceFact, ...]:
    return tuple(
        ServiceFact(
            name=service.name,
            display_name=service.display_name,
            state=service.state,
            start_mode=service.start_mode,
            account=service.account,
            path_name=service.path_name,
            install_folder=install_folder(service.path_name),
        )
        for service in server.win32_services()
        if any(_like(service.name, pattern) for pattern in patterns)
    )


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
        AppPoolFact(pool.name, pool.state, pool.identity_type, pool.user_name)
        for pool in server.app_pools.values()
    )
    return IisFacts(tuple(sites), tuple(applications), pools, tuple(bindings), _http_sys(server))


def _http_sys(server: CosDocServer) -> tuple[SslBindingFact, ...]:
    """http.sys certificate bindings: one per SNI host:port, one per non-SNI ip:port."""
    entries: dict[tuple[str, int, str], SslBindingFact] = {}
    for _, binding in server.bindings():
        if binding.protocol.casefold() != "https" or not binding.thumbprint:
            continue
        ip, port = binding.endpoint
        key = ("", binding.port, binding.host.casefold()) if binding.sni else (ip, port, "")
        entries.setdefault(
            key,
            SslBindingFact(
                key[0], port, binding.host if binding.sni else "", binding.thumbprint, "MY"
            ),
        )
    return tuple(entries.values())


def _certificate(server: CosDocServer, entry: StoreEntry) -> CertificateFact:
    key_file = entry.key_file
    key_error = None
    if key_file is not None and not server.files.is_file(key_file):
        key_error, key_file = f"key file not found: {key_file}", None
    return CertificateFact(
        thumbprint=entry.thumbprint,
        der=entry.der,
        has_private_key=entry.has_private_key,
        not_after=entry.certificate.not_valid_after_utc,
        key_storage=entry.key_storage,
        key_provider=entry.key_provider,
        key_file=key_file,
        readers=tuple(sorted(entry.readers, key=str.casefold)) if key_file else (),
        key_error=key_error,
    )


def _config_files(
    server: CosDocServer, folders: list[str | None], relative_paths: list[str]
) -> tuple[ConfigFileFact, ...]:
    files: dict[str, ConfigFileFact] = {}
    for folder in folders:
        if not folder or not folder.strip():
            continue
        for relative_path in relative_paths:
            path = windows_join(folder, relative_path)
            if path.casefold() in files:
                continue
            content = server.files.read(path) if server.files.is_file(path) else None
            files[path.casefold()] = ConfigFileFact(path, content is not None, content)
    return tuple(files.values())
