"""The lab twin of ``apply.ps1``: the same actions, executed against the simulated server.

It follows the script action by action (see :mod:`cosdoc_certs.windows.apply_contract`):
``-Actions`` through Windows PowerShell 5.1's ``ConvertFrom-Json`` (and its length limit),
every action name and ``content_index`` checked and every ``write-file`` hash compared first,
then each action until the first failure — ``import-pfx`` through a temporary PFX file that
is deleted afterwards (skipped for a certificate already there with its key; the key's
provider checked against the planned one; missing intermediates put into the CA store),
files with a backup beside them, a compare-and-swap on SHA-256 and ReadOnly/Hidden cleared
around the write, ``grant-read`` on the key file, ``set-binding`` through ``netsh http
update sslcert`` carrying the entry's registry settings over, ``restart-service`` through
ServiceController with bounded waits and ``recycle-pool`` under the model's start rules (a
service that cannot read its key fails to start, as on Windows), ``restore-file`` and
``remove-authority``. Every way out writes the result document; failures carry the message
Windows would give. With ``-PostStateScript`` (gather.ps1's text, its marker line checked), a
run in which every action succeeded ends with the gather twin over the state it reached, its
JSON text in ``post_state``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from cosdoc_certs.certs.model import thumbprint_of
from cosdoc_certs.lab.model import (
    CENTRAL_STORE_FLAG,
    Binding,
    CosDocServer,
    SimulatedWindowsError,
    WindowsService,
)
from cosdoc_certs.lab.server.files import WindowsFileSystem, windows_join
from cosdoc_certs.lab.server.httpsys import (
    CHECK_MODE_OPTIONS,
    DEFAULT_SETTINGS,
    FLAG_OPTIONS,
    FRESHNESS_TIME_ENABLED,
    NUMBER_OPTIONS,
    TEXT_OPTIONS,
    SettingValue,
)
from cosdoc_certs.lab.server.powershell import convert_from_json
from cosdoc_certs.lab.twins.gather import CONSTRAINED_LANGUAGE, find_key_file, gather_text
from cosdoc_certs.lab.winrm import ScriptCall, ScriptRegistry, ScriptResult
from cosdoc_certs.windows.apply_contract import (
    ACTION_TYPES,
    SCRIPT_NAME,
    Action,
    ActionResult,
    ApplyContractError,
    ApplyDocument,
    GrantRead,
    ImportPfx,
    RecyclePool,
    RemoveAuthority,
    RestartService,
    RestoreFile,
    SetBinding,
    WriteFile,
    actions_from_json,
    backup_path,
)

logger = logging.getLogger(__name__)

TEMP_FOLDER = "C:\\Windows\\Temp"
SERVICE_TIMEOUT_SECONDS = 60
"""apply.ps1's $ServiceTimeoutSeconds: the bound on each WaitForStatus."""
_PARAMETERS = {
    "actions": "Actions",
    "runid": "RunId",
    "pfxfiles": "PfxFiles",
    "filecontents": "FileContents",
    "pfxpassword": "PfxPassword",
    "check": "Check",
    "poststatescript": "PostStateScript",
    "servicepatterns": "ServicePatterns",
    "configfiles": "ConfigFiles",
}
# apply.ps1's test of -PostStateScript (-notmatch: case-insensitive): gather.ps1's marker line
_GATHER_MARKER = re.compile(r"\A# cosdoc-certs-script: gather\r?\n", re.IGNORECASE)


