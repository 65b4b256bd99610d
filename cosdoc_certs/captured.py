"""Captured facts: what ``gather`` returned from a server, scrubbed, in a file to send home.

:func:`capture` turns a server's facts into a JSON-ready document and :func:`save_facts`
writes it (``status --save-facts FILE``, also on ``plan`` and ``apply``); :func:`load_facts`
reads one back (``lab --facts FILE`` replays it in the lab). The file::

    {"format": "cosdoc-certs facts", "schemaVersion": 1, "toolVersion": "0.1.0",
     "capturedAt": "2026-12-02T10:00:00Z", "anonymized": false,
     "windows": <the gather document, scrubbed (see cosdoc_certs.windows.gather)>}

Scrubbing, so that no password or connection string leaves the server: in each config file
every string value is replaced by ``x`` characters of the same byte length — except the values
of the keys the tool reads (the consumer catalog's thumbprint keys) — and every comment's text
likewise; key names, numbers, ``true``/``false``/``null``, white space, line endings and the
BOM stay, so the file keeps its exact byte layout and structure. A file that does not parse
has every byte but line breaks replaced. Certificates are public (DER kept: thumbprints must
stay true). Host names and accounts are kept unless ``anonymize``: then the computer name,
every domain account and every binding host name are replaced consistently
(``SERVER``, ``DOMAIN\\account-1``, ``host-1.example``); the certificates' own subject names
cannot be changed without changing their thumbprints and stay.

Reading checks the format and the schema version (a file of another version: an error naming
both), and a truncated or edited file gives an error naming the JSON path where it broke.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cosdoc_certs.appsettings import AppSettings
from cosdoc_certs.consumers import (
    COSDOC_CATALOG,
    Consumer,
    IisConsumer,
    ServiceConsumer,
)
from cosdoc_certs.errors import ConfigFileError, InputError
from cosdoc_certs.facts import WindowsFacts
from cosdoc_certs.windows.gather import (
    ConfigFileFact,
    GatherContractError,
    GatherDocument,
    IdentityFact,
    IisFacts,
)

__all__ = [
    "FACTS_FORMAT",
    "FACTS_SCHEMA_VERSION",
    "CapturedFacts",
    "capture",
    "load_facts",
    "save_facts",
]

FACTS_FORMAT = "cosdoc-certs facts"
FACTS_SCHEMA_VERSION = 1
_FILLER = ord("x")
_WELL_KNOWN_DOMAINS = frozenset(
    {"nt authority", "nt-myndighet", "builtin", "iis apppool", "nt service", "."}
)


@dataclasses.dataclass(frozen=True)
class CapturedFacts:
    """A facts file read back: the server's gather document and where it came from."""

    document: GatherDocument
    tool_version: str
    captured_at: str
    anonymized: bool

    @property
    def facts(self) -> WindowsFacts:
        """The document as the facts the planner and the doctor read."""
        return WindowsFacts.from_document(self.document)


def capture(
    facts: WindowsFacts,
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
    *,
    anonymize: bool = False,
) -> dict[str, Any]:
    """The facts file's document for ``facts`` (scrubbed; anonymized on request)."""
    from cosdoc_certs import __version__

    kept = _kept_keys(consumers)
    document = dataclasses.replace(
        facts.document,
        config_files=tuple(_scrubbed(fact, kept) for fact in facts.document.config_files),
    )
    if anonymize:
        document = _Anonymizer().document(document)
    return {
        "format": FACTS_FORMAT,
        "schemaVersion": FACTS_SCHEMA_VERSION,
        "toolVersion": __version__,
        "capturedAt": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "anonymized": anonymize,
        "windows": json.loads(document.to_json()),
    }


def save_facts(
    path: Path,
    facts: WindowsFacts,
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
    *,
    anonymize: bool = False,
) -> Path:
    """Write the facts file for ``facts`` to ``path``; returns ``path``."""
    document = capture(facts, consumers, anonymize=anonymize)
    try:
        path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", "utf-8")
    except OSError as error:
        raise InputError(
            f"cannot write the facts file {path}: {error.strerror}", "choose a writable path"
        ) from None
    return path


