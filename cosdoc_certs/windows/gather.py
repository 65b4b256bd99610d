"""The JSON contract of ``gather.ps1``: what a Windows server reports, written down once.

``gather.ps1`` (on a real server) and its lab twin (``cosdoc_certs.lab.twins.gather``) both
emit this document; :meth:`GatherDocument.from_json` validates and parses it, and
:meth:`GatherDocument.to_json` writes it (the twin uses that). Field names are the snake_case
of the document's camelCase keys; dates are ``yyyy-MM-ddTHH:mm:ssZ`` (UTC), bytes base64.

Schema version 2 (``identity`` is ``{"sid": str|null, "name": str|null, "error": str|null}``:
the SID the server resolved, its own — possibly localized — name, and why it could not)::

    {"schemaVersion": 2, "computerName": str, "gatheredAt": date, "psVersion": str,
     "services": [{"name", "displayName", "state", "startMode", "account", "pathName",
                   "appDirectory": str|null, "installFolder": str|null, "identity"}],
     "iisPresence": {"installed": bool, "module": bool, "error": str|null},
     "iis": null | {"sites": [{"name", "id": int, "physicalPath", "appPool"}],
                    "applications": [{"site", "path", "physicalPath", "appPool"}],
                    "appPools": [{"name", "state", "identityType", "userName", "identity"}],
                    "bindings": [{"site", "bindingInformation", "sslFlags": int,
                                  "certificateHash", "certificateStoreName"}]},
     "httpSys": {"exitCode": int, "output": str},
     "certificates": [{"thumbprint", "der": base64, "hasPrivateKey": bool, "notAfter": date,
                       "keyStorage": "CNG"|"CAPI"|null, "keyProvider": str|null,
                       "keyFolder": str|null, "keyFile": str|null, "readers": [identity],
                       "keyError": str|null}],
     "configFiles": [{"path", "exists": bool, "content": base64|null, "error": str|null}]}

``httpSys`` is what ``netsh http show sslcert`` printed; :attr:`IisFacts.ssl_bindings` is parsed
from it here (:mod:`cosdoc_certs.windows.netsh`), not by the script.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import functools
import json
import ntpath
import re
import types
import typing
from typing import Any

from cosdoc_certs.errors import RemoteError, hide_passwords
from cosdoc_certs.thumbprints import thumbprint_of_der
from cosdoc_certs.windows.netsh import SslBindingFact as SslBindingFact  # part of the facts
from cosdoc_certs.windows.netsh import parse_sslcert

SCHEMA_VERSION = 2
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SNI_FLAG = 1
CENTRAL_STORE_FLAG = 2
"""sslFlags bit 2: the certificate comes from IIS's Central Certificate Store, not a hash."""


class GatherContractError(RemoteError):
    """The gather script returned a document that does not follow the contract."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"gather returned an unexpected document: {problem}",
            "the server's gather.ps1 and this cosdoc-certs differ; install matching versions",
        )


class GatherFailedError(RemoteError):
    """gather.ps1 stopped on the server and said why (its document's ``error``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"gather.ps1 failed on the server: {hide_passwords(reason)}",
            "fix the cause it names (or run gather.ps1 by hand on the server to see more), "
            "then gather again",
        )


@dataclasses.dataclass(frozen=True)
class IdentityFact:
    """An account as the server resolved it: SID, the server's own name for it, or why not."""

    sid: str | None
    name: str | None
    error: str | None

    def shown(self, fallback: str) -> str:
        """The name to show a person: the server's, else ``fallback`` (as configured)."""
        return self.name or fallback


@dataclasses.dataclass(frozen=True)
class ServiceFact:
    """A Windows service matching a catalog pattern (Win32_Service).

    ``account`` is ``StartName`` as the SCM stores it (``.\\user``, ``LocalSystem``,
    ``NT AUTHORITY\\NetworkService``…); ``identity`` is what it resolved to on the server.
    ``app_directory`` is nssm's ``AppDirectory`` from the service's Parameters key, if any.
    """

    name: str
    display_name: str
    state: str
    start_mode: str
    account: str
    path_name: str
    app_directory: str | None
    install_folder: str | None
    identity: IdentityFact


@dataclasses.dataclass(frozen=True)
class SiteFact:
    """An IIS site."""

    name: str
    id: int
    physical_path: str
    app_pool: str


@dataclasses.dataclass(frozen=True)
class ApplicationFact:
    """An IIS application; ``path`` "/" is the site's root application."""

    site: str
    path: str
    physical_path: str
    app_pool: str

    @property
    def name(self) -> str:
        """The application's name: the last segment of its path, or the site's name for "/"."""
        segment = self.path.rstrip("/").rsplit("/", 1)[-1]
        return segment or self.site


