"""http.sys certificate bindings from ``netsh http show sslcert`` output, in any display language.

``gather.ps1`` runs ``netsh http show sslcert`` and returns what it printed; this module turns
that text into :class:`SslBindingFact` entries. netsh translates its labels (``IP:port``,
``Certificate Hash``, …) into the server's display language, so nothing here reads a label.
The parse goes by structure, which netsh keeps in every language:

- an entry is a block of indented ``<label> : <value>`` lines, blocks separated by blank lines;
- its first line is the endpoint: ``<IPv4>:<port>``, ``[<IPv6>]:<port>`` (an ``ipport``
  entry) or ``<host name>:<port>`` (a ``hostnameport`` entry, SNI); a bare port is a Central
  Certificate Store entry, which has no certificate of its own and is skipped;
- the certificate hash is the one value of 40 hex digits; the application ID is the one
  ``{GUID}``; the certificate store name is the line after the application ID (``(null)``
  when the entry names none).

A block without a hash (the title, a ``-----`` rule, a message) is not an entry. The same
text in English and in Norwegian gives the same entries (``tests/test_netsh.py``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

_PAIR = re.compile(r"^\s+(\S.*?)\s+:\s*(.*?)\s*$")
_HASH = re.compile(r"^[0-9A-Fa-f]{40}$")
_GUID = re.compile(r"^\{[0-9A-Fa-f-]{36}\}$")
_ENDPOINT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<where>.+)):(?P<port>\d+)$")
_NULL = "(null)"


@dataclasses.dataclass(frozen=True)
class SslBindingFact:
    """A certificate binding in http.sys: ``ip:port`` (empty host) or ``host:port`` (SNI)."""

    ip: str
    port: int
    host: str
    thumbprint: str
    store: str


def parse_sslcert(output: str) -> tuple[SslBindingFact, ...]:
    """The certificate bindings in ``netsh http show sslcert`` ``output`` (any language)."""
    entries = []
    for block in _blocks(output):
        entry = _entry(block)
        if entry is not None:
            entries.append(entry)
    return tuple(entries)


def _blocks(output: str) -> list[list[str]]:
    """The values of each run of ``label : value`` lines, in order."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in output.splitlines():
        match = _PAIR.match(line)
        if match is None:
            if current:
                blocks.append(current)
            current = []
            continue
        current.append(match.group(2))
    if current:
        blocks.append(current)
    return blocks


def _entry(values: list[str]) -> SslBindingFact | None:
    thumbprint = next((value for value in values if _HASH.match(value)), None)
    endpoint = _ENDPOINT.match(values[0])
    if thumbprint is None or endpoint is None:
        return None
    app_id = next((index for index, value in enumerate(values) if _GUID.match(value)), None)
    store = values[app_id + 1] if app_id is not None and app_id + 1 < len(values) else ""
    port = int(endpoint.group("port"))
    if endpoint.group("v6") is not None:
        ip, host = endpoint.group("v6"), ""
    elif _is_ip(endpoint.group("where")):
        ip, host = endpoint.group("where"), ""
    else:
        ip, host = "", endpoint.group("where")
    return SslBindingFact(ip, port, host, thumbprint.upper(), "" if store == _NULL else store)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
