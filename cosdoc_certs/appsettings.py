"""appsettings.json read the way .NET reads it, and edited without touching any other byte.

CosDoc's services read their settings with .NET's JSON configuration provider, which accepts
``//`` and ``/* */`` comments and trailing commas, reads UTF-8 with or without a BOM and
treats keys case-insensitively (``certSettings`` is ``CertSettings``; nested keys are joined
with ``:``, so ``{"CertSettings:SigningThumbprint": ...}`` is the same setting). People edit
these files by hand, so :class:`AppSettings` keeps the byte position of every string value and
:meth:`AppSettings.replace` rewrites exactly those bytes: BOM, line endings, indentation,
comments, key order and the escapes of every other value stay as they were.

Values are addressed with JSONPath expressions (``$.CertSettings.SigningThumbprint``,
``$.Items[0].Name``) parsed by jsonpath-ng and resolved case-insensitively. Config files can
hold connection-string passwords: messages, reprs and diffs name keys and positions, never
unrelated values.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import json
import logging
import re
import string
import threading
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn

from jsonpath_ng import jsonpath
from jsonpath_ng.parser import JsonPathParser

from cosdoc_certs.errors import ConfigFileError, ThumbprintError
from cosdoc_certs.findings import Finding, Severity
from cosdoc_certs.thumbprints import (
    THUMBPRINT_LENGTH,
    is_invisible,
    normalize_thumbprint,
    show_invisible,
)

logger = logging.getLogger(__name__)

MAX_DEPTH = 64
"""The nesting limit of .NET's JSON reader (``JsonDocumentOptions.MaxDepth`` default)."""

_BOM = b"\xef\xbb\xbf"
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
# Unrolled loops ("normal* (special normal*)*"): each byte matches one way, so a string that
# is never closed fails in linear time instead of backtracking exponentially.
_WHITESPACE = re.compile(rb"[ \t\r\n]*")
_SKIP = re.compile(rb"[ \t\r\n]*(?:(?://[^\r\n]*|/\*.*?\*/)[ \t\r\n]*)*", re.DOTALL)
_STRING_PREFIX = re.compile(
    rb'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*'
)
_STRING = re.compile(_STRING_PREFIX.pattern + b'"')
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = {
    b"t"[0]: (b"true", "boolean"),
    b"f"[0]: (b"false", "boolean"),
    b"n"[0]: (b"null", "null"),
}
_WORD_CHAR = re.compile(rb"[A-Za-z0-9_.+\-]")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JSONPATH_RESERVED = frozenset({"where", "wherenot"})
_MINIMAL_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n"}
_MINIMAL_ESCAPES |= {"\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f]')
_SOURCE_PIECE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    r"|\\u([0-9a-fA-F]{4})|\\(.)|(.)",
    re.DOTALL,
)
_SIMPLE_UNESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n"}
_SIMPLE_UNESCAPES |= {"r": "\r", "t": "\t"}
_SECRET_KEY = re.compile(r"pass|pwd|secret|connectionstring|apikey|token|credential", re.I)
_SECRET_TEXT = re.compile(r"(?:password|pwd)\s*=", re.I)
_SEPARATOR_NAMES = {" ": "space", ":": "colon", "\t": "tab"}
_HEX = frozenset(string.hexdigits)
_JSONPATH_LOCK = threading.Lock()  # one jsonpath-ng parser, reused: building one costs ~3 ms

_OPEN_OBJECT, _CLOSE_OBJECT = b"{"[0], b"}"[0]
_OPEN_ARRAY, _CLOSE_ARRAY = b"["[0], b"]"[0]
_QUOTE, _COLON, _COMMA, _SLASH = b'"'[0], b":"[0], b","[0], b"/"[0]
_NUMBER_START = frozenset(b"-0123456789")
_GAP_START = frozenset(b" \t\r\n/")

Segment = str | int
"""One step of a path: an object key as written in the file, or an array index."""


