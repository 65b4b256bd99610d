"""The inventory: a TOML file of customers and their hosts, for runs over a whole fleet.

Each ``[customers.<name>]`` table describes one CosDoc installation: its Windows application
server (WinRM), optionally its SvarUT Linux host (SSH) and a file of its deviations from the
CosDoc catalog. Passwords are never written in the file: a Windows entry names the
environment variable that holds its password (``password_env``). Relative paths are relative
to the inventory file. Example: ``docs/inventory.example.toml``.

:func:`load_inventory` validates the whole file and raises one :class:`InventoryError` with
every mistake found (``mistakes``), each naming the customer, the key and what to write
instead.
"""

from __future__ import annotations

import functools
import getpass
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cosdoc_certs.consumers import COSDOC_CATALOG, Consumer, load_deviations
from cosdoc_certs.errors import InputError
from cosdoc_certs.svarut.api import SvarutTarget
from cosdoc_certs.svarut.connection import SshOptions
from cosdoc_certs.windows.auth_methods import AUTH_METHODS, PASSWORDLESS_AUTHS, USER_AUTHS
from cosdoc_certs.windows.connection import ConnectionOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "Customer",
    "Inventory",
    "InventoryError",
    "SvarutEntry",
    "WindowsEntry",
    "load_inventory",
    "parse_inventory",
]

_SECRET_KEYS = frozenset({"password", "pfx_password", "secret", "passphrase"})
_LAYOUTS = ("single", "samdrift")


class InventoryError(InputError):
    """An inventory file cannot be used as written; ``mistakes`` lists each mistake found."""

    def __init__(
        self, problem: str, hint: str = "", *, mistakes: tuple[InventoryError, ...] = ()
    ) -> None:
        super().__init__(problem, hint)
        self.mistakes = mistakes or (self,)

    def lines(self) -> list[str]:
        """One line per mistake."""
        return [str(mistake) for mistake in self.mistakes]


_T = TypeVar("_T")


def _collect(mistakes: list[InventoryError], check: Callable[[], _T]) -> _T | None:
    """Run ``check``; a mistake it finds is noted in ``mistakes`` (and None returned)."""
    try:
        return check()
    except InventoryError as error:
        mistakes.extend(error.mistakes)
        return None


def _raise_if(mistakes: list[InventoryError], where: str) -> None:
    """Raise the mistakes found as one error (itself, when there is only one)."""
    if len(mistakes) == 1:
        raise mistakes[0]
    if mistakes:
        raise InventoryError(
            f"{where} has {len(mistakes)} mistakes: "
            + "; ".join(f"({number}) {m}" for number, m in enumerate(mistakes, 1)),
            mistakes=tuple(mistakes),
        )


@dataclass(frozen=True)
class WindowsEntry:
    """How to reach a customer's Windows application server (no password: its env var name)."""

    host: str
    port: int | None = None
    user: str | None = None
    auth: str = "negotiate"
    password_env: str | None = None
    ca_bundle: str | None = None
    http: bool = False
    insecure_http: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    delegate: bool = False

    @property
    def needs_password(self) -> bool:
        """True when connecting needs a password (a user and a password-based auth)."""
        return self.user is not None and self.auth not in PASSWORDLESS_AUTHS

    def options(self, password: str | None = None) -> ConnectionOptions:
        """Connection options; the password is ``password``, else read from ``password_env``."""
        if password is None and self.password_env:
            password = os.environ.get(self.password_env)
            if password is None:
                raise InventoryError(
                    f"environment variable {self.password_env} (the WinRM password for "
                    f"{self.host}) is not set",
                    f"export {self.password_env}=... before the run",
                )
        return ConnectionOptions(
            server=self.host,
            port=self.port,
            username=self.user,
            password=password,
            auth=self.auth,
            https=not self.http,
            ca_bundle=self.ca_bundle,
            insecure_http=self.insecure_http,
            client_certificate=self.client_cert,
            client_key=self.client_key,
            delegate=self.delegate,
        )


@dataclass(frozen=True)
class SvarutEntry:
    """How to reach a customer's SvarUT Linux host and where its installation is."""

    host: str
    port: int = 22
    user: str | None = None
    known_hosts: str | None = None
    host_key: str | None = None
    identities: tuple[str, ...] = ()
    jump: str | None = None
    layout: str | None = None
    root: str | None = None
    tls_host: str | None = None
    tls_port: int = 443
    server_name: str | None = None

    def target(self) -> SvarutTarget:
        """The :class:`~cosdoc_certs.svarut.SvarutTarget` for this entry."""
        ssh = SshOptions(
            host=self.host,
            port=self.port,
            username=self.user or getpass.getuser(),
            known_hosts=self.known_hosts,
            pinned_host_key=self.host_key,
            client_keys=self.identities or None,
            jump_host=self.jump,
        )
        return SvarutTarget(
            ssh,
            layout=self.layout,
            root=self.root,
            tls_host=self.tls_host,
            tls_port=self.tls_port,
            server_name=self.server_name,
        )


