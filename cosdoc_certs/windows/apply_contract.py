"""The JSON contract of ``apply.ps1``: the actions it executes and the document it returns.

Written down once; :mod:`cosdoc_certs.windows.apply` builds the actions and reads the result,
the lab twin (:mod:`cosdoc_certs.lab.twins.apply`) reads the actions and writes the result.

Parameters of ``apply.ps1``: ``-Actions`` (JSON text: a list of action objects, no secrets,
no file contents), ``-RunId`` (names the backups), ``-PfxFiles`` (base64 PFX files, indexed by
``import-pfx``), ``-FileContents`` (base64 of each file ``write-file`` writes, indexed by its
``content_index``) and ``-PfxPassword`` (SecureString). File contents travel outside
``-Actions`` because Windows PowerShell 5.1's ``ConvertFrom-Json`` refuses text longer than
2,097,152 characters (:data:`CONVERT_FROM_JSON_LIMIT`). The actions, executed in order until
the first failure (every action name and ``content_index`` is checked, and every
``write-file`` hash compared, before the first action runs)::

    {"action": "import-pfx", "index": int, "thumbprints": [str],
     "key_provider": str|null, "authorities": [base64 DER]}
    {"action": "write-file", "path", "content_index": int, "expected_sha256"}
    {"action": "grant-read", "thumbprint", "account", "sid"}
    {"action": "set-binding", "site", "binding": "ip:port:host", "thumbprint",
     "settings": ["Name=value", ...]|null}
    {"action": "restart-service", "name"}
    {"action": "recycle-pool", "name"}
    {"action": "restore-file", "path", "backup", "expected_sha256": str|null}
    {"action": "remove-authority", "thumbprint"}

``import-pfx`` skips a certificate that is in the store with its key already (a new import
would replace its key file and drop the grants on it), puts each of ``authorities`` that
``LocalMachine\\CA``/``Root`` lack into ``LocalMachine\\CA``, and — with ``key_provider`` —
fails when the imported key is in another provider (removing what it just added).

The result (schema version 1)::

    {"schema_version": 1, "completed": int, "failed_index": int|null, "error": str|null,
     "results": [{"index", "action", "ok": bool, "message", "before": {...}}]}

With the ``-Check`` switch nothing is changed: each action's preconditions are tested
instead, every action gets a result (``ok``: it would succeed, its message saying what it would
do; else the message says why it cannot and what fixes it), ``failed_index`` is the first
blocker, and the document adds ``"check": true`` and ``"environment": [{"name", "ok",
"message"}]`` (elevated administrator, Full Language mode, WebAdministration).

With ``-PostStateScript`` (the text of ``gather.ps1``, with ``-ServicePatterns`` and
``-ConfigFiles`` for it), a run in which every action succeeded ends by running gather.ps1 in
the same pipeline, and the document adds ``"post_state": str|null`` (the JSON text gather.ps1
wrote: the facts the run reached) and ``"post_state_error": str|null`` (why it was not read:
a text that is not gather.ps1, a read that failed, a run that stopped). The actions' results
stand either way.

``error`` is set when the script stopped outside an action (the actions could not be read,
an unknown action, a missing parameter, an unexpected failure between actions): every path
out of ``apply.ps1`` still writes this document.

``before`` holds what an undo needs, per action: import-pfx ``{"present": [thumbprints
already in the store], "with_key": [those of them with their key: not imported again],
"key_provider": provider of the key afterwards|null, "authorities_added": [CA thumbprints put
into LocalMachine\\CA]}``; remove-authority ``{"existed": bool}``; write-file ``{"sha256":
str|null, "backup": str|null}`` (backup set once the copy exists); grant-read
``{"key_file": str|null, "could_read": bool}``; set-binding ``{"thumbprint": str|null,
"settings": ["Name=value"]|null}`` (the http.sys entry's registry values before the change:
AppId, DefaultFlags, DefaultSslCertCheckMode, ...); restart-service ``{"state",
"stuck_process": str|null}`` (the process still running when the service did not stop in
time: an undo does not restart that service); recycle-pool ``{"state"}``; restore-file
``{"sha256": str|null, "restored": bool}``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from cosdoc_certs.errors import RemoteError, hide_passwords

SCHEMA_VERSION = 1
SCRIPT_NAME = "apply"
CONVERT_FROM_JSON_LIMIT = 2_097_152
"""Characters Windows PowerShell 5.1's ``ConvertFrom-Json`` accepts (JavaScriptSerializer's
default ``MaxJsonLength``); ``-Actions`` must stay below it."""


class ApplyContractError(RemoteError):
    """Actions or a result document that do not follow the apply contract."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"apply: {problem}",
            "the server's apply.ps1 and this cosdoc-certs differ; install matching versions",
        )