def load_facts(path: Path) -> CapturedFacts:
    """Read a facts file; :class:`InputError` naming the problem (version, JSON path)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            f"cannot read the facts file {path}: {error}", "give the file --save-facts wrote"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        where = json_path_at(text, error.pos)
        cut = "the file ends early (truncated?)" if error.pos >= len(text.rstrip()) else error.msg
        raise InputError(
            f"{path} is not valid JSON at {where} (line {error.lineno}, column {error.colno}): "
            f"{cut}",
            "send the file again as --save-facts wrote it (not edited, not cut off)",
        ) from None
    return _from_data(path, data)


def _from_data(path: Path, data: Any) -> CapturedFacts:
    if not isinstance(data, dict) or data.get("format") != FACTS_FORMAT:
        raise InputError(
            f"{path} is not a cosdoc-certs facts file ($.format is not {FACTS_FORMAT!r})",
            "give a file written by `cosdoc-certs status --save-facts`",
        )
    version = data.get("schemaVersion")
    if version != FACTS_SCHEMA_VERSION:
        raise InputError(
            f"{path} is a facts file of schema version {version} (written by cosdoc-certs "
            f"{data.get('toolVersion', '?')}); this cosdoc-certs reads schema version "
            f"{FACTS_SCHEMA_VERSION}",
            "read it with the cosdoc-certs version that wrote it, or capture the facts again",
        )
    try:
        document = GatherDocument.from_data(data.get("windows"))
    except GatherContractError as error:
        problem = error.problem.removeprefix("gather returned an unexpected document: ")
        raise InputError(
            f"{path}: {problem.replace('$', '$.windows', 1)}",
            "send the file again as --save-facts wrote it (not edited, not cut off)",
        ) from None
    return CapturedFacts(
        document,
        str(data.get("toolVersion", "")),
        str(data.get("capturedAt", "")),
        data.get("anonymized") is True,
    )


def json_path_at(text: str, offset: int) -> str:
    """The JSON path (``$.windows.certificates[3].der``) of the value around ``offset``."""
    frames: list[list[Any]] = []  # ["{", key or None, expecting a key] or ["[", index]
    position = 0
    while position < min(offset, len(text)):
        char = text[position]
        top = frames[-1] if frames else None
        if char == '"':
            end = _string_end(text, position)
            if top is not None and top[0] == "{" and top[2]:
                top[1] = text[position + 1 : end - 1]
            position = end
            continue
        if char == "{":
            frames.append(["{", None, True])
        elif char == "[":
            frames.append(["[", 0])
        elif char == ":" and top is not None and top[0] == "{":
            top[2] = False
        elif char == "," and top is not None:
            if top[0] == "[":
                top[1] += 1
            else:
                top[1], top[2] = None, True
        elif char in "}]" and frames:
            frames.pop()
        position += 1
    parts = [
        f"[{frame[1]}]" if frame[0] == "[" else f".{frame[1]}"
        for frame in frames
        if frame[0] == "[" or frame[1] is not None
    ]
    return "$" + "".join(parts)


def _string_end(text: str, start: int) -> int:
    position = start + 1
    while position < len(text):
        if text[position] == "\\":
            position += 2
            continue
        if text[position] == '"':
            return position + 1
        position += 1
    return len(text)


def _kept_keys(consumers: Sequence[Consumer]) -> frozenset[str]:
    return frozenset(
        key.path.casefold()
        for consumer in consumers
        if isinstance(consumer, (ServiceConsumer, IisConsumer))
        for key in consumer.keys
    )


def _scrubbed(fact: ConfigFileFact, kept: frozenset[str]) -> ConfigFileFact:
    if fact.content is None:
        return fact
    return dataclasses.replace(fact, content=scrub_config(fact.content, kept))


def scrub_config(data: bytes, kept: frozenset[str]) -> bytes:
    """``data`` with every string value not in ``kept`` and every comment filled with ``x``."""
    try:
        settings = AppSettings.parse(data)
    except ConfigFileError:
        return bytes(byte if byte in b"\r\n" else _FILLER for byte in data)
    scrubbed = bytearray(data)
    for value in settings.strings():
        if value.path.casefold() in kept:
            continue
        scrubbed[value.start + 1 : value.end - 1] = bytes([_FILLER]) * (value.end - value.start - 2)
    for start, end in _comments(data):
        scrubbed[start:end] = bytes(
            byte if byte in b"\r\n" else _FILLER for byte in data[start:end]
        )
    return bytes(scrubbed)


def _comments(data: bytes) -> list[tuple[int, int]]:
    """Where the comments' text is (after ``//`` or between ``/*`` and ``*/``), outside strings."""
    found: list[tuple[int, int]] = []
    position = 0
    while position < len(data):
        byte = data[position : position + 1]
        if byte == b'"':
            match = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL).match(data, position)
            position = match.end() if match else len(data)
            continue
        if data.startswith(b"//", position):
            end = data.find(b"\n", position)
            end = len(data) if end < 0 else end
            if data[end - 1 : end] == b"\r":
                end -= 1
            found.append((position + 2, end))
            position = end
            continue
        if data.startswith(b"/*", position):
            end = data.find(b"*/", position + 2)
            end = len(data) if end < 0 else end
            found.append((position + 2, end))
            position = end + 2
            continue
        position += 1
    return found