@dataclass(frozen=True)
class StringValue:
    """A string value in the file: where it is, what it says, and its exact bytes.

    ``raw`` is the whole token as written, quotes included (``data[start:end] == raw``);
    ``line`` and ``column`` (1-based, columns in characters, BOM not counted) point at its
    opening quote. ``path`` is canonical, with the keys spelled as in the file.
    """

    path: str
    value: str = field(repr=False)
    raw: bytes = field(repr=False)
    line: int
    column: int
    start: int
    end: int


class _Node(NamedTuple):
    """A parsed value: where it sits in the tree and in the bytes."""

    segments: tuple[Segment, ...]
    kind: str  # string, number, boolean, null, object, array
    start: int
    end: int
    value: str | None  # decoded text of a string value


class AppSettings:
    """A parsed appsettings.json: look values up by JSONPath and rewrite them in place."""

    def __init__(
        self, data: bytes, source: str, leaves: dict[str, _Node], sections: dict[str, _Node]
    ) -> None:
        self.data = data
        self.source = source
        self._leaves = leaves
        self._sections = sections

    @classmethod
    def parse(cls, data: bytes, *, source: str = "appsettings.json") -> AppSettings:
        """Parse ``data`` as .NET does, or raise :class:`ConfigFileError` with line and column."""
        parser = _Parser(data, source)
        parser.parse()
        return cls(data, source, parser.leaves, parser.sections)

    def __repr__(self) -> str:
        count = len(self._leaves)
        return f"<AppSettings {self.source}: {count} value{'' if count == 1 else 's'}>"

    def __len__(self) -> int:
        return len(self._leaves)

    def strings(self) -> tuple[StringValue, ...]:
        """Every string value of the file, in file order."""
        return tuple(
            self._string_value(node) for node in self._leaves.values() if node.kind == "string"
        )

    def find(self, path: str) -> StringValue | None:
        """The string value at ``path``, None if there is none; ConfigFileError if not a string."""
        key = _config_key(path_segments(path))
        node = self._leaves.get(key) or self._sections.get(key)
        if node is None:
            return None
        if node.kind != "string":
            raise self._not_a_string(path, node)
        return self._string_value(node)

    def get(self, path: str) -> str:
        """The decoded string at ``path``; ConfigFileError if it is missing or not a string."""
        return self._require(path).value

    def replace(self, new_values: Mapping[str, str]) -> bytes:
        """The file with the string at each path set to its new value; every other byte kept.

        Missing keys and non-string values are errors (nothing is created). A value that
        already decodes to its new text keeps its bytes, escapes included.
        """
        chosen: dict[int, tuple[StringValue, str]] = {}
        for path, new_value in new_values.items():
            target = self._require(path)
            if chosen.setdefault(target.start, (target, new_value))[1] != new_value:
                raise ConfigFileError(
                    f"{self.source}: two different new values for {target.path}",
                    "give each setting one new value (paths match case-insensitively)",
                )
        edits = {
            target.start: (target.end, _encode_string(new_value, target.path, self.source))
            for target, new_value in chosen.values()
            if new_value != target.value
        }
        logger.debug("%s: rewriting %d string values", self.source, len(edits))
        return _splice(self.data, edits)

    def _require(self, path: str) -> StringValue:
        found = self.find(path)
        if found is None:
            raise self._missing(path)
        return found

    def _string_value(self, node: _Node) -> StringValue:
        line, column = _position(self.data, node.start, self._line_starts)
        assert node.value is not None
        return StringValue(
            path=format_path(node.segments),
            value=node.value,
            raw=self.data[node.start : node.end],
            line=line,
            column=column,
            start=node.start,
            end=node.end,
        )

    @functools.cached_property
    def _line_starts(self) -> list[int]:
        return _line_starts(self.data)

    def _where(self, node: _Node) -> str:
        line, column = _position(self.data, node.start, self._line_starts)
        return f"{self.source}:{line}:{column}"

    def _not_a_string(self, path: str, node: _Node) -> ConfigFileError:
        return ConfigFileError(
            f"{self._where(node)}: {format_path(node.segments)} is {_a(node.kind)}, not a string "
            f"(asked for {path})",
            "thumbprints are JSON strings in quotes; fix the file by hand or the path",
        )

    def _missing(self, path: str) -> ConfigFileError:
        segments = path_segments(path)
        for depth in range(len(segments) - 1, 0, -1):
            prefix = _config_key(segments[:depth])
            if prefix in self._leaves:
                node = self._leaves[prefix]
                return ConfigFileError(
                    f"{self._where(node)}: no setting {path}: {format_path(node.segments)} is "
                    f"{_a(node.kind)}, not a section",
                    "check the path against the file",
                )
            if prefix in self._sections:
                return self._no_key(path, self._sections[prefix].segments)
        return self._no_key(path, ())

    def _no_key(self, path: str, parent: tuple[Segment, ...]) -> ConfigFileError:
        keys = [
            str(node.segments[-1])
            for node in [*self._sections.values(), *self._leaves.values()]
            if len(node.segments) == len(parent) + 1 and node.segments[:-1] == parent
        ]
        where = format_path(parent) if parent else "the top level"
        return ConfigFileError(
            f"{self.source}: no setting {path} ({where} has {_list_keys(keys)})",
            "check the path (keys match case-insensitively) or add the key to the file by "
            "hand; values are never created",
        )