@dataclasses.dataclass(frozen=True)
class AppPoolFact:
    """An IIS application pool and its identity."""

    name: str
    state: str
    identity_type: str
    user_name: str
    identity: IdentityFact

    @property
    def account(self) -> str:
        """The account the pool's worker process runs as, by the server's own name for it."""
        configured = self.user_name if self.identity_type.casefold() == "specificuser" else ""
        return self.identity.shown(configured or f"{self.identity_type} ({self.name})")


@dataclasses.dataclass(frozen=True)
class BindingFact:
    """An HTTPS binding in the IIS configuration (``ip:port:host``)."""

    site: str
    binding_information: str
    ssl_flags: int
    certificate_hash: str
    certificate_store_name: str

    @property
    def ip(self) -> str:
        """The binding's IP address ("*" for all)."""
        return _split_binding(self.binding_information)[0]

    @property
    def port(self) -> int:
        """The binding's TCP port."""
        return int(_split_binding(self.binding_information)[1])

    @property
    def host(self) -> str:
        """The binding's host name ("" for none)."""
        return _split_binding(self.binding_information)[2]

    @property
    def sni(self) -> bool:
        """True when the binding requires Server Name Indication (sslFlags bit 1)."""
        return bool(self.ssl_flags & SNI_FLAG)

    @property
    def central_store(self) -> bool:
        """True when IIS reads the certificate from the Central Certificate Store (sslFlags 2).

        Such a binding has no ip:port or host:port entry in http.sys (only ``ccs=port``), and
        its certificate is the ``<host>.pfx`` file in the central store's share.
        """
        return bool(self.ssl_flags & CENTRAL_STORE_FLAG)

    def __str__(self) -> str:
        return f"https {self.binding_information} ({self.site})"


@dataclasses.dataclass(frozen=True)
class IisFacts:
    """Everything gathered from IIS (WebAdministration); ``ssl_bindings`` from netsh."""

    sites: tuple[SiteFact, ...]
    applications: tuple[ApplicationFact, ...]
    app_pools: tuple[AppPoolFact, ...]
    bindings: tuple[BindingFact, ...]
    ssl_bindings: tuple[SslBindingFact, ...] = dataclasses.field(
        default=(), metadata={"derived": True}
    )


@dataclasses.dataclass(frozen=True)
class IisPresence:
    """Whether IIS is installed (W3SVC or applicationHost.config) and its module is there."""

    installed: bool
    module: bool
    error: str | None


@dataclasses.dataclass(frozen=True)
class CommandOutput:
    """A native command's exit code and output, as the script captured them."""

    exit_code: int
    output: str


@dataclasses.dataclass(frozen=True)
class CertificateFact:
    """A certificate in ``Cert:\\LocalMachine\\My`` with where its private key lives."""

    thumbprint: str
    der: bytes
    has_private_key: bool
    not_after: dt.datetime
    key_storage: str | None
    key_provider: str | None
    key_folder: str | None
    key_file: str | None
    readers: tuple[IdentityFact, ...]
    key_error: str | None


@dataclasses.dataclass(frozen=True)
class ConfigFileFact:
    """A consumer's config file, looked for under a service or IIS folder.

    ``error`` is why an existing file could not be read (``<.NET exception type>: <message>``).
    """

    path: str
    exists: bool
    content: bytes | None
    error: str | None