class _Anonymizer:
    """Consistent stand-ins for the computer name, domain accounts and binding host names.

    An account resolved on the server is anonymized when its SID is a domain's or the
    server's own (``S-1-5-21-…``); well-known accounts (``NT AUTHORITY\\…``, virtual
    ``IIS APPPOOL\\…`` accounts, in any display language) are kept. The SIDs themselves stay:
    they name no one and the replay matches readers by them. Host names are replaced in the
    IIS bindings and in the ``netsh http show sslcert`` text alike.
    """

    def __init__(self) -> None:
        self.accounts: dict[str, str] = {}
        self.hosts: dict[str, str] = {}

    def document(self, document: GatherDocument) -> GatherDocument:
        iis = self.iis(document.iis) if document.iis else None
        return dataclasses.replace(
            document,
            computer_name="SERVER",
            services=tuple(
                dataclasses.replace(
                    s, account=self.account(s.account), identity=self.identity(s.identity)
                )
                for s in document.services
            ),
            iis=iis,
            http_sys=dataclasses.replace(
                document.http_sys, output=self.netsh_text(document.http_sys.output)
            ),
            certificates=tuple(
                dataclasses.replace(c, readers=tuple(self.identity(r) for r in c.readers))
                for c in document.certificates
            ),
        )

    def iis(self, iis: IisFacts) -> IisFacts:
        return dataclasses.replace(
            iis,
            app_pools=tuple(
                dataclasses.replace(
                    p, user_name=self.account(p.user_name), identity=self.identity(p.identity)
                )
                for p in iis.app_pools
            ),
            bindings=tuple(
                dataclasses.replace(
                    b, binding_information=self.binding_information(b.binding_information)
                )
                for b in iis.bindings
            ),
            ssl_bindings=tuple(
                dataclasses.replace(s, host=self.host(s.host)) for s in iis.ssl_bindings
            ),
        )

    def identity(self, identity: IdentityFact) -> IdentityFact:
        """The identity with its name anonymized when its SID is a domain or local account's."""
        if identity.name is None or not (identity.sid or "").upper().startswith("S-1-5-21-"):
            return identity
        return dataclasses.replace(identity, name=self.account(identity.name, always=True))

    def account(self, name: str, *, always: bool = False) -> str:
        domain, separator, _ = name.partition("\\")
        if not separator or (not always and domain.casefold() in _WELL_KNOWN_DOMAINS):
            return name
        key = name.casefold()
        if key not in self.accounts:
            self.accounts[key] = f"DOMAIN\\account-{len(self.accounts) + 1}"
        return self.accounts[key]

    def netsh_text(self, output: str) -> str:
        """netsh's text with every host name already replaced in the bindings replaced too."""
        for original, stand_in in sorted(self.hosts.items(), key=lambda item: -len(item[0])):
            output = re.sub(re.escape(original), stand_in, output, flags=re.IGNORECASE)
        return output

    def host(self, name: str) -> str:
        if not name:
            return name
        key = name.casefold()
        if key not in self.hosts:
            self.hosts[key] = f"host-{len(self.hosts) + 1}.example"
        return self.hosts[key]

    def binding_information(self, information: str) -> str:
        address, separator, host = information.rpartition(":")
        return f"{address}{separator}{self.host(host)}" if separator else information