class ActionFailed(Exception):
    """An action failed with Windows' message; ``before`` is what was known before it."""

    def __init__(self, message: str, before: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.before = before


@dataclass
class _Run:
    """One ``apply`` call: the server and the call's parameters."""

    server: CosDocServer
    run_id: str
    pfx_files: list[str]
    password: str


def register(registry: ScriptRegistry, server: CosDocServer) -> None:
    """Answer ``apply.ps1`` from ``server``."""
    registry.register(SCRIPT_NAME, lambda call: apply(server, call))


def apply(server: CosDocServer, call: ScriptCall) -> ScriptResult:
    """Run ``apply`` against ``server``: one JSON string, as ``apply.ps1`` writes it.

    Like the script, every way out of its body writes the result document: Constrained
    Language Mode, a missing ``-Actions``/``-RunId``, ``-Actions`` that ``ConvertFrom-Json``
    refuses (5.1's length limit included) or an unknown action end in a document whose
    ``error`` says why, with no action run. An unknown parameter fails in PowerShell's
    binder, before the script runs.
    """
    if server.language_mode != "FullLanguage":
        refusal = CONSTRAINED_LANGUAGE.format(script="apply.ps1")
        return ScriptResult(output=[ApplyDocument((), 0, None, error=refusal).to_json()])
    try:
        parameters = _bind(call.parameters)
    except ValueError as error:  # PowerShell's parameter binder, before the script runs
        return ScriptResult(terminating_error=str(error))
    try:
        actions = _read_actions(parameters)
    except (ValueError, ApplyContractError) as error:
        return ScriptResult(output=[ApplyDocument((), 0, None, error=str(error)).to_json()])
    except SimulatedWindowsError as error:
        return ScriptResult(output=[ApplyDocument((), 0, None, error=error.message).to_json()])
    run = _Run(
        server,
        str(parameters.get("RunId", "")),
        _strings(parameters.get("PfxFiles")),
        str(parameters.get("PfxPassword") or ""),
    )
    with server.lock:
        if parameters.get("Check"):
            # the check twin builds on this module's steps: imported here, not at the top
            from cosdoc_certs.lab.twins.apply_check import check_actions

            document = check_actions(run.server, actions, run.pfx_files, run.password)
        else:
            document = _with_post_state(run.server, _run_actions(run, actions), parameters)
    return ScriptResult(output=[document.to_json()])


def _with_post_state(
    server: CosDocServer, document: ApplyDocument, parameters: Mapping[str, Any]
) -> ApplyDocument:
    """With ``-PostStateScript``: gather.ps1 over the state reached, after a complete run."""
    text = str(parameters.get("PostStateScript") or "")
    if not text:
        return document
    if document.stopped:
        return dataclasses.replace(document, post_state_error="not read: the run did not complete")
    if not _GATHER_MARKER.match(text):
        refusal = "-PostStateScript is not gather.ps1; the post-state was not read."
        return dataclasses.replace(document, post_state_error=refusal)
    state = gather_text(
        server,
        _strings(parameters.get("ServicePatterns")),
        _strings(parameters.get("ConfigFiles")),
        post_state=True,
    )
    return dataclasses.replace(document, post_state=state)


def _strings(value: Any) -> list[str]:
    """A ``[string[]]`` parameter: absent is empty, one value is a list of one."""
    if value is None:
        return []
    return [str(item) for item in (value if isinstance(value, list) else [value])]


def _read_actions(parameters: dict[str, Any]) -> list[Action]:
    """``-Actions`` through 5.1's ConvertFrom-Json, then the script's up-front action check."""
    for name in ("Actions", "RunId"):
        if not parameters.get(name):
            raise ValueError(f"-{name} is required; nothing was changed.")
    text = str(parameters["Actions"])
    parsed = convert_from_json(text)
    contents = _strings(parameters.get("FileContents"))
    for index, item in enumerate(parsed if isinstance(parsed, list) else [parsed]):
        kind = item.get("action") if isinstance(item, dict) else None
        if kind not in ACTION_TYPES:
            raise ValueError(
                f"Action {index} is '{kind or ''}', which this apply.ps1 does not know; "
                "nothing was changed."
            )
        position = item.get("content_index")
        if kind == WriteFile.action and not (
            isinstance(position, int) and 0 <= position < len(contents)
        ):
            raise ValueError(
                f"Action {index}: -FileContents has no file number {position}; nothing was changed."
            )
    return actions_from_json(text, contents)


_NEW_BEFORE: dict[str, dict[str, Any]] = {
    "import-pfx": {"present": [], "with_key": [], "key_provider": None, "authorities_added": []},
    "write-file": {"sha256": None, "backup": None},
    "grant-read": {"key_file": None, "could_read": False},
    "set-binding": {"thumbprint": None, "settings": None},
    "restart-service": {"state": None, "stuck_process": None},
    "recycle-pool": {"state": None},
    "restore-file": {"sha256": None, "restored": False},
    "remove-authority": {"existed": False},
}


def new_before(kind: str) -> dict[str, Any]:
    """apply.ps1's New-Before: an action's "before" facts, at their defaults until it runs."""
    return copy.deepcopy(_NEW_BEFORE[kind])


def _run_actions(run: _Run, actions: list[Action]) -> ApplyDocument:
    """Check every write-file's hash, then run the actions in order up to the first failure."""
    run.server.faults.apply_call_started()
    refused = _preflight(run.server, actions)
    if refused is not None:
        return ApplyDocument((refused,), 0, refused.index)
    results: list[ActionResult] = []
    for index, action in enumerate(actions):
        try:
            injected = run.server.faults.action_failure(index)
            if injected is not None:  # the lab's fail_action: before the action changes anything
                raise ActionFailed(injected, new_before(action.action))
            message, before = _EXECUTORS[type(action)](run, action)
        except ActionFailed as failure:
            results.append(
                ActionResult(index, action.action, False, failure.message, failure.before)
            )
            return ApplyDocument(tuple(results), len(results) - 1, index)
        results.append(ActionResult(index, action.action, True, message, before))
    return ApplyDocument(tuple(results), len(results), None)


def _bind(parameters: dict[str, Any]) -> dict[str, Any]:
    bound: dict[str, Any] = {}
    for name, value in parameters.items():
        canonical = _PARAMETERS.get(name.casefold())
        if canonical is None:
            raise ValueError(f"A parameter cannot be found that matches parameter name '{name}'.")
        bound[canonical] = value
    return bound


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest().upper()


def _preflight(server: CosDocServer, actions: list[Action]) -> ActionResult | None:
    for index, action in enumerate(actions):
        if not isinstance(action, WriteFile):
            continue
        current = _hash_of(server, action.path)
        if current is None or current != action.expected_sha256.upper():
            message = (
                f"Cannot find path '{action.path}' because it does not exist."
                if current is None
                else f"'{action.path}' changed since planning (SHA-256 {current}, "
                f"expected {action.expected_sha256.upper()}); nothing was changed."
            )
            return ActionResult(
                index, action.action, False, message, {"sha256": current, "backup": None}
            )
    return None


def _hash_of(server: CosDocServer, path: str) -> str | None:
    return _sha256(server.files.read(path)) if server.files.is_file(path) else None


def windows_step(step: Callable[[], Any], before: dict[str, Any]) -> Any:
    """Run a model operation; a simulated Windows failure fails the action with ``before``."""
    try:
        return step()
    except SimulatedWindowsError as error:
        raise ActionFailed(error.message, before) from None


def import_wanted(
    server: CosDocServer, action: ImportPfx, pfx_files: Sequence[str]
) -> tuple[list[str], dict[str, Any]]:
    """apply.ps1's start of import-pfx: what is in the store (with its key) already, and the
    thumbprints still to import; fails on a missing ``-PfxFiles`` entry."""
    store = server.store
    present = [t for t in action.thumbprints if store.find(t) is not None]
    with_key = [t for t in present if store.get(t).has_private_key]
    before: dict[str, Any] = {
        "present": present,
        "with_key": with_key,
        "key_provider": None,
        "authorities_added": [],
    }
    if not 0 <= action.index < len(pfx_files):
        raise ActionFailed(f"-PfxFiles has no file number {action.index}.", before)
    return [t for t in action.thumbprints if t not in with_key], before


def _import_pfx(run: _Run, action: ImportPfx) -> tuple[str, dict[str, Any]]:
    store = run.server.store
    wanted, before = import_wanted(run.server, action, run.pfx_files)
    with_key = before["with_key"]
    if wanted:
        _import_file(run, action, before)
        _check_provider(run, action, wanted, before)
    _add_authorities(run, action, before)
    if not wanted:
        before["key_provider"] = store.get(with_key[0]).key_provider
        return (
            f"{', '.join(action.thumbprints)} already in the store with its key: not imported "
            "again (its key file and grants are kept)",
            before,
        )
    return f"imported {', '.join(wanted)} (key in {before['key_provider']})", before


def _import_file(run: _Run, action: ImportPfx, before: dict[str, Any]) -> None:
    """``Import-PfxCertificate`` of a temporary copy of ``PfxFiles[index]``, deleted after."""
    try:
        data = base64.b64decode(run.pfx_files[action.index], validate=True)
    except binascii.Error:
        raise ActionFailed("The PFX file is not valid base64.", before) from None
    temp = windows_join(TEMP_FOLDER, f"cosdoc-certs-{run.run_id}-{action.index}.pfx")
    run.server.files.write(temp, data)
    try:
        windows_step(run.server.open_personal_store_for_writing, before)
        imported = windows_step(lambda: run.server.store.import_pfx(data, run.password), before)
    finally:
        run.server.files.delete(temp)
    missing = [t for t in action.thumbprints if t.upper() not in imported]
    if missing:
        raise ActionFailed(f"The PFX file does not hold {', '.join(missing)}.", before)


def _check_provider(
    run: _Run, action: ImportPfx, imported: list[str], before: dict[str, Any]
) -> None:
    """Fail — taking the new certificates out again — when a key is not in the planned provider."""
    store = run.server.store
    for thumbprint in imported:
        actual = store.get(thumbprint).key_provider
        before["key_provider"] = actual
        expected = action.key_provider
        if expected is None or (actual or "").casefold() == expected.casefold():
            continue
        for taken_back in imported:
            if taken_back not in before["present"]:
                store.remove(taken_back)
        raise ActionFailed(
            f"The key of {thumbprint} was imported into {actual}, not {expected} as planned; "
            "the certificate was removed again.",
            before,
        )


def _add_authorities(run: _Run, action: ImportPfx, before: dict[str, Any]) -> None:
    """Put each CA certificate the CA and Root stores lack into ``LocalMachine\\CA``."""
    store = run.server.store
    for encoded in action.authorities:
        certificate = x509.load_der_x509_certificate(base64.b64decode(encoded))
        if thumbprint_of(certificate) in store.authorities:
            continue
        before["authorities_added"].append(store.add_authority(certificate))


def _remove_authority(run: _Run, action: RemoveAuthority) -> tuple[str, dict[str, Any]]:
    existed = run.server.store.remove_authority(action.thumbprint)
    return ("removed" if existed else "not there"), {"existed": existed}


def _write_file(run: _Run, action: WriteFile) -> tuple[str, dict[str, Any]]:
    files = run.server.files
    current = windows_step(lambda: files.read(action.path), {"sha256": None, "backup": None})
    before: dict[str, Any] = {"sha256": _sha256(current), "backup": None}
    if before["sha256"] != action.expected_sha256.upper():
        raise ActionFailed(f"'{action.path}' changed since planning; not overwritten.", before)
    try:
        content = base64.b64decode(action.content_base64, validate=True)
    except binascii.Error:
        raise ActionFailed("content_base64 is not valid base64.", before) from None
    backup = backup_path(action.path, run.run_id)
    windows_step(lambda: files.copy(action.path, backup), before)
    before["backup"] = backup
    _write_in_place(files, action.path, content, before)
    return f"wrote {len(content)} bytes (backup {backup})", before


def _write_in_place(
    files: WindowsFileSystem, path: str, data: bytes, before: dict[str, Any]
) -> None:
    """WriteAllBytes with ReadOnly/Hidden cleared around it and put back afterwards."""
    attributes = windows_step(lambda: files.attributes(path), before)
    cleared = attributes - {"ReadOnly", "Hidden"}
    if cleared != attributes:
        files.set_attributes(path, cleared)
    try:
        files.write_all_bytes(path, data)
    except SimulatedWindowsError as error:
        named = ", ".join(sorted(attributes)) or "Normal"
        raise ActionFailed(
            f"Cannot write '{path}' (attributes {named}): {error.message}", before
        ) from None
    finally:
        files.set_attributes(path, attributes)


def _grant_read(run: _Run, action: GrantRead) -> tuple[str, dict[str, Any]]:
    """apply.ps1's Invoke-GrantRead: the key file by its unique name, then icacls by SID."""
    before: dict[str, Any] = {"key_file": None, "could_read": False}
    key_file = grant_target(run.server, action, before)
    try:
        run.server.store.grant_read(action.thumbprint, f"*{action.sid}")
    except SimulatedWindowsError as error:
        raise ActionFailed(
            f"icacls failed (exit code {error.hresult & 0xFFFF}): {error.message}", before
        ) from None
    return f"{action.account} may read {key_file}", before


def grant_target(server: CosDocServer, action: GrantRead, before: dict[str, Any]) -> str:
    """The start of grant-read (the action and its check): the SID checked, the key file
    found by the key's unique name; ``before`` gets the file and whether the SID itself could
    read it. Returns the key file's path."""
    store = server.store
    entry = windows_step(lambda: store.get(action.thumbprint), before)
    if re.fullmatch(r"S-1-[0-9-]+", action.sid) is None:
        raise ActionFailed(f"'{action.sid}' is not a SID.", before)
    handle = store.key_handle(entry.thumbprint)
    if handle is None:
        raise ActionFailed(f"The certificate {entry.thumbprint} has no private key.", before)
    found = find_key_file(server, handle.unique_name)
    if found is None:
        raise ActionFailed(
            f"The key of {entry.thumbprint} ({handle.provider}) has no file in any machine key "
            "folder: it cannot be granted by a file ACL.",
            before,
        )
    key_file = found[1]
    before.update(key_file=key_file, could_read=action.sid.upper() in entry.readers)  # itself
    return key_file


def rebind_target(
    server: CosDocServer, action: SetBinding, before: dict[str, Any], *, imported: bool = False
) -> Binding:
    """apply.ps1's Get-RebindTarget: the binding (WebAdministration loaded), refused for a
    Central Certificate Store binding or a certificate not in the store (unless ``imported``
    earlier in the run)."""
    windows_step(server.import_web_administration, before)
    binding: Binding = windows_step(
        lambda: server.find_binding(action.site, action.binding), before
    )
    if binding.ssl_flags & CENTRAL_STORE_FLAG:
        raise ActionFailed(
            f"'{action.binding}' of '{action.site}' takes its certificate from the Central "
            "Certificate Store; not rebound.",
            before,
        )
    thumbprint = action.thumbprint.upper()
    if server.store.find(thumbprint) is None and not imported:
        raise ActionFailed(
            f"Cannot find path 'Cert:\\LocalMachine\\My\\{thumbprint}' because it does not exist.",
            before,
        )
    return binding


def _set_binding(run: _Run, action: SetBinding) -> tuple[str, dict[str, Any]]:
    """Rebind through netsh, carrying the entry's settings over, and check they stayed."""
    server = run.server
    before: dict[str, Any] = {"thumbprint": None, "settings": None}
    binding = rebind_target(server, action, before)
    thumbprint = action.thumbprint.upper()
    argument, subkey = http_sys_entry(action.binding, sni=binding.sni)
    current = server.sslcert_registry(subkey)
    if current is None:
        windows_step(
            lambda: server.set_binding_certificate(action.site, binding, thumbprint), before
        )
    else:
        before.update(thumbprint=binding.thumbprint, settings=setting_strings(current))
        wanted = current if action.settings is None else settings_of(action.settings)
        arguments = [argument, f"certhash={thumbprint}", f"appid={wanted['AppId']}"]
        arguments += ["certstorename=MY", *netsh_options(wanted, argument, before)]
        try:
            server.netsh_update_sslcert(arguments)
        except SimulatedWindowsError as error:
            raise ActionFailed(
                f"netsh http update sslcert failed (exit code 1): {error.message}", before
            ) from None
        _check_settings(argument, wanted, server.sslcert_registry(subkey) or {}, before)
    if (binding.thumbprint or "").upper() != thumbprint:
        raise ActionFailed(f"{argument} still serves {binding.thumbprint}.", before)
    return f"{action.site} {action.binding} serves {thumbprint}", before


def http_sys_entry(binding: str, *, sni: bool) -> tuple[str, str]:
    """apply.ps1's Get-HttpSysEntry: the netsh argument and the registry subkey of a binding."""
    ip, port, host = _split_binding(binding)
    if sni:
        return f"hostnameport={host}:{port}", f"SslSniBindingInfo\\{host}:{port}"
    bare = ip.strip("[]")
    if bare in ("*", ""):
        bare = "0.0.0.0"  # noqa: S104 -- binding notation
    endpoint = f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"
    return f"ipport={endpoint}", f"SslBindingInfo\\{endpoint}"


def _split_binding(binding: str) -> tuple[str, str, str]:
    match = re.match(r"^(.*):(\d+):(.*)$", binding)
    if match is None:
        raise ValueError(f"'{binding}' is not ip:port:host.")
    return match.group(1), match.group(2), match.group(3)


def setting_strings(settings: Mapping[str, SettingValue]) -> list[str]:
    """apply.ps1's form of an entry's registry values: ``Name=value``, in a fixed order."""
    return [f"{name}={settings.get(name, default)}" for name, default in DEFAULT_SETTINGS.items()]


def settings_of(strings: Sequence[str]) -> dict[str, SettingValue]:
    """``Name=value`` strings back to registry values (numbers as int)."""
    settings: dict[str, SettingValue] = dict(DEFAULT_SETTINGS)
    for text in strings:
        name, _, value = text.partition("=")
        settings[name] = int(value) if isinstance(DEFAULT_SETTINGS.get(name), int) else value
    return settings


def netsh_options(
    settings: Mapping[str, SettingValue], argument: str, before: dict[str, Any]
) -> list[str]:
    """apply.ps1's ConvertTo-NetshOption: every non-default setting as a netsh option."""
    flags, check_mode = int(settings["DefaultFlags"]), int(settings["DefaultSslCertCheckMode"])
    options = [f"{name}=enable" for name, bit in FLAG_OPTIONS.items() if flags & bit]
    options += [
        f"{name}={value}" for name, (bit, value) in CHECK_MODE_OPTIONS.items() if check_mode & bit
    ]
    known_flags = sum(FLAG_OPTIONS.values())
    known_modes = sum(bit for bit, _ in CHECK_MODE_OPTIONS.values())
    freshness = int(settings["DefaultSslRevocationFreshnessTime"])
    if freshness:
        known_modes |= FRESHNESS_TIME_ENABLED
    if flags & ~known_flags or check_mode & ~known_modes:
        raise ActionFailed(
            f"The http.sys entry {argument} has settings netsh cannot carry over "
            f"(DefaultFlags 0x{flags:X}, DefaultSslCertCheckMode 0x{check_mode:X}); "
            "update its certificate by hand.",
            before,
        )
    for option, name in (*NUMBER_OPTIONS.items(), *TEXT_OPTIONS.items()):
        if settings[name]:
            options.append(f"{option}={settings[name]}")
    return options


def _check_settings(
    argument: str,
    wanted: Mapping[str, SettingValue],
    after: Mapping[str, SettingValue],
    before: dict[str, Any],
) -> None:
    """Every registry value of the entry is what it was meant to be after netsh."""
    changed = [
        f"{name} {wanted[name]} -> {after.get(name)}"
        for name in DEFAULT_SETTINGS
        if str(after.get(name, "")).casefold() != str(wanted[name]).casefold()
    ]
    if changed:
        raise ActionFailed(
            f"netsh http update sslcert changed the settings of {argument}: {'; '.join(changed)}.",
            before,
        )


def _restart_service(run: _Run, action: RestartService) -> tuple[str, dict[str, Any]]:
    """Stop and start through ServiceController, each phase with a bounded WaitForStatus."""
    server = run.server
    before: dict[str, Any] = {"state": None, "stuck_process": None}
    service = windows_step(lambda: server.service(action.name), before)
    before["state"] = service.state
    logged = len(server.event_log)
    if service.state == "Running":
        windows_step(lambda: server.request_service_stop(service.name), before)
    try:
        server.wait_for_service_status(service.name, "Stopped", SERVICE_TIMEOUT_SECONDS)
    except SimulatedWindowsError:
        before["stuck_process"] = f"{service.process_name} (PID {service.process_id})"
        raise ActionFailed(_stuck_message(service, before["stuck_process"]), before) from None
    try:
        server.request_service_start(service.name)
        server.wait_for_service_status(service.name, "Running", SERVICE_TIMEOUT_SECONDS)
    except SimulatedWindowsError as error:
        message = (
            f"Service '{service.name}' did not start: {error.message} (it is {service.state})."
        )
        raise ActionFailed(_with_events(message, server, logged, service.name), before) from None
    return f"{service.name} is Running", before


def _stuck_message(service: WindowsService, process: str) -> str:
    return (
        f"Service '{service.name}' did not stop within {SERVICE_TIMEOUT_SECONDS} s "
        f"(it is {service.state}); its process {process} is still running. End that process "
        "(or restart the server), then start the service."
    )


def _recycle_pool(run: _Run, action: RecyclePool) -> tuple[str, dict[str, Any]]:
    server = run.server
    before: dict[str, Any] = {"state": None}
    windows_step(server.import_web_administration, before)
    pool = windows_step(lambda: server.app_pool(action.name), before)
    before["state"] = pool.state
    logged = len(server.event_log)
    if pool.state == "Started":
        windows_step(lambda: server.recycle_app_pool(pool.name), before)
    else:
        windows_step(lambda: server.start_app_pool(pool.name), before)
    if pool.state != "Started":
        message = f"Application pool '{pool.name}' is {pool.state} after starting it."
        raise ActionFailed(_with_events(message, server, logged, None), before)
    verb = "recycled" if before["state"] == "Started" else "started"
    return f"{pool.name} {verb}, Started", before


def _with_events(message: str, server: CosDocServer, since: int, source: str | None) -> str:
    """``message`` plus the application errors logged since the action began."""
    reasons = [
        entry.message
        for entry in server.event_log[since:]
        if entry.log == "Application" and (source is None or entry.source == source)
    ]
    return " ".join([message, *reasons[:3]])


def _restore_file(run: _Run, action: RestoreFile) -> tuple[str, dict[str, Any]]:
    files = run.server.files
    current = _hash_of(run.server, action.path)
    before: dict[str, Any] = {"sha256": current, "restored": False}
    if not files.is_file(action.backup):
        return f"no backup {action.backup}: {action.path} was not changed", before
    original = files.read(action.backup)
    accepted = (
        {action.expected_sha256.upper(), _sha256(original)} if action.expected_sha256 else None
    )
    if accepted is not None and current not in accepted:
        raise ActionFailed(
            f"'{action.path}' was changed after the run (SHA-256 {current}); not overwritten.",
            before,
        )
    _write_in_place(files, action.path, original, before)
    before["restored"] = True
    return f"restored from {action.backup}", before


_EXECUTORS: dict[type, Callable[[_Run, Any], tuple[str, dict[str, Any]]]] = {
    ImportPfx: _import_pfx,
    WriteFile: _write_file,
    GrantRead: _grant_read,
    SetBinding: _set_binding,
    RestartService: _restart_service,
    RecyclePool: _recycle_pool,
    RestoreFile: _restore_file,
    RemoveAuthority: _remove_authority,
}