@dataclasses.dataclass(frozen=True)
class ImportPfx:
    """Import ``PfxFiles[index]`` into ``Cert:\\LocalMachine\\My``; it must hold ``thumbprints``."""

    action: ClassVar[str] = "import-pfx"
    index: int
    thumbprints: tuple[str, ...]
    key_provider: str | None = None
    authorities: tuple[str, ...] = dataclasses.field(default=(), repr=False)


@dataclasses.dataclass(frozen=True)
class WriteFile:
    """Compare-and-swap: back the file up beside itself, then write the new bytes."""

    action: ClassVar[str] = "write-file"
    path: str
    content_base64: str = dataclasses.field(repr=False)
    expected_sha256: str


@dataclasses.dataclass(frozen=True)
class GrantRead:
    """Give the account with ``sid`` read on the private key file of ``thumbprint``.

    ``apply.ps1`` grants by SID (``icacls <file> /grant *<sid>:(R)``): names are localized and
    the SCM's spellings (``.\\user``) do not resolve. ``account`` is the server's own name
    for it, for messages.
    """

    action: ClassVar[str] = "grant-read"
    thumbprint: str
    account: str
    sid: str


@dataclasses.dataclass(frozen=True)
class SetBinding:
    """Bind the certificate ``thumbprint`` to the HTTPS binding ``ip:port:host`` of ``site``.

    The http.sys entry keeps its other settings (client certificates, protocols, AppId):
    ``settings`` (``"Name=value"`` registry values, as a result's ``before`` reports them)
    are the ones to write — an undo passes the original ones; None keeps the entry's own.
    """

    action: ClassVar[str] = "set-binding"
    site: str
    binding: str
    thumbprint: str
    settings: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class RestartService:
    """Restart the service; it must be Running afterwards."""

    action: ClassVar[str] = "restart-service"
    name: str


@dataclasses.dataclass(frozen=True)
class RecyclePool:
    """Recycle the app pool (start it when stopped); it must be Started afterwards."""

    action: ClassVar[str] = "recycle-pool"
    name: str


@dataclasses.dataclass(frozen=True)
class RestoreFile:
    """Copy ``backup`` over ``path`` (kept); with ``expected_sha256``, only over those bytes."""

    action: ClassVar[str] = "restore-file"
    path: str
    backup: str
    expected_sha256: str | None = None


@dataclasses.dataclass(frozen=True)
class RemoveAuthority:
    """Take the CA certificate ``thumbprint`` out of ``LocalMachine\\CA`` (undo of an import)."""

    action: ClassVar[str] = "remove-authority"
    thumbprint: str


Action = (
    ImportPfx
    | WriteFile
    | GrantRead
    | SetBinding
    | RestartService
    | RecyclePool
    | RestoreFile
    | RemoveAuthority
)
ACTION_TYPES: dict[str, type[Action]] = {
    kind.action: kind
    for kind in (
        ImportPfx,
        WriteFile,
        GrantRead,
        SetBinding,
        RestartService,
        RecyclePool,
        RestoreFile,
        RemoveAuthority,
    )
}


BEFORE_KEYS: dict[str, frozenset[str]] = {
    "import-pfx": frozenset({"present", "with_key", "key_provider", "authorities_added"}),
    "write-file": frozenset({"sha256", "backup"}),
    "grant-read": frozenset({"key_file", "could_read"}),
    "set-binding": frozenset({"thumbprint", "settings"}),
    "restart-service": frozenset({"state", "stuck_process"}),
    "recycle-pool": frozenset({"state"}),
    "restore-file": frozenset({"sha256", "restored"}),
    "remove-authority": frozenset({"existed"}),
}
"""The keys of each action's ``before`` object."""


