"""env files: compose-go dotenv parsing and byte-preserving edits of one key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosdoc_certs.envfile import parse_env, set_value
from cosdoc_certs.errors import ConfigFileError

PARSE_CASES = [
    # (file text, key, expected value)
    ("SSL_CERT_FILENAME=cert.crt\n", "SSL_CERT_FILENAME", "cert.crt"),
    ("SSL_CERT_FILENAME = cert.crt\n", "SSL_CERT_FILENAME", "cert.crt"),
    ("export SSL_CERT_FILENAME=cert.crt\n", "SSL_CERT_FILENAME", "cert.crt"),
    ("SSL_CERT_FILENAME: cert.crt\n", "SSL_CERT_FILENAME", "cert.crt"),
    ("A=cert.crt # the old one\n", "A", "cert.crt"),
    ("A=cert#1.crt\n", "A", "cert#1.crt"),
    ("A=x   \n", "A", "x"),
    ("A=x\r\n", "A", "x"),
    ("A='a # b $HOME'\n", "A", "a # b $HOME"),
    ('A="line\\nnext \\"q\\" \\\\"\n', "A", 'line\nnext "q" \\'),
    ('A="two\nlines"\n', "A", "two\nlines"),
    ("A='it\\'s'\n", "A", "it's"),
    ("A=1\nB=${A}-$A-${C:-dflt}-$$-x\n", "B", "1-1-dflt-$-x"),
    ('A=1\nB="\\$A"\n', "B", "$A"),
    ("A=first\nA=second\n", "A", "second"),
    ("# comment\n\n   # indented comment\nA=1\n", "A", "1"),
    ("A=\n", "A", ""),
    ("A= # not a comment\n", "A", "# not a comment"),
    ('A="v" # comment\n', "A", "v"),
    ("A\n", "A", None),
    ("A=1", "A", "1"),
]


@pytest.mark.parametrize(("text", "key", "expected"), PARSE_CASES)
def test_parse_follows_compose_rules(text: str, key: str, expected: str | None) -> None:
    assert parse_env(text.encode()).get(key) == expected


@pytest.mark.parametrize(
    ("text", "line"),
    [("A=1\nB='open\n", 2), ("A=1\n!B=2\n", 2), ('A="x" y\n', 1), ("A B=1\n", 1)],
)
def test_syntax_errors_name_the_line(text: str, line: int) -> None:
    with pytest.raises(ConfigFileError, match=f"line {line}"):
        parse_env(text.encode())


EDIT_CASES = [
    # (before, key, value, after)
    ("A=old\n", "A", "new", "A=old\n".replace("old", "new")),
    ("A = old # keep me\n", "A", "new", "A = new # keep me\n"),
    ("export A='old'\n", "A", "new", "export A='new'\n"),
    ('A: "old"\r\n', "A", "new", 'A: "new"\r\n'),
    ("A=1\nA=old\n", "A", "new", "A=1\nA=new\n"),
    ("B=1", "A", "new", "B=1\nA=new\n"),
    ("B=1\r\n", "A", "new", "B=1\r\nA=new\r\n"),
    ("A=old\n", "A", "has space #", "A='has space #'\n"),
    ("A='old'\n", "A", "it's", 'A="it\'s"\n'),
    ("A\n", "A", "v", "A=v\n"),
]


@pytest.mark.parametrize(("before", "key", "value", "after"), EDIT_CASES)
def test_set_value_edits_only_the_value(before: str, key: str, value: str, after: str) -> None:
    assert set_value(before.encode(), key, value) == after.encode()


def test_set_value_unchanged_returns_same_bytes() -> None:
    data = b"# c\nexport  A =  'x'  # c\n"
    assert set_value(data, "A", "x") is data


def test_undecodable_bytes_survive_an_edit() -> None:
    data = b"PASSWORD=\xff\xfe\nA=old\n"
    assert set_value(data, "A", "new") == b"PASSWORD=\xff\xfe\nA=new\n"


def test_bad_key_is_refused() -> None:
    with pytest.raises(ConfigFileError):
        set_value(b"", "A B", "x")


# -- properties ------------------------------------------------------------------------------
keys = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
values = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20
)
styles = st.sampled_from(["plain", "single", "double"])
separators = st.sampled_from(["=", " = ", ": ", "= "])
exports = st.sampled_from(["", "export "])
comments = st.sampled_from(["", " # note", "  # x=y"])
simple_values = st.from_regex(r"[A-Za-z0-9._/-]{0,12}", fullmatch=True)


def _render(style: str, value: str) -> str:
    if style == "single":
        return f"'{value}'"
    if style == "double":
        return f'"{value}"'
    return value


@st.composite
def env_files(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A file with comments, blank lines and varied statements, and its expected values."""
    lines, expected = [], {}
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["statement", "statement", "comment", "blank"]))
        if kind == "comment":
            lines.append("# " + draw(simple_values))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "  "])))
        else:
            key, value, style = draw(keys), draw(simple_values), draw(styles)
            statement = f"{draw(exports)}{key}{draw(separators)}" + _render(style, value)
            # compose reads `A= # x` as the value "# x": a comment needs a value before it
            comment = draw(comments) if value or style != "plain" else ""
            lines.append(statement + comment)
            expected[key] = value
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines) + (newline if lines else ""), expected


@given(env_files())
def test_generated_files_parse_to_their_values(file: tuple[str, dict[str, str]]) -> None:
    text, expected = file
    assert {k: v for k, v in parse_env(text).values().items()} == expected


@given(env_files(), keys, values)
def test_set_value_reads_back_and_keeps_everything_else(
    file: tuple[str, dict[str, str]], key: str, value: str
) -> None:
    text, expected = file
    data = text.encode()
    edited = set_value(data, key, value)
    after = parse_env(edited)
    assert after.get(key) == value
    assert {k: v for k, v in after.values().items() if k != key} == {
        k: v for k, v in expected.items() if k != key
    }
    entry = parse_env(data).entry(key)
    if entry is None:
        assert edited.startswith(data.rstrip(b"\r\n"))
        assert len(edited) > len(data)
    else:
        raw = text.encode()
        head = len(text[: entry.value_start].encode())
        tail = len(text[entry.value_end :].encode())
        assert edited[:head] == raw[:head]
        assert edited[len(edited) - tail :] == raw[len(raw) - tail :]


@given(env_files(), keys, values)
def test_set_value_is_idempotent(file: tuple[str, dict[str, str]], key: str, value: str) -> None:
    once = set_value(file[0].encode(), key, value)
    assert set_value(once, key, value) == once
