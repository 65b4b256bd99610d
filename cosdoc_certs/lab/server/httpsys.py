"""http.sys SSL certificate entries: the settings beside the certificate, and what netsh does.

Each HTTPS binding of IIS is served through one http.sys entry: ``hostnameport=host:port``
for an SNI binding, ``ipport=ip:port`` otherwise — ``*`` (all unassigned) is written
``0.0.0.0:port``, an IPv6 address in brackets (``[::]:443``, ``[fe80::1]:443``), so
``0.0.0.0:443`` and ``[::]:443`` are two entries. Central Certificate Store bindings have
none of their own (only ``ccs=port``).

Beside the certificate hash, an entry keeps the client-certificate and protocol settings of
``HTTP_SERVICE_CONFIG_SSL_PARAM``, stored in the registry under
``HKLM\\SYSTEM\\CurrentControlSet\\Services\\HTTP\\Parameters\\SslBindingInfo\\<ip:port>``
(``SslSniBindingInfo\\<host:port>`` for SNI) as ``DefaultSslCertCheckMode``,
``DefaultSslRevocationFreshnessTime``, ``DefaultSslRevocationUrlRetrievalTimeout``,
``DefaultSslCtlIdentifier``, ``DefaultSslCtlStoreName`` and ``DefaultFlags``.

``netsh http update sslcert`` replaces the whole record: every option not given on its
command line takes its default (win-acme #1333, #2153, #1768), which is how a certificate
renewal silently re-enables HTTP/2 or legacy TLS, or drops client-certificate negotiation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cosdoc_certs.lab.server.errors import SimulatedWindowsError

SettingValue = int | str
IIS_APP_ID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
DEFAULT_SETTINGS: Mapping[str, SettingValue] = {
    "AppId": IIS_APP_ID,
    "DefaultSslCertCheckMode": 0,
    "DefaultSslRevocationFreshnessTime": 0,
    "DefaultSslRevocationUrlRetrievalTimeout": 0,
    "DefaultSslCtlIdentifier": "",
    "DefaultSslCtlStoreName": "",
    "DefaultFlags": 0,
}
"""The registry values of an entry, as ``netsh http add sslcert`` with no options leaves them."""

FLAG_OPTIONS: Mapping[str, int] = {
    "dsmapperusage": 0x1,
    "clientcertnegotiation": 0x2,
    "disablehttp2": 0x10,
    "disablequic": 0x20,
    "disabletls13": 0x40,
    "disableocspstapling": 0x80,
    "disablelegacytls": 0x400,
    "disabletls12": 0x1000,
}
"""netsh option (``=enable`` sets it) → ``DefaultFlags`` bit (HTTP_SERVICE_CONFIG_SSL_FLAG_*)."""

CHECK_MODE_OPTIONS: Mapping[str, tuple[int, str]] = {
    "verifyclientcertrevocation": (0x1, "disable"),
    "verifyrevocationwithcachedclientcertonly": (0x2, "enable"),
    "usagecheck": (0x10000, "disable"),
}
"""netsh option → (``DefaultSslCertCheckMode`` bit, the value that sets it)."""

FRESHNESS_TIME_ENABLED = 0x4
"""``DefaultSslCertCheckMode`` bit netsh sets when ``revocationfreshnesstime`` is not 0."""

NUMBER_OPTIONS: Mapping[str, str] = {
    "revocationfreshnesstime": "DefaultSslRevocationFreshnessTime",
    "urlretrievaltimeout": "DefaultSslRevocationUrlRetrievalTimeout",
}
TEXT_OPTIONS: Mapping[str, str] = {
    "sslctlidentifier": "DefaultSslCtlIdentifier",
    "sslctlstorename": "DefaultSslCtlStoreName",
}
_IPV4_PORT = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$")
_IPV6_PORT = re.compile(r"^\[([0-9A-Fa-f:.%]+)\]:(\d{1,5})$")
_HOST_PORT = re.compile(r"^([^:\s\[\]]+):(\d{1,5})$")
_INCORRECT = "The parameter is incorrect."


def entry_key(ip: str, port: int, host: str, *, sni: bool) -> tuple[str, str]:
    """The http.sys entry IIS uses for a binding: ``("hostnameport", "host:port")`` or
    ``("ipport", "0.0.0.0:port" / "[v6]:port" / "v4:port")``."""
    if sni:
        return ("hostnameport", f"{host.casefold()}:{port}")
    if ip in ("*", "", "0.0.0.0"):  # noqa: S104 -- binding notation
        return ("ipport", f"0.0.0.0:{port}")
    bare = ip.strip("[]").casefold()
    return ("ipport", f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}")


def parse_endpoint(argument: str) -> tuple[str, str]:
    """``ipport=...`` / ``hostnameport=...`` as netsh reads it; netsh's error when malformed."""
    name, _, value = argument.partition("=")
    name = name.casefold()
    if name == "ipport":
        v4, v6 = _IPV4_PORT.match(value), _IPV6_PORT.match(value)
        if v4 is not None:
            return ("ipport", f"{v4.group(1)}:{int(v4.group(2))}")
        if v6 is not None:
            return ("ipport", f"[{v6.group(1).casefold()}]:{int(v6.group(2))}")
    elif name == "hostnameport":
        match = _HOST_PORT.match(value)
        if match is not None:
            return ("hostnameport", f"{match.group(1).casefold()}:{int(match.group(2))}")
    raise netsh_error(_INCORRECT)


def settings_from_options(app_id: str, options: Mapping[str, str]) -> dict[str, SettingValue]:
    """The registry values netsh writes for an entry given ``options`` (others: default)."""
    settings = dict(DEFAULT_SETTINGS, AppId=app_id.casefold())
    flags = check_mode = 0
    for name, value in options.items():
        wanted = value.casefold()
        if name in FLAG_OPTIONS and wanted in ("enable", "disable"):
            flags |= FLAG_OPTIONS[name] if wanted == "enable" else 0
        elif name in CHECK_MODE_OPTIONS and wanted in ("enable", "disable"):
            bit, setting = CHECK_MODE_OPTIONS[name]
            check_mode |= bit if wanted == setting else 0
        elif name in NUMBER_OPTIONS and value.isdigit():
            settings[NUMBER_OPTIONS[name]] = int(value)
            if name == "revocationfreshnesstime" and int(value):
                check_mode |= FRESHNESS_TIME_ENABLED
        elif name in TEXT_OPTIONS:
            settings[TEXT_OPTIONS[name]] = value
        else:
            raise netsh_error(_INCORRECT)
    settings["DefaultFlags"] = flags
    settings["DefaultSslCertCheckMode"] = check_mode
    return settings


def split_arguments(arguments: Sequence[str]) -> dict[str, str]:
    """``name=value`` command-line arguments of netsh, by lower-case name."""
    found: dict[str, str] = {}
    for argument in arguments:
        name, equals, value = argument.partition("=")
        if not equals:
            raise netsh_error(_INCORRECT)
        found[name.casefold()] = value
    return found


def netsh_error(message: str) -> SimulatedWindowsError:
    """A failed netsh command: its message (netsh exits with code 1)."""
    return SimulatedWindowsError(message, error_id="NetshSslCertFailed", hresult=1)