@dataclass(frozen=True)
class Customer:
    """One customer's installation: Windows server, SvarUT host, deviations file.

    ``tls_endpoints`` maps an HTTPS binding (``"*:443"``, ``"10.0.0.5:443"``) to the
    ``"host:port"`` its TLS check connects to, where NAT or port mapping puts it elsewhere.
    """

    name: str
    windows: WindowsEntry | None = None
    svarut: SvarutEntry | None = None
    consumers_file: Path | None = None
    tls_endpoints: Mapping[str, str] = field(default_factory=dict)

    def consumers(self) -> tuple[Consumer, ...]:
        """The CosDoc catalog with this customer's deviations applied."""
        return load_deviations(self.consumers_file) if self.consumers_file else COSDOC_CATALOG


@dataclass(frozen=True)
class Inventory:
    """Every customer of an inventory file, in the file's order."""

    path: Path
    customers: tuple[Customer, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The customers' names."""
        return tuple(customer.name for customer in self.customers)

    def customer(self, name: str) -> Customer:
        """The customer called ``name`` (case-insensitive), or an :class:`InventoryError`."""
        for customer in self.customers:
            if customer.name.lower() == name.lower():
                return customer
        known = ", ".join(self.names) or "none"
        raise InventoryError(f"no customer {name!r} in {self.path}", f"use one of: {known}")

    def __repr__(self) -> str:
        return f"<Inventory {self.path}: {len(self.customers)} customer(s)>"


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read and validate the inventory file at ``path``."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InventoryError(
            f"cannot read the inventory {source}: {error}", "check the inventory's path"
        ) from None
    return parse_inventory(text, source)


