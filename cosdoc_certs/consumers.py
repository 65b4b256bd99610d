"""Who uses which certificate in a CosDoc installation — the consumers, as data.

A *consumer* is something that must change when a certificate is replaced: a Windows service
with an ``appsettings.json`` (Digihelse, KPR), an IIS application with one (Authentication,
SkatteIntegrasjonApi), the IIS HTTPS bindings, the SvarUT nginx on Linux, or a step a person
does by hand (E-meldinger in DIPS Communicator and the NHN address register). Each config
consumer lists the JSON keys holding thumbprints and the :class:`~cosdoc_certs.certs.Role`
each wants. :data:`COSDOC_CATALOG` is the CosDoc certificate guide as data; a customer's
deviations (other names, paths, environment, extra or disabled consumers) come from a TOML
file read by :func:`load_deviations` (example: ``docs/deviations.example.toml``).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from cosdoc_certs.appsettings import AppSettings
from cosdoc_certs.certs import Role
from cosdoc_certs.certs.providers import KeyApi
from cosdoc_certs.errors import ConfigFileError, InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

log = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = "appsettings.json"
SVARUT_LAYOUTS = ("auto", "single", "samdrift")


class DeviationsError(InputError):
    """A customer deviations file cannot be used as written."""


@dataclasses.dataclass(frozen=True)
class ThumbprintKey:
    """A JSON key (a JSONPath such as ``$.CertSettings.SigningThumbprint``) and its role."""

    path: str
    role: Role

    def __str__(self) -> str:
        return f"{self.path} ({self.role})"


@dataclasses.dataclass(frozen=True)
class ServiceConsumer:
    """Windows services whose names match ``service_pattern`` (``*`` and ``?`` wildcards).

    Each matching service has its own ``config_file``, relative to its install folder (the
    folder of the executable in the service's ``PathName``). ``key_api`` says which key
    providers it can use (:class:`~cosdoc_certs.certs.providers.KeyApi`; ``capi`` for a .NET
    Framework service that uses ``X509Certificate2.PrivateKey``).
    """

    kind: ClassVar[str] = "service"
    name: str
    service_pattern: str
    keys: tuple[ThumbprintKey, ...]
    config_file: str = DEFAULT_CONFIG_FILE
    key_api: KeyApi = KeyApi.ANY

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles this consumer needs certificates for."""
        return _roles_of(self.keys)


@dataclasses.dataclass(frozen=True)
class IisConsumer:
    """An IIS application with a config file, in the site of one environment.

    ``application`` matches an application whose path ends in that name (``/Authentication``)
    or the root of a site whose name contains it; ``environment`` matches sites whose name
    contains it, case-insensitively («Drift» matches «CosDoc Drift»). An empty environment
    matches every site. ``config_file`` is relative to the application's physical path;
    ``key_api`` as for :class:`ServiceConsumer`.
    """

    kind: ClassVar[str] = "iis"
    name: str
    application: str
    keys: tuple[ThumbprintKey, ...]
    environment: str = "Drift"
    config_file: str = DEFAULT_CONFIG_FILE
    key_api: KeyApi = KeyApi.ANY

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles this consumer needs certificates for."""
        return _roles_of(self.keys)


@dataclasses.dataclass(frozen=True)
class HttpsBindingsConsumer:
    """The HTTPS bindings of IIS (role ssl); ``sites`` empty means every site."""

    kind: ClassVar[str] = "https-bindings"
    name: str = "IIS HTTPS bindings"
    sites: tuple[str, ...] = ()

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles this consumer needs certificates for."""
        return (Role.SSL,)


@dataclasses.dataclass(frozen=True)
class SvarutConsumer:
    """The nginx container of SvarUT on a Linux host (role ssl), driven over SSH.

    ``layout`` is ``single`` (``/usr/containers/svarut``), ``samdrift``
    (``/usr/containers/nginx``) or ``auto`` (detected); ``host`` is the Linux host, if known.
    """

    kind: ClassVar[str] = "svarut"
    name: str = "SvarUT"
    layout: str = "auto"
    host: str | None = None

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles this consumer needs certificates for."""
        return (Role.SSL,)


@dataclasses.dataclass(frozen=True)
class ManualStep:
    """A step the tool cannot do: it shows the instructions for a person to follow."""

    kind: ClassVar[str] = "manual"
    name: str
    instructions: str
    certificate_roles: tuple[Role, ...] = (Role.SIGNING, Role.ENCRYPTION)

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles this consumer needs certificates for."""
        return self.certificate_roles


Consumer = ServiceConsumer | IisConsumer | HttpsBindingsConsumer | SvarutConsumer | ManualStep
ConfigConsumer = ServiceConsumer | IisConsumer

_PAIR_KEYS = (
    ThumbprintKey("$.CertSettings.EncryptionThumbprint", Role.ENCRYPTION),
    ThumbprintKey("$.CertSettings.SigningThumbprint", Role.SIGNING),
)

E_MESSAGES_INSTRUCTIONS = """\
1. Upload the new enterprise certificates (public parts) to the NHN address register
   (`cosdoc-certs export-public` writes them; contact NHN with questions).
2. In DIPS Communicator, for the local partner: Partner properties -> Communication tab ->
   Certificate administrator -> Add certificates (from the files, with the issuer's
   password) -> Accept certificate.
3. Select the new signing certificate (Key Usage Non-Repudiation) and press «Velg
   sertifikat»; select the new authentication certificate (used for encryption) the same way.
   If none is selected, or the selected one is invalid, DIPS Communicator uses the oldest
   valid certificate at the next exchange.
4. Inspect the selected certificates: compare serial number, validity dates and «Utstedt
   til» with the issuer's information (`cosdoc-certs inspect` shows the same fields)."""

COSDOC_CATALOG: tuple[Consumer, ...] = (
    ServiceConsumer("Digihelse", "Digihelse*", _PAIR_KEYS),
    ServiceConsumer("KPR", "KPR*", _PAIR_KEYS),
    IisConsumer(
        "Authentication",
        "Authentication",
        (
            ThumbprintKey("$.ClientCertThumbprint", Role.ENCRYPTION),
            ThumbprintKey("$.SigningCertificateThumbprint", Role.SIGNING),
            ThumbprintKey("$.SSLCertificateThumbprint", Role.SSL),
        ),
    ),
    IisConsumer(
        "SkatteIntegrasjonApi",
        "SkatteIntegrasjonApi",
        (ThumbprintKey("$.MaskinportenConfig.SertifikatAvtrykk", Role.SIGNING),),
    ),
    HttpsBindingsConsumer(),
    SvarutConsumer(),
    ManualStep("E-meldinger", E_MESSAGES_INSTRUCTIONS),
)
"""The CosDoc certificate guide as data: every consumer, in the guide's order."""


def _roles_of(keys: Sequence[ThumbprintKey]) -> tuple[Role, ...]:
    return tuple(dict.fromkeys(key.role for key in keys))


def service_patterns(consumers: Sequence[Consumer]) -> list[str]:
    """The service-name patterns ``gather`` must look for."""
    return list(
        dict.fromkeys(c.service_pattern for c in consumers if isinstance(c, ServiceConsumer))
    )


def config_files(consumers: Sequence[Consumer]) -> list[str]:
    """The config file names (relative paths) ``gather`` must read."""
    return list(
        dict.fromkeys(
            c.config_file for c in consumers if isinstance(c, (ServiceConsumer, IisConsumer))
        )
    )


# --- customer deviations (TOML) -------------------------------------------------------------

_KINDS: dict[str, type[Any]] = {
    kind.kind: kind
    for kind in (ServiceConsumer, IisConsumer, HttpsBindingsConsumer, SvarutConsumer, ManualStep)
}
_CONTROL_KEYS = frozenset({"kind", "enabled"})


def load_deviations(
    path: str | Path, base: Sequence[Consumer] = COSDOC_CATALOG
) -> tuple[Consumer, ...]:
    """``base`` with the deviations of the TOML file at ``path`` applied; DeviationsError if bad."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DeviationsError(
            f"cannot read the deviations file {source}: {error}",
            "check the deviations file's path (`consumers`)",
        ) from None
    return apply_deviations(text, base, source=str(source))


def apply_deviations(
    text: str, base: Sequence[Consumer] = COSDOC_CATALOG, *, source: str = "deviations.toml"
) -> tuple[Consumer, ...]:
    """``base`` with the deviations in TOML ``text`` applied (see docs/deviations.example.toml)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise DeviationsError(
            f"{source} is not valid TOML: {error}", "fix the line shown; TOML strings need quotes"
        ) from None
    unknown = sorted(set(document) - {"consumers"})
    if unknown:
        raise DeviationsError(
            f"{source}: unknown top-level key {unknown[0]!r}",
            "put each consumer in a [consumers.<name>] table",
        )
    tables = document.get("consumers", {})
    if not isinstance(tables, dict):
        raise DeviationsError(f"{source}: 'consumers' must be a table", "use [consumers.<name>]")
    consumers = {consumer.name.lower(): consumer for consumer in base}
    for name, table in tables.items():
        where = f"{source}: [consumers.{_quoted(name)}]"
        if not isinstance(table, dict):
            raise DeviationsError(f"{where} must be a table", f"write [consumers.{_quoted(name)}]")
        key = name.lower()
        updated = _apply_table(name, table, consumers.get(key), where)
        if updated is None:
            consumers.pop(key, None)
            log.info("deviations: consumer %s disabled", name)
        else:
            consumers[key] = updated
    return tuple(consumers.values())


def _apply_table(
    name: str, table: Mapping[str, Any], existing: Consumer | None, where: str
) -> Consumer | None:
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise DeviationsError(f"{where}: enabled must be true or false", "write enabled = false")
    kind_name = table.get("kind", existing.kind if existing else None)
    if kind_name is None:
        raise DeviationsError(
            f"{where}: {name!r} is not in the catalog, so it needs a kind",
            f"add kind = one of {', '.join(_KINDS)}",
        )
    kind = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise DeviationsError(
            f"{where}: unknown kind {kind_name!r}", f"use one of {', '.join(_KINDS)}"
        )
    if existing is not None and kind is not type(existing):
        raise DeviationsError(
            f"{where}: {existing.name} is a {existing.kind} consumer, not {kind_name}",
            "leave out kind, or give the new consumer another name",
        )
    if not enabled:
        return None
    changes = _field_values(kind, table, where)
    if existing is not None:
        return dataclasses.replace(existing, **changes)
    return _new_consumer(kind, name, changes, where)


def _field_values(kind: type[Any], table: Mapping[str, Any], where: str) -> dict[str, Any]:
    fields = {field.name for field in dataclasses.fields(kind)} - {"name"}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _CONTROL_KEYS:
            continue
        if key not in fields:
            raise DeviationsError(
                f"{where}: unknown key {key!r} for a {kind.kind} consumer",
                f"known keys: {', '.join(sorted(fields | _CONTROL_KEYS))}",
            )
        convert: Callable[[Any, str], Any] = _CONVERTERS.get(key, _text)
        values[key] = convert(value, f"{where} {key}")
    return values


def _new_consumer(kind: type[Any], name: str, values: dict[str, Any], where: str) -> Consumer:
    required = [
        field.name
        for field in dataclasses.fields(kind)
        if field.name != "name"
        and field.default is dataclasses.MISSING
        and field.name not in values
    ]
    if required:
        raise DeviationsError(
            f"{where}: a new {kind.kind} consumer needs {', '.join(required)}",
            "see docs/deviations.example.toml",
        )
    factory: Callable[..., Consumer] = kind
    return factory(name=name, **values)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DeviationsError(f"{where} must be a non-empty string", 'write key = "value"')
    return value


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise DeviationsError(f"{where} must be a list of strings", 'write key = ["a", "b"]')
    return tuple(_text(item, f"{where}[{index}]") for index, item in enumerate(value))


def _environment(value: Any, where: str) -> str:
    """An environment; "" matches every site."""
    return "" if value == "" else _text(value, where)


def _role(value: Any, where: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise DeviationsError(
            f"{where} is {value!r}, not a role",
            f"use one of {', '.join(role.value for role in Role)}",
        ) from None


def _roles(value: Any, where: str) -> tuple[Role, ...]:
    return tuple(
        _role(item, f"{where}[{index}]") for index, item in enumerate(_texts(value, where))
    )


def _layout(value: Any, where: str) -> str:
    if value not in SVARUT_LAYOUTS:
        raise DeviationsError(f"{where} is {value!r}", f"use one of {', '.join(SVARUT_LAYOUTS)}")
    return str(value)


def _key_api(value: Any, where: str) -> KeyApi:
    try:
        return KeyApi(value)
    except ValueError:
        raise DeviationsError(
            f"{where} is {value!r}",
            "use any (GetRSAPrivateKey), capi (.NET Framework PrivateKey) or cng (RSACng)",
        ) from None


def _keys(value: Any, where: str) -> tuple[ThumbprintKey, ...]:
    if not isinstance(value, list) or not value:
        raise DeviationsError(
            f"{where} must be a non-empty list of {{ path = ..., role = ... }}",
            'write keys = [{ path = "$.CertSettings.SigningThumbprint", role = "signing" }]',
        )
    return tuple(_key(item, f"{where}[{index}]") for index, item in enumerate(value))


def _key(item: Any, where: str) -> ThumbprintKey:
    if not isinstance(item, dict) or set(item) != {"path", "role"}:
        raise DeviationsError(
            f"{where} must have exactly path and role", '{ path = "$.X.Thumbprint", role = "ssl" }'
        )
    path = _text(item["path"], f"{where}.path")
    try:
        AppSettings.parse(b"{}").find(path)
    except ConfigFileError as error:
        raise DeviationsError(f"{where}.path: {error.problem}", error.hint) from None
    return ThumbprintKey(path, _role(item["role"], f"{where}.role"))


_CONVERTERS: dict[str, Callable[[Any, str], Any]] = {
    "keys": _keys,
    "sites": _texts,
    "certificate_roles": _roles,
    "layout": _layout,
    "host": _text,
    "environment": _environment,
    "key_api": _key_api,
}


def _quoted(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else f'"{name}"'