def backup_path(path: str, run_id: str) -> str:
    """Where ``write-file`` keeps the original of ``path``: beside it, named after the run."""
    return f"{path}.cosdoc-certs-{run_id}.bak"


def action_to_dict(action: Action) -> dict[str, Any]:
    """The JSON object of ``action``."""
    data: dict[str, Any] = {"action": action.action}
    for field in dataclasses.fields(action):
        value = getattr(action, field.name)
        data[field.name] = list(value) if isinstance(value, tuple) else value
    return data


def actions_to_json(actions: Sequence[Action]) -> str:
    """The ``-Actions`` parameter: compact JSON text, file contents replaced by their index."""
    data, position = [], 0
    for action in actions:
        item = action_to_dict(action)
        if isinstance(action, WriteFile):
            del item["content_base64"]
            item["content_index"] = position
            position += 1
        data.append(item)
    return json.dumps(data, separators=(",", ":"))


def file_contents(actions: Sequence[Action]) -> list[str]:
    """The ``-FileContents`` parameter: the base64 content of each write-file, in order."""
    return [action.content_base64 for action in actions if isinstance(action, WriteFile)]


def actions_from_json(text: str, contents: Sequence[str] = ()) -> list[Action]:
    """Parse and validate ``-Actions``; ``contents`` is ``-FileContents``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ApplyContractError(f"-Actions is not JSON ({error.msg})") from None
    if not isinstance(data, list):
        raise ApplyContractError("-Actions must be a JSON array")
    return [_action_from_dict(item, index, contents) for index, item in enumerate(data)]


def _action_from_dict(data: Any, index: int, contents: Sequence[str]) -> Action:
    where = f"action {index}"
    if not isinstance(data, dict) or data.get("action") not in ACTION_TYPES:
        known = ", ".join(ACTION_TYPES)
        raise ApplyContractError(f"{where} must be an object whose 'action' is one of {known}")
    kind = ACTION_TYPES[data["action"]]
    if kind is WriteFile:
        data = _with_content(data, where, contents)
    hints = typing.get_type_hints(kind)
    arguments = {}
    for field in dataclasses.fields(kind):
        arguments[field.name] = _checked(hints[field.name], data.get(field.name), where, field)
    unknown = set(data) - {"action"} - set(arguments)
    if unknown:
        raise ApplyContractError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}")
    return kind(**arguments)


def _with_content(data: dict[str, Any], where: str, contents: Sequence[str]) -> dict[str, Any]:
    """A write-file object with ``content_index`` replaced by the content it points to."""
    position = data.get("content_index")
    if not isinstance(position, int) or isinstance(position, bool):
        raise ApplyContractError(f"{where}: 'content_index' is missing or of the wrong type")
    if not 0 <= position < len(contents):
        raise ApplyContractError(f"{where}: -FileContents has no file number {position}")
    rest = {key: value for key, value in data.items() if key != "content_index"}
    return {**rest, "content_base64": contents[position]}


def _checked(hint: Any, value: Any, where: str, field: dataclasses.Field[Any]) -> Any:
    if value is None and field.default is None:
        return None
    if value is None and field.default == ():
        return ()
    optional = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if field.default is None and len(optional) == 1:
        hint = optional[0]
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        if all(isinstance(item, str) for item in value):
            return tuple(value)
    elif isinstance(value, str):
        return value
    raise ApplyContractError(f"{where}: '{field.name}' is missing or of the wrong type")


@dataclasses.dataclass(frozen=True)
class ActionResult:
    """How one action went, and the facts from before it that an undo needs."""

    index: int
    action: str
    ok: bool
    message: str
    before: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this result."""
        return {
            "index": self.index,
            "action": self.action,
            "ok": self.ok,
            "message": self.message,
            "before": dict(self.before),
        }


