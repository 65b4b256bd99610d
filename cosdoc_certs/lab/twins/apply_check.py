"""The lab twin of ``apply.ps1 -Check``: each action's preconditions over the model, no change.

It follows the script's ``Test-*`` functions: the session (elevated administrator, the
WebAdministration module when a binding or pool is in the run), then one verdict per action
without stopping at a blocker — the PFX opened in memory with the password and
``LocalMachine\\My`` opened for writing, each config file's hash against the plan and its
ACL (a Deny Write for the administrators is a blocker; ReadOnly/Hidden are not, apply clears
them), each key file found and its DACL writable (WRITE_DAC), each http.sys entry read and its
settings turned into netsh options, each service's state and start mode, each pool's state.
Nothing in the model changes: no file, ACL, store entry, binding, service or pool.

Where it cannot follow the script: folders have no ACLs (the script's check that a backup can
be created beside a file always passes here).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from cosdoc_certs.lab.model import CosDocServer, SimulatedWindowsError
from cosdoc_certs.lab.server.store import open_pfx
from cosdoc_certs.lab.twins.apply import (
    ActionFailed,
    grant_target,
    http_sys_entry,
    import_wanted,
    netsh_options,
    rebind_target,
    setting_strings,
    settings_of,
    windows_step,
)
from cosdoc_certs.windows.apply_contract import (
    Action,
    ActionResult,
    ApplyDocument,
    GrantRead,
    ImportPfx,
    RecyclePool,
    RemoveAuthority,
    RestartService,
    RestoreFile,
    SessionCheck,
    SetBinding,
    WriteFile,
)


def check_actions(
    server: CosDocServer, actions: Sequence[Action], pfx_files: Sequence[str], password: str
) -> ApplyDocument:
    """The ``-Check`` document: the session's checks and a verdict for every action."""
    environment = _session_checks(server, actions)
    results: list[ActionResult] = []
    first_blocker: int | None = None
    for index, action in enumerate(actions):
        try:
            message, before = _CHECKS[type(action)](
                _Check(server, actions, index, pfx_files, password), action
            )
            results.append(ActionResult(index, action.action, True, message, before))
        except ActionFailed as blocked:
            results.append(
                ActionResult(index, action.action, False, blocked.message, blocked.before)
            )
            first_blocker = index if first_blocker is None else first_blocker
    completed = sum(result.ok for result in results)
    return ApplyDocument(
        tuple(results), completed, first_blocker, check=True, environment=environment
    )


class _Check:
    """One action's check: the server, the whole run (earlier imports count), the secrets."""

    def __init__(
        self,
        server: CosDocServer,
        actions: Sequence[Action],
        index: int,
        pfx_files: Sequence[str],
        password: str,
    ) -> None:
        self.server = server
        self.actions = actions
        self.index = index
        self.pfx_files = pfx_files
        self.password = password

    def imported_before(self, thumbprint: str) -> bool:
        """True when an ``import-pfx`` earlier in the run brings ``thumbprint``."""
        return any(
            isinstance(action, ImportPfx)
            and thumbprint.upper() in (t.upper() for t in action.thumbprints)
            for action in self.actions[: self.index]
        )


def _session_checks(server: CosDocServer, actions: Sequence[Action]) -> tuple[SessionCheck, ...]:
    session = server.session
    checks = [
        SessionCheck(
            "elevated-administrator",
            session.elevated,
            "the session runs as an elevated administrator"
            if session.elevated
            else "the session is not an elevated administrator: connect as a member of the "
            "local Administrators group (for a local account, LocalAccountTokenFilterPolicy=1)",
        ),
        SessionCheck("full-language", True, "PowerShell runs in FullLanguage mode"),
    ]
    if any(isinstance(action, (SetBinding, RecyclePool)) for action in actions):
        try:
            server.import_web_administration()
            checks.append(
                SessionCheck("web-administration", True, "the WebAdministration module loads")
            )
        except SimulatedWindowsError as error:
            checks.append(
                SessionCheck(
                    "web-administration",
                    False,
                    f"the WebAdministration module does not load ({error.message}): install the "
                    "IIS Management Scripts and Tools feature",
                )
            )
    return tuple(checks)


def _check_import(check: _Check, action: ImportPfx) -> tuple[str, dict[str, Any]]:
    wanted, before = import_wanted(check.server, action, check.pfx_files)
    if not wanted:
        return (
            f"would skip {', '.join(action.thumbprints)}: already in the store with its key",
            before,
        )
    if not check.password:
        raise ActionFailed("-PfxPassword is needed to import a PFX file.", before)
    try:
        data = base64.b64decode(check.pfx_files[action.index], validate=True)
    except binascii.Error:
        raise ActionFailed("The PFX file is not valid base64.", before) from None
    thumbprint = windows_step(lambda: open_pfx(data, check.password), before)
    if thumbprint not in (t.upper() for t in action.thumbprints):
        raise ActionFailed(
            f"The PFX file holds {thumbprint}, not {', '.join(action.thumbprints)}.", before
        )
    try:
        check.server.open_personal_store_for_writing()
    except SimulatedWindowsError as error:
        raise ActionFailed(
            f"LocalMachine\\My cannot be opened for writing ({error.message}): run as an "
            "elevated administrator.",
            before,
        ) from None
    return (
        f"would import {', '.join(wanted)} (the password opens the PFX; LocalMachine\\My is "
        "writable)",
        before,
    )