def format_path(segments: tuple[Segment, ...]) -> str:
    """The canonical JSONPath of a value: ``$.Key`` for plain keys, ``$['a:b']``, ``$.A[0]``."""
    parts = ["$"]
    for segment in segments:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _PLAIN_KEY.fullmatch(segment) and segment not in _JSONPATH_RESERVED:
            parts.append(f".{segment}")
        else:
            quoted = segment.replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"['{quoted}']")
    return "".join(parts)


def same_thumbprint(configured: str, thumbprint: str) -> bool:
    """True when a configured value names ``thumbprint`` once both are normalised."""
    try:
        configured_digits = normalize_thumbprint(configured)
    except ThumbprintError:
        return False
    return configured_digits == normalize_thumbprint(thumbprint)


def thumbprint_findings(value: StringValue, subject: str) -> list[Finding]:
    """What is wrong with a thumbprint as written in the file, each with its line and column."""
    characters = list(_source_characters(value))
    checks = (_invisible_findings, _separator_findings, _lowercase_findings, _malformed_findings)
    return [
        Finding(code, severity, message, subject)
        for check in checks
        for code, severity, message in check(value, characters)
    ]


def edit_diff(before: bytes, after: bytes, *, source: str, context: int = 0) -> str:
    """A unified diff of the lines an edit changes; secret-looking values show as <hidden>.

    Only changed lines are shown unless ``context`` asks for more; invisible characters are
    shown as ``<U+200E>`` so a person can see them go.
    """
    before_masked, after_masked = _masked_pair(before, after, source)
    diff = difflib.unified_diff(
        _display_lines(before_masked),
        _display_lines(after_masked),
        fromfile=f"{source} (before)",
        tofile=f"{source} (after)",
        n=context,
        lineterm="",
    )
    return "\n".join(show_invisible(line) for line in diff)