@dataclasses.dataclass(frozen=True)
class SessionCheck:
    """One check of the remote session under ``-Check`` (elevated, language mode, IIS module)."""

    name: str
    ok: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this check."""
        return {"name": self.name, "ok": self.ok, "message": self.message}


@dataclasses.dataclass(frozen=True)
class ApplyDocument:
    """The document ``apply.ps1`` returns: one result per action run, and where it stopped.

    Under ``-Check`` (``check``), one verdict per action and the session's checks.
    """

    results: tuple[ActionResult, ...]
    completed: int
    failed_index: int | None
    schema_version: int = SCHEMA_VERSION
    error: str | None = None
    check: bool = False
    environment: tuple[SessionCheck, ...] = ()
    post_state: str | None = dataclasses.field(default=None, repr=False)
    post_state_error: str | None = None

    @property
    def stopped(self) -> bool:
        """True when an action failed or the script stopped outside an action."""
        return self.failed_index is not None or self.error is not None

    @property
    def failed(self) -> ActionResult | None:
        """The result of the action that failed, if one did."""
        return next((r for r in self.results if r.index == self.failed_index), None)

    def result_of(self, index: int) -> ActionResult | None:
        """The result of action ``index``, or None if it did not run."""
        return next((r for r in self.results if r.index == index), None)

    def to_json(self) -> str:
        """The compact JSON ``apply.ps1`` writes."""
        data = {
            "schema_version": self.schema_version,
            "results": [result.to_dict() for result in self.results],
            "completed": self.completed,
            "failed_index": self.failed_index,
            "error": self.error,
        }
        if self.check:
            data["check"] = True
            data["environment"] = [item.to_dict() for item in self.environment]
        if self.post_state is not None or self.post_state_error is not None:
            data["post_state"] = self.post_state
            data["post_state_error"] = self.post_state_error
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_data(cls, data: Any) -> ApplyDocument:
        """Validate and parse the decoded document; :class:`ApplyContractError` if it is off."""
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise ApplyContractError(f"the result is not a schema {SCHEMA_VERSION} document")
        results = data.get("results")
        if not isinstance(results, list):
            raise ApplyContractError("'results' must be an array")
        completed, failed_index = data.get("completed"), data.get("failed_index")
        if not isinstance(completed, int) or not (failed_index is None or _is_int(failed_index)):
            raise ApplyContractError("'completed' and 'failed_index' must be integers")
        for key in ("error", "post_state", "post_state_error"):
            if data.get(key) is not None and not isinstance(data.get(key), str):
                raise ApplyContractError(f"'{key}' must be a string or null")
        error, post_error = data.get("error"), data.get("post_state_error")
        return cls(
            tuple(_result(item, n) for n, item in enumerate(results)),
            completed,
            failed_index,
            error=hide_passwords(error) if error is not None else None,
            check=data.get("check") is True,
            environment=tuple(_session_check(item, n) for n, item in _listed(data, "environment")),
            post_state=data.get("post_state"),
            post_state_error=hide_passwords(post_error) if post_error is not None else None,
        )


def _listed(data: dict[str, Any], key: str) -> list[tuple[int, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ApplyContractError(f"'{key}' must be an array")
    return list(enumerate(value))


def _session_check(data: Any, position: int) -> SessionCheck:
    if not (
        isinstance(data, dict)
        and isinstance(data.get("name"), str)
        and isinstance(data.get("ok"), bool)
        and isinstance(data.get("message"), str)
    ):
        raise ApplyContractError(f"environment[{position}] needs a name, a boolean ok, a message")
    return SessionCheck(data["name"], data["ok"], hide_passwords(data["message"]))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _result(data: Any, position: int) -> ActionResult:
    where = f"results[{position}]"
    if not isinstance(data, dict):
        raise ApplyContractError(f"{where} must be an object")
    index, action, ok = data.get("index"), data.get("action"), data.get("ok")
    message, before = data.get("message"), data.get("before")
    if not (isinstance(index, int) and isinstance(action, str) and isinstance(ok, bool)):
        raise ApplyContractError(f"{where} needs an integer index, an action and a boolean ok")
    if not isinstance(message, str) or not isinstance(before, dict):
        raise ApplyContractError(f"{where} needs a message and a 'before' object")
    if frozenset(before) != BEFORE_KEYS.get(action):
        raise ApplyContractError(f"{where}: unknown action {action!r} or wrong 'before' keys")
    return ActionResult(index, action, ok, hide_passwords(message), before)