@dataclasses.dataclass(frozen=True)
class GatherDocument:
    """The whole document ``gather`` returns (one per host per gather)."""

    schema_version: int
    computer_name: str
    gathered_at: dt.datetime
    ps_version: str
    services: tuple[ServiceFact, ...]
    iis_presence: IisPresence
    iis: IisFacts | None
    http_sys: CommandOutput
    certificates: tuple[CertificateFact, ...]
    config_files: tuple[ConfigFileFact, ...]

    @classmethod
    def from_json(cls, text: str) -> GatherDocument:
        """Parse and validate ``gather``'s JSON; :class:`GatherContractError` if it is off."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise GatherContractError(f"not JSON ({error})") from None
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: Any) -> GatherDocument:
        """Validate and parse ``gather``'s document already decoded from JSON.

        A document ``{"schemaVersion": 2, "error": "..."}`` (gather.ps1 failed as a whole)
        raises :class:`GatherFailedError` with the script's reason.
        """
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            raise GatherFailedError(data["error"])
        document: GatherDocument = _decode(cls, data, "$")
        if document.schema_version != SCHEMA_VERSION:
            raise GatherContractError(
                f"schema version {document.schema_version}, this version reads {SCHEMA_VERSION}"
            )
        for index, certificate in enumerate(document.certificates):
            if thumbprint_of_der(certificate.der) != certificate.thumbprint.upper():
                raise GatherContractError(f"$.certificates[{index}].thumbprint is not the DER's")
        if document.iis is not None:
            bindings = parse_sslcert(document.http_sys.output)
            document = dataclasses.replace(
                document, iis=dataclasses.replace(document.iis, ssl_bindings=bindings)
            )
        return document

    def to_json(self) -> str:
        """The compact JSON ``gather.ps1`` would emit for this document."""
        return json.dumps(_encode(self), separators=(",", ":"), ensure_ascii=False)


_HOSTED_FILES = {"dotnet.exe": (".dll",), "cmd.exe": (".cmd", ".bat")}


def install_folder(path_name: str, app_directory: str | None = None) -> str | None:
    """The folder a service's application runs from, as ``gather.ps1`` finds it.

    nssm's ``AppDirectory`` when there is one; for ``dotnet.exe`` the folder of the first
    ``.dll`` argument, for ``cmd.exe`` that of the first ``.cmd``/``.bat``; otherwise the
    folder of the executable in ``PathName`` (quoted or not, with arguments or not).
    """
    if app_directory and app_directory.strip():
        return app_directory.strip()
    text = path_name.strip()
    if not text:
        return None
    if text.startswith('"'):
        end = text.find('"', 1)
        executable = text[1:] if end < 0 else text[1:end]
        rest = "" if end < 0 else text[end + 1 :]
    else:
        match = re.match(r"^(.+?\.exe)(?:\s|$)", text, re.IGNORECASE)
        executable = match.group(1) if match else text.split(None, 1)[0]
        rest = text[len(executable) :]
    hosted = _HOSTED_FILES.get(ntpath.basename(executable).casefold(), ())
    for quoted, bare in re.findall(r'"([^"]*)"|(\S+)', rest) if hosted else ():
        candidate = str(quoted or bare)
        if candidate.casefold().endswith(hosted):
            return ntpath.dirname(candidate)
    return ntpath.dirname(executable)


def _format_date(value: dt.datetime) -> str:
    """A date as the document writes it (UTC, seconds)."""
    return value.astimezone(dt.timezone.utc).strftime(DATE_FORMAT)


def _split_binding(information: str) -> tuple[str, str, str]:
    match = re.fullmatch(r"(.*):(\d+):(.*)", information)
    if match is None:
        raise GatherContractError(f"binding information {information!r} is not ip:port:host")
    return match.group(1), match.group(2), match.group(3)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _decode(kind: Any, value: Any, where: str) -> Any:
    """Convert JSON ``value`` at ``where`` into ``kind`` (a type hint), or raise."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        (inner,) = (option for option in options if option is not type(None))
        return _decode(inner, value, where)
    if origin is tuple:
        (item,) = typing.get_args(kind)[:1]
        if not isinstance(value, list):
            raise GatherContractError(f"{where} must be an array, got {_json_type(value)}")
        return tuple(_decode(item, entry, f"{where}[{index}]") for index, entry in enumerate(value))
    if dataclasses.is_dataclass(kind):
        return _decode_object(kind, value, where)
    return _decode_scalar(kind, value, where)


def _decode_object(kind: Any, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise GatherContractError(f"{where} must be an object, got {_json_type(value)}")
    arguments = {}
    for name, key, hint in _fields_of(kind):
        if key not in value:
            raise GatherContractError(f"{where}.{key} is missing")
        arguments[name] = _decode(hint, value[key], f"{where}.{key}")
    return kind(**arguments)


@functools.cache
def _fields_of(kind: Any) -> tuple[tuple[str, str, Any], ...]:
    """Each field of the dataclass ``kind``: name, JSON key, type hint (resolved once)."""
    hints = typing.get_type_hints(kind)
    return tuple(
        (field.name, _camel(field.name), hints[field.name]) for field in _document_fields(kind)
    )


def _decode_scalar(kind: Any, value: Any, where: str) -> Any:
    if kind is bytes:
        if not isinstance(value, str):
            raise GatherContractError(f"{where} must be base64 text, got {_json_type(value)}")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise GatherContractError(f"{where} is not valid base64") from None
    if kind is dt.datetime:
        if not isinstance(value, str):
            raise GatherContractError(f"{where} must be a date, got {_json_type(value)}")
        try:
            return dt.datetime.strptime(value, DATE_FORMAT).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            raise GatherContractError(f"{where} is not a yyyy-MM-ddTHH:mm:ssZ date") from None
    if kind is int and isinstance(value, bool):
        raise GatherContractError(f"{where} must be a number, got a boolean")
    if not isinstance(value, kind):
        raise GatherContractError(f"{where} must be {kind.__name__}, got {_json_type(value)}")
    return value


def _document_fields(kind: Any) -> list[dataclasses.Field[Any]]:
    """The fields the JSON document carries (derived ones are computed after parsing)."""
    return [field for field in dataclasses.fields(kind) if not field.metadata.get("derived")]


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "text", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            _camel(field.name): _encode(getattr(value, field.name))
            for field in _document_fields(value)
        }
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return _format_date(value)
    return value