class _Parser:
    """A recursive-descent parser over bytes that records every value's byte span."""

    def __init__(self, data: bytes, source: str) -> None:
        self.source = source
        self.end = len(data)
        self.data = data + b"\0"  # a sentinel no JSON token accepts
        self.leaves: dict[str, _Node] = {}
        self.sections: dict[str, _Node] = {}

    def parse(self) -> None:
        data = self.data[: self.end]
        if data.startswith(_UTF16_32_BOMS) or (len(data) > 1 and 0 in data[:2]):
            raise ConfigFileError(
                f"{self.source}: the file is UTF-16 or UTF-32 encoded",
                "save it as UTF-8 (with or without BOM) and try again",
            )
        self._check_utf8(data)
        position = self._skip(len(_BOM) if data.startswith(_BOM) else 0)
        if self.data[position] != _OPEN_OBJECT:
            found = self._describe(position)
            self._fail(
                position, f"the top level must be an object in braces {{...}}, found {found}"
            )
        position = self._skip(self._object(position, (), "", 1))
        if position != self.end:
            self._fail(
                position, "unexpected " + self._describe(position) + " after the closing '}'"
            )

    def _check_utf8(self, data: bytes) -> None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            self._fail(
                error.start,
                f"byte 0x{data[error.start]:02X} is not UTF-8",
                "save the file as UTF-8",
            )

    def _skip(self, position: int) -> int:
        if self.data[position] not in _GAP_START:
            return position
        position = _SKIP.match(self.data, position, self.end).end()  # type: ignore[union-attr]
        if self.data[position] == _SLASH:
            if self.data.startswith(b"/*", position):
                self._fail(position, "comment /* is never closed", "close it with */")
            self._fail(position, "unexpected '/'", "comments start with // or /*")
        return position

    def _after_key(self, position: int) -> int:
        """Skip whitespace after a property name: .NET allows no comment before its ':'."""
        position = _WHITESPACE.match(self.data, position, self.end).end()  # type: ignore[union-attr]
        if self.data[position] == _SLASH:
            self._fail(
                position,
                "'/' is invalid after a property name (.NET allows only whitespace before ':')",
                "move the comment after the ':' or after the value",
            )
        return position

    def _value(self, position: int, segments: tuple[Segment, ...], key: str, depth: int) -> int:
        first = self.data[position]
        if first == _QUOTE:
            end, text = self._string(position)
            self._leaf(_Node(segments, "string", position, end, text), key)
            return end
        if first == _OPEN_OBJECT:
            return self._object(position, segments, key, depth + 1)
        if first == _OPEN_ARRAY:
            return self._array(position, segments, key, depth + 1)
        if first in _NUMBER_START:
            match = _NUMBER.match(self.data, position)
            end = match.end() if match else position
            kind = "number"
        elif first in _LITERALS and self.data.startswith(_LITERALS[first][0], position):
            end, kind = position + len(_LITERALS[first][0]), _LITERALS[first][1]
        elif chr(first).isalpha():
            self._fail(position, "invalid value (not a number, string, true, false or null)")
        else:
            self._fail(position, "expected a value, found " + self._describe(position))
        if end == position or _WORD_CHAR.match(self.data, end):
            self._fail(position, "invalid value (not a number, string, true, false or null)")
        self._leaf(_Node(segments, kind, position, end, None), key)
        return end

    def _object(self, position: int, segments: tuple[Segment, ...], key: str, depth: int) -> int:
        self._check_depth(position, depth)
        self._section(_Node(segments, "object", position, position, None), key)
        seen: dict[str, int] = {}
        position = self._skip(position + 1)
        if self.data[position] == _CLOSE_OBJECT:
            return position + 1
        while True:
            if self.data[position] != _QUOTE:
                self._fail(
                    position, "expected a key in double quotes, found " + self._describe(position)
                )
            key_end, name = self._string(position)
            folded = _fold(name)
            if folded in seen:
                self._fail(
                    position,
                    f"duplicate key '{name}' (first at {self._line_column(seen[folded])})",
                    "keys are case-insensitive; keep one of the two",
                )
            seen[folded] = position
            position = self._after_key(key_end)
            if self.data[position] != _COLON:
                self._fail(
                    position, "expected ':' after the key, found " + self._describe(position)
                )
            child_key = f"{key}:{folded}" if segments else folded
            position = self._skip(
                self._value(self._skip(position + 1), (*segments, name), child_key, depth)
            )
            if self.data[position] == _COMMA:
                position = self._skip(position + 1)
                if self.data[position] == _CLOSE_OBJECT:
                    return position + 1
            elif self.data[position] == _CLOSE_OBJECT:
                return position + 1
            else:
                self._fail(
                    position, "expected ',' or '}' after a value, found " + self._describe(position)
                )

    def _array(self, position: int, segments: tuple[Segment, ...], key: str, depth: int) -> int:
        self._check_depth(position, depth)
        self._section(_Node(segments, "array", position, position, None), key)
        position = self._skip(position + 1)
        index = 0
        while self.data[position] != _CLOSE_ARRAY:
            child_key = f"{key}:{index}"
            position = self._skip(self._value(position, (*segments, index), child_key, depth))
            index += 1
            if self.data[position] == _COMMA:
                position = self._skip(position + 1)
            elif self.data[position] != _CLOSE_ARRAY:
                self._fail(
                    position, "expected ',' or ']' after a value, found " + self._describe(position)
                )
        return position + 1

    def _string(self, position: int) -> tuple[int, str]:
        match = _STRING.match(self.data, position)
        if match is None:
            self._string_error(position)
        token = match.group()
        if b"\\" not in token:
            return match.end(), token[1:-1].decode("utf-8")
        text: str = json.loads(token)
        lone = _LONE_SURROGATE.search(text)
        if lone:
            self._fail(
                position,
                f"string has an unpaired surrogate \\u{ord(lone.group()):04x}",
                "write the character itself or a valid \\ud8xx\\udcxx pair",
            )
        return match.end(), text

    def _string_error(self, position: int) -> NoReturn:
        problem = _STRING_PREFIX.match(self.data, position).end()  # type: ignore[union-attr]
        byte = self.data[problem]
        if problem == self.end or byte in b"\r\n":
            self._fail(position, "string is not closed on its line", 'close it with "')
        if byte == b"\\"[0]:
            self._fail(
                problem,
                "invalid escape in a string",
                'valid escapes: \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX',
            )
        self._fail(
            problem,
            f"control character U+{byte:04X} inside a string",
            "write it as an escape such as \\t",
        )

    def _leaf(self, node: _Node, key: str) -> None:
        first = self.leaves.setdefault(key, node)
        if first is not node:
            self._fail(
                node.start,
                f"duplicate setting {format_path(node.segments)} (first at "
                f"{self._line_column(first.start)} as {format_path(first.segments)})",
                ".NET joins nested keys with ':' and compares them case-insensitively; "
                "keep one of the two",
            )

    def _section(self, node: _Node, key: str) -> None:
        self.sections.setdefault(key, node)

    def _check_depth(self, position: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            self._fail(position, f"nested deeper than {MAX_DEPTH} levels, which .NET refuses")

    def _describe(self, position: int) -> str:
        if position >= self.end:
            return "the end of the file"
        char = self.data[position : position + 4].decode("utf-8", errors="ignore")[:1]
        return f"'{char}'" if char.isprintable() and char else f"U+{ord(char or '?'):04X}"

    def _line_column(self, position: int) -> str:
        data = self.data[: self.end]
        line, column = _position(data, position, _line_starts(data))
        return f"{line}:{column}"

    def _fail(self, position: int, problem: str, hint: str = "") -> NoReturn:
        raise ConfigFileError(
            f"{self.source}:{self._line_column(position)}: {problem}",
            hint or "fix the file and try again",
        )


def _fold(key: str) -> str:
    """Fold a key the way .NET's OrdinalIgnoreCase compares it (simple upper-casing)."""
    if key.isascii():
        return key.upper()
    return "".join(upper if len(upper := char.upper()) == 1 else char for char in key)


def _config_key(segments: tuple[Segment, ...]) -> str:
    return ":".join(_fold(str(segment)) for segment in segments)


@functools.lru_cache(maxsize=256)
def path_segments(path: str) -> tuple[Segment, ...]:
    """The keys and indexes of a path to one value; ConfigFileError for any other expression."""
    try:
        with _JSONPATH_LOCK:
            expression = _jsonpath_parser().parse(path)
    except Exception as error:  # jsonpath-ng raises bare Exception subclasses of its own
        raise _bad_path(path, f"cannot be parsed ({error})") from None
    return tuple(_flatten(path, expression))


@functools.cache
def _jsonpath_parser() -> JsonPathParser:
    return JsonPathParser()


def _flatten(path: str, expression: jsonpath.JSONPath) -> Iterator[Segment]:
    if isinstance(expression, jsonpath.Root):
        return
    if isinstance(expression, jsonpath.Child):
        yield from _flatten(path, expression.left)
        yield from _flatten(path, expression.right)
        return
    segment = _single_step(expression)
    if segment is None:
        raise _bad_path(path, f"uses {expression!r}, which is not a single key or index")
    yield segment


def _single_step(expression: jsonpath.JSONPath) -> Segment | None:
    """The key of ``.Key``/``['Key']`` or the index of ``[n]`` (n >= 0); None otherwise."""
    if isinstance(expression, jsonpath.Fields):
        fields = expression.fields
        return str(fields[0]) if len(fields) == 1 and fields[0] != "*" else None
    if isinstance(expression, jsonpath.Index):
        indices = _index_values(expression)
        if len(indices) == 1 and isinstance(indices[0], int) and indices[0] >= 0:
            return int(indices[0])
    return None


def _index_values(expression: object) -> tuple[object, ...]:
    """The indexes of a ``[n]`` step: ``indices`` from jsonpath-ng 1.7, ``index`` before."""
    indices = getattr(expression, "indices", None)
    if indices is None:
        indices = (getattr(expression, "index", None),)
    return tuple(indices)


def _bad_path(path: str, problem: str) -> ConfigFileError:
    return ConfigFileError(
        f"path {path!r} {problem}",
        "use a path to one value made of keys and indexes, like $.CertSettings.SigningThumbprint"
        " or $.Items[0].Name",
    )


def _line_starts(data: bytes) -> list[int]:
    return [0, *(match.end() for match in _LINE_BREAK.finditer(data))]


def _position(data: bytes, offset: int, line_starts: list[int]) -> tuple[int, int]:
    """1-based line and column (in characters, a leading BOM not counted) of a byte offset."""
    line = bisect.bisect_right(line_starts, offset)
    start = line_starts[line - 1]
    if start == 0 and data.startswith(_BOM):
        start = len(_BOM)
    return line, len(data[start:offset].decode("utf-8", errors="replace")) + 1


def _encode_string(value: str, path: str, source: str) -> bytes:
    """``value`` as a JSON string token, escaping only what JSON requires."""
    if _LONE_SURROGATE.search(value):
        raise ConfigFileError(
            f"{source}: the new value for {path} has an unpaired surrogate character",
            "pass proper text",
        )
    escaped = _NEEDS_ESCAPE.sub(
        lambda m: _MINIMAL_ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), value
    )
    return f'"{escaped}"'.encode()


