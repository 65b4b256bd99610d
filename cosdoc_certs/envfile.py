"""docker compose env files (``prod.env``): parse them and change one value, keeping the rest.

The parser follows compose-go's dotenv rules: blank and ``#`` lines are ignored; an optional
``export`` prefix; spaces around ``=`` are allowed and ``KEY: value`` also parses; an unquoted
value ends at a newline, a comment starts only at `` #`` and trailing whitespace is trimmed;
single quotes are literal (only ``\\'`` is an escape); double quotes take ``\\n \\r \\t \\" \\\\``
escapes and may span lines; ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` expand in unquoted
and double-quoted values (``$$`` and ``\\$`` are a literal ``$``) from the keys above them; a
bare ``KEY`` inherits the environment's value; the last repeated key wins.

:func:`set_value` changes the value of one key and keeps every other byte: the edited
statement keeps its ``export``, spacing, quoting style and trailing comment; a missing key is
appended. Everything here is pure: bytes in, bytes out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cosdoc_certs.errors import ConfigFileError

__all__ = ["EnvEntry", "EnvFile", "parse_env", "set_value"]

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # undecodable bytes survive an edit unchanged
_INLINE_SPACE = " \t\v\f\r\x85\xa0"
_KEY_CHARS = re.compile(r"[\w.\-\[\]]+")
_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-+?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
_EXPORT = re.compile(r"export[ \t]+")
_DOUBLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


@dataclass(frozen=True)
class EnvEntry:
    """One ``KEY=value`` statement and where it sits in the text (character offsets).

    ``value`` is None for a bare ``KEY`` (the value comes from the environment).
    ``value_start``/``value_end`` span the raw value including its quotes.
    """

    key: str
    value: str | None
    quote: str
    line: int
    start: int
    value_start: int
    value_end: int


@dataclass(frozen=True)
class EnvFile:
    """A parsed env file: the text and its statements in file order."""

    text: str
    entries: tuple[EnvEntry, ...]

    def entry(self, key: str) -> EnvEntry | None:
        """The statement that sets ``key`` (the last one: the last repeated key wins)."""
        for entry in reversed(self.entries):
            if entry.key == key:
                return entry
        return None

    def get(self, key: str) -> str | None:
        """The value compose would use for ``key``, or None when unset or inherited."""
        entry = self.entry(key)
        return entry.value if entry else None

    def values(self) -> dict[str, str | None]:
        """Every key with its effective value."""
        return {entry.key: entry.value for entry in self.entries}

    def __repr__(self) -> str:
        return f"<EnvFile {len(self.entries)} statement(s): {', '.join(self.values())}>"


def _decode(data: bytes | str) -> str:
    return data if isinstance(data, str) else data.decode(_ENCODING, _ERRORS)


def parse_env(data: bytes | str) -> EnvFile:
    """Parse an env file; a syntax error is a :class:`ConfigFileError` naming the line."""
    text = _decode(data)
    return EnvFile(text, tuple(_Parser(text).statements()))


class _Parser:
    """A scanner over the text that yields statements with their offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.known: dict[str, str] = {}

    def line_of(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1

    def fail(self, offset: int, problem: str) -> ConfigFileError:
        return ConfigFileError(
            f"env file line {self.line_of(offset)}: {problem}",
            "fix the line by hand (compose would reject it too), then run again",
        )

    def statements(self) -> list[EnvEntry]:
        entries = []
        while self._skip_to_statement():
            entry = self._statement()
            entries.append(entry)
            if entry.value is not None:
                self.known[entry.key] = entry.value
        return entries

    def _skip_to_statement(self) -> bool:
        """Move past whitespace, blank lines and comment lines; False at the end."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in _INLINE_SPACE or char == "\n":
                self.pos += 1
            elif char == "#":
                newline = text.find("\n", self.pos)
                self.pos = len(text) if newline < 0 else newline + 1
            else:
                return True
        return False

    def _skip_inline_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _INLINE_SPACE:
            self.pos += 1

    def _statement(self) -> EnvEntry:
        start = self.pos
        export = _EXPORT.match(self.text, self.pos)
        if export and _KEY_CHARS.match(self.text, export.end()):
            self.pos = export.end()
        match = _KEY_CHARS.match(self.text, self.pos)
        if not match:
            raise self.fail(self.pos, f"unexpected character {self.text[self.pos]!r}")
        key = match.group()
        self.pos = match.end()
        self._skip_inline_space()
        if self.pos >= len(self.text) or self.text[self.pos] == "\n":
            return EnvEntry(key, None, "", self.line_of(start), start, self.pos, self.pos)
        if self.text[self.pos] not in "=:":
            raise self.fail(self.pos, f"unexpected character {self.text[self.pos]!r} after {key}")
        self.pos += 1
        self._skip_inline_space()
        value_start = self.pos
        if self.pos < len(self.text) and self.text[self.pos] in "'\"":
            value, quote = self._quoted(), self.text[value_start]
        else:
            value, quote = self._unquoted(), ""
        entry = EnvEntry(key, value, quote, self.line_of(start), start, value_start, self.pos)
        if quote:
            self._check_rest_of_line()
        return entry

    def _unquoted(self) -> str:
        newline = self.text.find("\n", self.pos)
        end = len(self.text) if newline < 0 else newline
        raw = self.text[self.pos : end]
        comment = raw.find(" #")
        if comment >= 0:
            raw = raw[:comment]
        raw = raw.rstrip()
        self.pos += len(raw)
        return _expand(raw, self.known)

    def _quoted(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        index = self.pos + 1
        chars: list[str] = []
        escaped = False
        while index < len(self.text):
            char = self.text[index]
            index += 1
            if char == quote and not escaped:
                self.pos = index
                value = "".join(chars)
                return _expand(_unescape_double(value), self.known) if quote == '"' else value
            if char == "\\" and not escaped:
                escaped = True
                continue
            if escaped and char != quote:
                chars.append("\\")
            escaped = False
            chars.append(char)
        raise self.fail(start, "unterminated quoted value")

    def _check_rest_of_line(self) -> None:
        """After a closing quote only spaces and a comment may follow on the line."""
        self._skip_inline_space()
        if self.pos < len(self.text) and self.text[self.pos] not in "#\n":
            raise self.fail(self.pos, "text after the closing quote")


def _unescape_double(value: str) -> str:
    """Apply double-quote escapes; ``\\$`` becomes ``$$`` so expansion keeps it literal."""

    def replace(match: re.Match[str]) -> str:
        char = match.group(1)
        if char == "$":
            return "$$"
        return _DOUBLE_ESCAPES.get(char, match.group(0))

    return re.sub(r"\\(.)", replace, value, flags=re.DOTALL)


def _expand(value: str, known: Mapping[str, str]) -> str:
    """Expand ``$VAR``/``${VAR...}`` from the keys defined above; ``$$`` is a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        current = known.get(name)
        op, arg = match.group("op"), match.group("arg") or ""
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else str(current)
        if op in (":+", "+"):
            is_set = current is not None and (op == "+" or current != "")
            return arg if is_set else ""
        return current or ""

    return _VARIABLE.sub(replace, value)


def _render_value(value: str, quote: str) -> str:
    """``value`` written so it parses back unchanged, in ``quote`` style when that can."""
    if quote == "" and _fits_unquoted(value):
        return value
    if quote != '"' and "'" not in value and "\\" not in value:
        return f"'{value}'"
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("$", "\\$")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _fits_unquoted(value: str) -> bool:
    """True when ``value`` reads back unchanged without quotes."""
    return (
        value == value.strip()
        and " #" not in value
        and "\n" not in value
        and "$" not in value
        and "\\" not in value
        and not value.startswith(("'", '"'))
    )


def set_value(data: bytes, key: str, value: str) -> bytes:
    """``data`` with ``key`` set to ``value``; every other byte is kept.

    The effective (last) statement for ``key`` is edited in place, keeping its quoting
    style when the new value allows it; a missing key is appended as ``KEY=value`` with the
    file's line ending. Unchanged values return ``data`` itself.
    """
    if not _KEY_CHARS.fullmatch(key):
        raise ConfigFileError(f"{key!r} is not a valid env file key", "use letters, digits, _ . -")
    env = parse_env(data)
    entry = env.entry(key)
    if entry is not None and entry.value == value:
        return data
    text = env.text
    if entry is None:
        newline = "\r\n" if "\r\n" in text else "\n"
        prefix = "" if text == "" or text.endswith("\n") else newline
        head, tail, quote = f"{text}{prefix}{key}=", newline, ""
    elif entry.value is None:
        head, tail, quote = f"{text[: entry.value_end]}=", text[entry.value_end :], ""
    else:
        head, tail, quote = text[: entry.value_start], text[entry.value_end :], entry.quote
    # the line's own style first; double quotes when what follows would change the reading
    for style in (quote, '"'):
        result = (head + _render_value(value, style) + tail).encode(_ENCODING, _ERRORS)
        if parse_env(result).get(key) == value:
            return result
    raise ConfigFileError(f"cannot write {key} so that it reads back unchanged", "edit by hand")