def _check_write(check: _Check, action: WriteFile) -> tuple[str, dict[str, Any]]:
    files = check.server.files
    before: dict[str, Any] = {"sha256": None, "backup": None}
    if not files.test_path(action.path):
        raise ActionFailed(f"Cannot find path '{action.path}' because it does not exist.", before)
    current = windows_step(lambda: files.read_in_session(action.path), before)
    before["sha256"] = hashlib.sha256(current).hexdigest().upper()
    if before["sha256"] != action.expected_sha256.upper():
        raise ActionFailed(
            f"'{action.path}' changed since planning (SHA-256 {before['sha256']}): run plan again.",
            before,
        )
    _check_writable(check.server, action.path, before)
    attributes = files.attributes(action.path) & {"ReadOnly", "Hidden"}
    note = (
        f" (its attributes {', '.join(sorted(attributes))} cleared around the write)"
        if attributes
        else ""
    )
    size = len(base64.b64decode(action.content_base64))
    return f"would write {size} bytes, backup beside it{note}", before


def _check_writable(server: CosDocServer, path: str, before: dict[str, Any]) -> None:
    if server.files.write_denied(path):
        raise ActionFailed(
            f"'{path}' cannot be written: its ACL denies writing to BUILTIN\\Administrators. "
            "Give Administrators write on it (icacls).",
            before,
        )


def _check_grant(check: _Check, action: GrantRead) -> tuple[str, dict[str, Any]]:
    before: dict[str, Any] = {"key_file": None, "could_read": False}
    if check.server.store.find(action.thumbprint) is None and check.imported_before(
        action.thumbprint
    ):
        return f"would grant {action.account} read on the key file the import creates", before
    key_file = grant_target(check.server, action, before)
    if check.server.store.get(action.thumbprint).dacl_locked:
        raise ActionFailed(
            f"The ACL of the key file {key_file} cannot be changed by this account (no "
            "WRITE_DAC): take ownership of it as an administrator, or grant "
            f"{action.account} read by hand.",
            before,
        )
    return f"would grant {action.account} read on {key_file}", before


def _check_binding(check: _Check, action: SetBinding) -> tuple[str, dict[str, Any]]:
    server = check.server
    before: dict[str, Any] = {"thumbprint": None, "settings": None}
    thumbprint = action.thumbprint.upper()
    binding = rebind_target(server, action, before, imported=check.imported_before(thumbprint))
    argument, subkey = http_sys_entry(action.binding, sni=binding.sni)
    current = server.sslcert_registry(subkey)
    if current is None:
        return f"would add {thumbprint} to {action.site} {action.binding}", before
    before.update(thumbprint=binding.thumbprint, settings=setting_strings(current))
    wanted = current if action.settings is None else settings_of(action.settings)
    options = netsh_options(wanted, argument, before)
    return (
        f"would run netsh http update sslcert {argument} certhash={thumbprint} "
        f"({len(options)} setting(s) carried over)",
        before,
    )


def _check_restart(check: _Check, action: RestartService) -> tuple[str, dict[str, Any]]:
    before: dict[str, Any] = {"state": None, "stuck_process": None}
    service = windows_step(lambda: check.server.service(action.name), before)
    before["state"] = service.state
    if service.start_mode == "Disabled":
        raise ActionFailed(
            f"Service '{service.name}' is disabled: it could be stopped but not started again. "
            "Set its start type (Set-Service -StartupType) first.",
            before,
        )
    if service.state not in ("Running", "Stopped"):
        raise ActionFailed(
            f"Service '{service.name}' is {service.state} now: wait until it settles (or end "
            "its process) and check again.",
            before,
        )
    return f"would restart {service.name} (it is {service.state})", before


def _check_recycle(check: _Check, action: RecyclePool) -> tuple[str, dict[str, Any]]:
    before: dict[str, Any] = {"state": None}
    windows_step(check.server.import_web_administration, before)
    pool = windows_step(lambda: check.server.app_pool(action.name), before)
    before["state"] = pool.state
    verb = "recycle" if pool.state == "Started" else "start"
    return f"would {verb} {pool.name}", before


def _check_restore(check: _Check, action: RestoreFile) -> tuple[str, dict[str, Any]]:
    files = check.server.files
    before: dict[str, Any] = {
        "sha256": hashlib.sha256(files.read(action.path)).hexdigest().upper()
        if files.is_file(action.path)
        else None,
        "restored": False,
    }
    if not files.is_file(action.backup):
        return f"would leave {action.path}: no backup {action.backup}", before
    _check_writable(check.server, action.path, before)
    return f"would restore {action.path} from {action.backup}", before


def _check_remove_authority(check: _Check, action: RemoveAuthority) -> tuple[str, dict[str, Any]]:
    existed = action.thumbprint.upper() in check.server.store.authorities
    return ("would remove it" if existed else "would leave it: not there"), {"existed": existed}


_CHECKS: dict[type, Callable[[_Check, Any], tuple[str, dict[str, Any]]]] = {
    ImportPfx: _check_import,
    WriteFile: _check_write,
    GrantRead: _check_grant,
    SetBinding: _check_binding,
    RestartService: _check_restart,
    RecyclePool: _check_recycle,
    RestoreFile: _check_restore,
    RemoveAuthority: _check_remove_authority,
}