def _splice(data: bytes, edits: Mapping[int, tuple[int, bytes]]) -> bytes:
    """``data`` with each span ``start: (end, new bytes)`` replaced, in one pass."""
    pieces: list[bytes] = []
    done = 0
    for start in sorted(edits):
        end, new = edits[start]
        pieces += [data[done:start], new]
        done = end
    pieces.append(data[done:])
    return b"".join(pieces)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _list_keys(keys: list[str]) -> str:
    return "keys " + ", ".join(keys) if keys else "no keys"


def _source_characters(value: StringValue) -> Iterator[tuple[str, int, str]]:
    """Each decoded character of a string token with its column and how it is escaped."""
    text = value.raw.decode("utf-8")[1:-1]
    for match in _SOURCE_PIECE.finditer(text):
        high, low, code, simple, plain = match.groups()
        if high:
            char = chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
        elif code:
            char = chr(int(code, 16))
        else:
            char = _SIMPLE_UNESCAPES[simple] if simple else plain
        written = f" (written as {match.group()})" if match.group() != char else ""
        yield char, value.column + 1 + match.start(), written


def _char_name(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, '(unnamed)')}"


_Check = list[tuple[str, Severity, str]]
_Characters = list[tuple[str, int, str]]  # decoded character, column, how it is written