def parse_inventory(text: str, source: Path) -> Inventory:
    """Validate the inventory TOML ``text``; relative paths are taken from ``source``'s folder."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InventoryError(
            f"{source} is not valid TOML: {error}", "fix the line shown; TOML strings need quotes"
        ) from None
    _only_keys(document, {"customers"}, str(source), "put each customer in [customers.<name>]")
    tables = document.get("customers")
    if not isinstance(tables, dict) or not tables:
        raise InventoryError(
            f"{source} names no customer", "add a [customers.<name>] table per customer"
        )
    folder = source.parent
    mistakes: list[InventoryError] = []
    customers = [
        _collect(mistakes, functools.partial(_customer, name, table, _where(source, name, folder)))
        for name, table in tables.items()
    ]
    _raise_if(mistakes, str(source))
    return Inventory(source, tuple(customer for customer in customers if customer is not None))


def _where(source: Path, name: str, folder: Path) -> _Where:
    return _Where(f"{source}: [customers.{name}]", folder)


@dataclass(frozen=True)
class _Where:
    """Where a value is in the file (for messages) and the folder relative paths start from."""

    text: str
    folder: Path

    def inside(self, table: str) -> _Where:
        return _Where(f"{self.text.rstrip(']')}.{table}]", self.folder)


def _customer(name: str, table: Any, where: _Where) -> Customer:
    _require_table(table, where)
    known = {"windows", "svarut", "consumers", "tls_endpoints"}
    mistakes: list[InventoryError] = []
    _collect(mistakes, lambda: _only_keys(table, known, where.text, "see the example inventory"))
    if "windows" not in table and "svarut" not in table:
        mistakes.append(
            InventoryError(
                f"{where.text} has neither a windows nor a svarut host",
                f"add [customers.{name}.windows] with host = ...",
            )
        )
    windows = svarut = consumers = None
    if "windows" in table:
        windows = _collect(mistakes, lambda: _windows(table["windows"], where.inside("windows")))
    if "svarut" in table:
        svarut = _collect(mistakes, lambda: _svarut(table["svarut"], where.inside("svarut")))
    if "consumers" in table:
        consumers = _collect(mistakes, lambda: _path(table["consumers"], where, "consumers"))
    endpoints = _collect(mistakes, lambda: _endpoints(table.get("tls_endpoints", {}), where))
    _raise_if(mistakes, where.text)
    assert endpoints is not None
    customer = Customer(name, windows, svarut, Path(consumers) if consumers else None, endpoints)
    if customer.consumers_file is not None:
        customer.consumers()  # a bad deviations file fails now, naming that file
    return customer


def _endpoints(table: Any, where: _Where) -> dict[str, str]:
    """``tls_endpoints``: each ``"IP:PORT"`` binding (``*`` for all) → ``"HOST:PORT"``."""
    example = 'tls_endpoints = { "*:443" = "gateway.example.no:8443" }'
    if not isinstance(table, dict):
        raise InventoryError(f"{where.text}: tls_endpoints must be a table", example)
    for binding, address in table.items():
        if not _is_address(binding):
            raise InventoryError(
                f"{where.text}: tls_endpoints key {binding!r} is not IP:PORT",
                f'name an HTTPS binding as "*:443" or "10.0.0.5:443"; {example}',
            )
        if not isinstance(address, str) or not _is_address(address):
            raise InventoryError(
                f"{where.text}: tls_endpoints[{binding!r}] = {address!r} is not HOST:PORT",
                f"write where that binding's TLS handshake connects; {example}",
            )
    return dict(table)


def _is_address(text: str) -> bool:
    """True for ``host:port`` with a non-empty host and a port number."""
    host, _, port = text.rpartition(":")
    return bool(host.strip()) and port.isdigit() and 1 <= int(port) <= 65535


def _windows(table: Any, where: _Where) -> WindowsEntry:
    mistakes: list[InventoryError] = []
    values = _collect(mistakes, lambda: _fields(table, where, _WINDOWS_FIELDS))
    auth = table.get("auth", "negotiate") if isinstance(table, dict) else "negotiate"
    if auth not in AUTH_METHODS:
        mistakes.append(
            InventoryError(
                f"{where.text}: unknown auth {auth!r}", f"use one of {', '.join(AUTH_METHODS)}"
            )
        )
    _raise_if(mistakes, where.text)
    assert values is not None
    entry = WindowsEntry(**values)
    if entry.auth in USER_AUTHS and entry.user is None:
        raise InventoryError(f"{where.text}: auth {entry.auth} needs a user", 'add user = "..."')
    if entry.needs_password and not entry.password_env:
        raise InventoryError(
            f"{where.text}: user {entry.user} needs a password and no password_env is given",
            'add password_env = "VAR" and export VAR=... before the run (never the password)',
        )
    try:
        ConnectionOptions(
            server=entry.host,
            username=entry.user,
            auth=entry.auth,
            https=not entry.http,
            insecure_http=entry.insecure_http,
            client_certificate=entry.client_cert,
            client_key=entry.client_key,
            delegate=entry.delegate,
        )
    except InputError as error:
        raise InventoryError(f"{where.text}: {error.problem}", error.hint) from None
    return entry


def _svarut(table: Any, where: _Where) -> SvarutEntry:
    values = _fields(table, where, _SVARUT_FIELDS)
    if "identities" in values:
        values["identities"] = tuple(values["identities"])
    return SvarutEntry(**values)


def _fields(table: Any, where: _Where, kinds: Mapping[str, _Check]) -> dict[str, Any]:
    _require_table(table, where)
    mistakes = [
        InventoryError(
            f"{where.text}: {secret!r} — passwords are never written in the inventory",
            'remove it; write password_env = "VAR" and export VAR=... before the run',
        )
        for secret in sorted(_SECRET_KEYS & set(table))
    ]
    known = set(kinds) | _SECRET_KEYS
    hint = f"known keys: {', '.join(sorted(kinds))}"
    _collect(mistakes, lambda: _only_keys(table, known, where.text, hint))
    if "host" not in table:
        mistakes.append(InventoryError(f"{where.text} has no host", 'add host = "name or address"'))
    values = {
        key: _collect(mistakes, functools.partial(kinds[key], value, where, key))
        for key, value in table.items()
        if key in kinds
    }
    _raise_if(mistakes, where.text)
    return values


def _text(value: Any, where: _Where, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InventoryError(f"{where.text}: {key} must be a non-empty string", f'{key} = "..."')
    return value


def _port(value: Any, where: _Where, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InventoryError(f"{where.text}: {key} must be a port number", f"{key} = 5986")
    return value


def _flag(value: Any, where: _Where, key: str) -> bool:
    if not isinstance(value, bool):
        raise InventoryError(f"{where.text}: {key} must be true or false", f"{key} = true")
    return value


def _path(value: Any, where: _Where, key: str) -> str:
    text = os.path.expanduser(_text(value, where, key))
    return str(where.folder / text) if not os.path.isabs(text) else text


def _paths(value: Any, where: _Where, key: str) -> list[str]:
    if not isinstance(value, list):
        raise InventoryError(
            f"{where.text}: {key} must be a list", f'{key} = ["~/.ssh/id_ed25519"]'
        )
    return [_path(item, where, key) for item in value]


def _layout(value: Any, where: _Where, key: str) -> str:
    if value not in _LAYOUTS:
        raise InventoryError(
            f"{where.text}: {key} must be one of {', '.join(_LAYOUTS)}",
            "leave it out to detect the layout",
        )
    return str(value)


_Check = Callable[[Any, _Where, str], Any]
_WINDOWS_FIELDS: dict[str, _Check] = {
    "host": _text,
    "port": _port,
    "user": _text,
    "auth": _text,
    "password_env": _text,
    "ca_bundle": _path,
    "http": _flag,
    "insecure_http": _flag,
    "client_cert": _path,
    "client_key": _path,
    "delegate": _flag,
}
_SVARUT_FIELDS: dict[str, _Check] = {
    "host": _text,
    "port": _port,
    "user": _text,
    "known_hosts": _path,
    "host_key": _text,
    "identities": _paths,
    "jump": _text,
    "layout": _layout,
    "root": _text,
    "tls_host": _text,
    "tls_port": _port,
    "server_name": _text,
}


def _require_table(value: Any, where: _Where) -> None:
    if not isinstance(value, dict):
        raise InventoryError(f"{where.text} must be a table", "write it as a [table]")


def _only_keys(table: Mapping[str, Any], known: set[str], where: str, hint: str) -> None:
    unknown = sorted(set(table) - known)
    mistakes = [InventoryError(f"{where}: unknown key {key!r}", hint) for key in unknown]
    _raise_if(mistakes, where)