def _invisible_findings(value: StringValue, characters: _Characters) -> _Check:
    return [
        (
            "thumbprint-invisible-char",
            Severity.ERROR,
            f"{value.path} has an invisible {_char_name(char)} at line {value.line}, column "
            f"{column}{written}; remove it (copied along from the certificate dialog)",
        )
        for char, column, written in characters
        if is_invisible(char)
    ]


def _separator_findings(value: StringValue, characters: _Characters) -> _Check:
    separators = [(char, column) for char, column, _ in characters if char in _SEPARATOR_NAMES]
    if not separators:
        return []
    names = ", ".join(sorted({_SEPARATOR_NAMES[char] for char, _ in separators}))
    return [
        (
            "thumbprint-separators",
            Severity.WARNING,
            f"{value.path} has {len(separators)} separator(s) ({names}), the first at line "
            f"{value.line}, column {separators[0][1]}; write the 40 hex digits without separators",
        )
    ]


def _lowercase_findings(value: StringValue, characters: _Characters) -> _Check:
    lower = [column for char, column, _ in characters if char in "abcdef"]
    if not lower:
        return []
    return [
        (
            "thumbprint-lowercase",
            Severity.INFO,
            f"{value.path} is in lower case (first at line {value.line}, column {lower[0]}); "
            "Windows shows thumbprints in upper case",
        )
    ]


def _malformed_findings(value: StringValue, characters: _Characters) -> _Check:
    try:
        normalize_thumbprint(value.value)
    except ThumbprintError:
        return [("thumbprint-malformed", Severity.ERROR, _malformed_message(value, characters))]
    return []


def _malformed_message(value: StringValue, characters: _Characters) -> str:
    for char, column, _ in characters:
        if not (char in _HEX or char in _SEPARATOR_NAMES or is_invisible(char)):
            shown = repr(char) if char.isprintable() else "a character"
            return (
                f"{value.path} is not a thumbprint: {shown} ({_char_name(char)}) at line "
                f"{value.line}, column {column}; a thumbprint is {THUMBPRINT_LENGTH} hex digits"
            )
    digits = sum(char in _HEX for char, _, _ in characters)
    return (
        f"{value.path} has {digits} hex digits, expected {THUMBPRINT_LENGTH}; copy the whole "
        "thumbprint (SHA-1) of the certificate again"
    )


def _masked_pair(before: bytes, after: bytes, source: str) -> tuple[bytes, bytes]:
    """Both files with secret-looking string values replaced by a marker."""
    old, new = AppSettings.parse(before, source=source), AppSettings.parse(after, source=source)
    old_masks: dict[int, tuple[int, bytes]] = {}
    new_masks: dict[int, tuple[int, bytes]] = {}
    for key, node in old._leaves.items():
        if node.kind == "string" and _looks_secret(node):
            old_masks[node.start] = (node.end, b'"<hidden>"')
            twin = new._leaves.get(key)
            if twin is not None:
                marker = b'"<hidden>"' if twin.value == node.value else b'"<hidden, changed>"'
                new_masks[twin.start] = (twin.end, marker)
    return _splice(before, old_masks), _splice(after, new_masks)


def _looks_secret(node: _Node) -> bool:
    keys = (segment for segment in node.segments if isinstance(segment, str))
    return any(_SECRET_KEY.search(key) for key in keys) or bool(
        _SECRET_TEXT.search(node.value or "")
    )


def _display_lines(data: bytes) -> list[str]:
    return re.split(r"\r\n|\r|\n", data.removeprefix(_BOM).decode("utf-8"))
