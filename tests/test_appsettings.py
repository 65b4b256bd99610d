"""appsettings: .NET-compatible reading, byte-exact edits, thumbprint hygiene, safe diffs."""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cosdoc_certs import AppSettings, ConfigFileError
from cosdoc_certs.appsettings import (
    StringValue,
    edit_diff,
    format_path,
    path_segments,
    same_thumbprint,
    thumbprint_findings,
)

CORPUS = Path(__file__).parent / "appsettings_corpus"
CASES: list[dict[str, Any]] = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))
CLEAN = "3F2504E04F8941D39A0C0305E82C3301A1B2C3D4"
SECRETS = ("S3cret!Pa55", "not-for-your-eyes")
THUMBPRINT_KEY = re.compile(r"thumbprint|avtrykk", re.IGNORECASE)


def _read(name: str) -> AppSettings:
    return AppSettings.parse((CORPUS / name).read_bytes(), source=name)


def _corpus_files(*, broken: bool) -> list[str]:
    return sorted(
        path.relative_to(CORPUS).as_posix()
        for path in CORPUS.rglob("*.json")
        if path.name != "cases.json" and (path.parent.name == "broken") == broken
    )


# --- the corpus, table-driven: file + path -> value / position / findings / error -----------


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case['file']}:{case['path']}")
def test_corpus_case(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(ConfigFileError) as raised:
            _read(case["file"]).get(case["path"])
        assert case["error"] in str(raised.value)
        assert not any(secret in str(raised.value) for secret in SECRETS)
        return
    found = _read(case["file"]).find(case["path"])
    assert found is not None
    assert found.value == case["value"]
    assert found.path == case.get("canonical", found.path)
    assert (found.line, found.column) == (
        case.get("line", found.line),
        case.get("column", found.column),
    )
    if "findings" in case:
        findings = thumbprint_findings(found, case["file"])
        assert [(f.code, f.subject) for f in findings] == [
            (code, case["file"]) for code, _ in case["findings"]
        ]
        for finding, (_, says) in zip(findings, case["findings"], strict=True):
            assert says in finding.message


@pytest.mark.parametrize("name", _corpus_files(broken=False))
def test_corpus_file_unchanged_without_edits(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    assert AppSettings.parse(data, source=name).replace({}) == data


@pytest.mark.parametrize("name", _corpus_files(broken=False))
def test_corpus_thumbprints_rewritten_in_place(name: str) -> None:
    settings = _read(name)
    targets = [value for value in settings.strings() if THUMBPRINT_KEY.search(value.path)]
    assert targets
    after = settings.replace({value.path: CLEAN for value in targets})
    reread = AppSettings.parse(after, source=name)
    rewritten = [value for value in reread.strings() if THUMBPRINT_KEY.search(value.path)]
    assert [value.value for value in rewritten] == [CLEAN] * len(targets)
    assert [thumbprint_findings(value, name) for value in rewritten] == [[]] * len(targets)
    _assert_only_tokens_changed(settings, reread, {value.path for value in targets})
    diff = edit_diff(settings.data, after, source=name)
    changed = [line for line in diff.splitlines()[2:] if not line.startswith("@@")]
    assert len(changed) == 2 * len({value.line for value in targets})
    assert not any(secret in diff for secret in SECRETS)


def test_corpus_covers_the_cosdoc_keys() -> None:
    paths = {(case["file"].split("/")[0], case["path"].lower()) for case in CASES}
    for service in ("digihelse-sender", "digihelse-mottak", "kpr-innsending", "kpr-mottak"):
        assert (service, "$.certsettings.signingthumbprint") in paths
        assert (service, "$.certsettings.encryptionthumbprint") in paths
    for key in ("clientcertthumbprint", "signingcertificatethumbprint", "sslcertificatethumbprint"):
        assert ("authentication", f"$.{key}") in paths
    assert ("skatteintegrasjonapi", "$.maskinportenconfig.sertifikatavtrykk") in paths


def test_corpus_files_have_bom_crlf_and_comments() -> None:
    datas = [(CORPUS / name).read_bytes() for name in _corpus_files(broken=False)]
    assert any(data.startswith(b"\xef\xbb\xbf") for data in datas)
    assert any(not data.startswith(b"\xef\xbb\xbf") for data in datas)
    assert any(b"\r\n" in data for data in datas)
    assert any(b"\r\n" not in data for data in datas)
    assert any(b"//" in data and b"/*" in data for data in datas)
    assert any("\u200e".encode() in data for data in datas)


# --- how .NET reads: comments, trailing commas, case, ':' keys, limits ------------------------


@pytest.mark.parametrize(
    ("document", "path", "expected"),
    [
        ('{"a": "x"}', "$.a", "x"),
        ('{"a": "x",}', "$.A", "x"),
        ('{"a": ["x", "y",],}', "$.a[1]", "y"),
        ('// head\n{ /* a */ "a" : /* c */ "x" /* d */ } // tail', "$.a", "x"),
        ('{"a": "x"} /* closed */', "a", "x"),
        ('{\r"a": "x"\r}', "$.a", "x"),
        ('{"a": "// not a comment /* nor this */"}', "$.a", "// not a comment /* nor this */"),
        ('{"A": {"B": "x"}}', "$.a.b", "x"),
        ('{"A:B": "x"}', "$.a.b", "x"),
        ('{"A": {"B:C": "x"}}', "$.a.b.c", "x"),
        ('{"A": ["x", {"B": "y"}]}', "$.a[1].b", "y"),
        ('{"A": ["x"]}', '$.a."0"', "x"),
        ('{"\\u00c6": "x"}', "$['æ']", "x"),
        ('{"e\\u0301": "x"}', "$['e\u0301']", "x"),
        ('{"a": "\\ud83d\\ude00 \\u00e6\\/\\"\\\\\\b\\f\\n\\r\\t"}', "$.a", '😀 æ/"\\\b\f\n\r\t'),
        ('{"a": "x", "n": -1.5e3, "t": true, "f": false, "z": null, "o": {}, "l": []}', "$.a", "x"),
        ("{" + '"a":' * 0 + '"d": ' + "[" * 63 + '"x"' + "]" * 63 + "}", "$.d" + "[0]" * 63, "x"),
    ],
)
def test_reads_like_dotnet(document: str, path: str, expected: str) -> None:
    for prefix, newline in [(b"", "\n"), (b"\xef\xbb\xbf", "\r\n")]:
        data = prefix + document.replace("\n", newline).encode()
        assert AppSettings.parse(data).get(path) == expected


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (
            "",
            "appsettings.json:1:1: the top level must be an object in braces {...}, found the end",
        ),
        ("[]", "1:1: the top level must be an object in braces {...}, found '['"),
        ('{"a": "x"', "1:10: expected ',' or '}' after a value, found the end of the file"),
        ('{"a": "x"}}', "1:11: unexpected '}' after the closing '}'"),
        ('{"a": "x"},', "1:11: unexpected ','"),
        ("{,}", "1:2: expected a key in double quotes, found ','"),
        ('{"a": [1,,2]}', "1:10: expected a value, found ','"),
        ('{"a": 1,,}', "1:9: expected a key in double quotes, found ','"),
        ("{'a': 1}", "1:2: expected a key in double quotes, found '''"),
        ("{a: 1}", "1:2: expected a key in double quotes, found 'a'"),
        ('{"a" 1}', "1:6: expected ':' after the key, found '1'"),
        ('{"a" /* c */ : 1}', "1:6: '/' is invalid after a property name"),
        ('{"a"// c\n: 1}', "1:5: '/' is invalid after a property name"),
        ('{"a": 01}', "1:7: invalid value"),
        ('{"a": NaN}', "1:7: invalid value"),
        ('{"a": True}', "1:7: invalid value"),
        ('{"a": -}', "1:7: invalid value"),
        ('{"a": 1.}', "1:7: invalid value"),
        ('{"a":\n  "x\n"}', "2:3: string is not closed on its line"),
        ('{"a": "x\ty"}', "1:9: control character U+0009 inside a string"),
        ('{"a": "\\x41"}', "1:8: invalid escape in a string"),
        ('{"a": "\\u12"}', "1:8: invalid escape in a string"),
        ('{"a": "\\udc00"}', "1:7: string has an unpaired surrogate \\udc00"),
        ('{"a": 1 /* never closed }', "1:9: comment /* is never closed"),
        ('{"a": 1 / 2}', "1:9: unexpected '/'"),
        ('{"a": "x",\n "A": "y"}', "2:2: duplicate key 'A' (first at 1:2)"),
        ('{"a": {}, "A": {}}', "1:11: duplicate key 'A' (first at 1:2)"),
        ('{"a": {"b": 1}, "A:B": 2}', "1:24: duplicate setting $['A:B'] (first at 1:13 as $.a.b)"),
        ('{"æ": 1, "Æ": 2}', "1:10: duplicate key 'Æ' (first at 1:2)"),
        ("{\u00a0}", "1:2: expected a key in double quotes, found U+00A0"),
        ('{"d": ' + "[" * 64 + "]" * 64 + "}", "1:70: nested deeper than 64 levels"),
    ],
)
def test_malformed_files_name_line_and_column(document: str, says: str) -> None:
    with pytest.raises(ConfigFileError) as raised:
        AppSettings.parse(document.encode())
    assert says in str(raised.value)


@pytest.mark.parametrize("filler", [b"x", b"\\n", b"x\\u00e6"])
def test_long_unclosed_string_fails_fast(filler: bytes) -> None:
    with pytest.raises(ConfigFileError, match="1:7: string is not closed on its line"):
        AppSettings.parse(b'{"a": "' + filler * 100_000 + b"\n}")


def test_position_columns_count_characters_not_bytes_or_bom() -> None:
    data = '\ufeff{"æøå": "x",\r\n "b": "\u200ey"}'.encode()
    settings = AppSettings.parse(data)
    assert [(value.path, value.line, value.column) for value in settings.strings()] == [
        ("$['æøå']", 1, 9),
        ("$.b", 2, 7),
    ]
    assert [data[value.start : value.end] == value.raw for value in settings.strings()] == [
        True,
        True,
    ]


def test_utf16_and_non_utf8_files_are_refused_clearly() -> None:
    with pytest.raises(ConfigFileError, match="UTF-16 or UTF-32 encoded — save it as UTF-8"):
        AppSettings.parse('{"a": "x"}'.encode("utf-16-le"))
    with pytest.raises(ConfigFileError, match=r"1:8: byte 0xFF is not UTF-8"):
        AppSettings.parse(b'{"a": "\xff"}')


# --- paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("$..SigningThumbprint", "is not a single key or index"),
        ("$.CertSettings.*", "is not a single key or index"),
        ("$.Items[*]", "is not a single key or index"),
        ("$.Items[0:2]", "is not a single key or index"),
        ("$.Items[-1]", "is not a single key or index"),
        ("$.Items[0,1]", "is not a single key or index"),
        ("$.a,b", "is not a single key or index"),
        ("$[?(@.a)]", "cannot be parsed"),
        ("CertSettings:SigningThumbprint", "like $.CertSettings.SigningThumbprint"),
    ],
)
def test_unsupported_path_expressions_are_rejected(path: str, says: str) -> None:
    settings = AppSettings.parse(b'{"Items": ["x"], "a": "y"}')
    with pytest.raises(ConfigFileError) as raised:
        settings.get(path)
    assert says in str(raised.value)
    assert path in str(raised.value)
    assert settings.get("$.a") == "y"  # the path parser is reused after an error


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        (("CertSettings", "SigningThumbprint"), "$.CertSettings.SigningThumbprint"),
        (("Items", 0, "Name"), "$.Items[0].Name"),
        (("a:b",), "$['a:b']"),
        (("it's", "back\\slash"), "$['it\\'s']['back\\\\slash']"),
        (("where",), "$['where']"),
        (("0",), "$['0']"),
    ],
)
def test_canonical_paths(segments: tuple[str | int, ...], expected: str) -> None:
    assert format_path(segments) == expected


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("$.CertSettings.SigningThumbprint", ("CertSettings", "SigningThumbprint")),
        ("CertSettings.SigningThumbprint", ("CertSettings", "SigningThumbprint")),
        ("$.Items[0].Name", ("Items", 0, "Name")),
        ("$['a:b']['it\\'s']", ("a:b", "it's")),
        ("$", ()),
    ],
)
def test_path_segments(path: str, segments: tuple[str | int, ...]) -> None:
    assert path_segments(path) == segments


def test_find_is_none_for_missing_and_raises_for_non_strings() -> None:
    settings = AppSettings.parse(b'{"a": {"b": 1}}')
    assert settings.find("$.a.c") is None
    assert settings.find("$.x.y.z") is None
    with pytest.raises(ConfigFileError, match=r"\$\.a\.b is a number, not a string"):
        settings.find("$.A.B")


# --- replace ----------------------------------------------------------------------------------


def test_replace_changes_only_the_targeted_bytes() -> None:
    data = (
        b'\xef\xbb\xbf{\r\n  // keep me\r\n  "certSettings": {\r\n'
        b'    "SigningThumbprint": "\\u200e4f 89",  /* and me */\r\n'
        b'    "EncryptionThumbprint": "old",\r\n  },\r\n  "Url": "https:\\/\\/x",\r\n}\r\n'
    )
    after = AppSettings.parse(data).replace(
        {
            "$.CertSettings.SigningThumbprint": CLEAN,
            "$.certsettings.encryptionthumbprint": 'n"e\\w\næ',
        }
    )
    assert after == data.replace(b'"\\u200e4f 89"', f'"{CLEAN}"'.encode()).replace(
        b'"old"', '"n\\"e\\\\w\\næ"'.encode()
    )


def test_replace_with_the_same_text_keeps_the_escapes() -> None:
    data = b'{"Url": "https:\\/\\/x", "T": "\\u00c6"}'
    assert AppSettings.parse(data).replace({"$.Url": "https://x", "$.t": "Æ"}) == data


@pytest.mark.parametrize(
    ("new_values", "says"),
    [
        (
            {"$.CertSettings.SSLCertificateThumbprint": CLEAN},
            "appsettings.json: no setting $.CertSettings.SSLCertificateThumbprint "
            "($.CertSettings has keys SigningThumbprint, Port)",
        ),
        (
            {"$.CertSettings.Port": "443"},
            "appsettings.json:1:53: $.CertSettings.Port is a number, not a string",
        ),
        (
            {"$.Other.Thumbprint": CLEAN},
            "no setting $.Other.Thumbprint (the top level has keys CertSettings, Db)",
        ),
        (
            {
                "$.CertSettings.SigningThumbprint": CLEAN,
                "$.certsettings.signingthumbprint": "0" * 40,
            },
            "two different new values for $.CertSettings.SigningThumbprint",
        ),
        (
            {"$.CertSettings.SigningThumbprint": "\ud800"},
            "the new value for $.CertSettings.SigningThumbprint has an unpaired surrogate",
        ),
    ],
)
def test_replace_refuses_to_create_or_guess(new_values: dict[str, str], says: str) -> None:
    data = (
        b'{"CertSettings": {"SigningThumbprint": "x", "Port": 443}, "Db": "Password=S3cret!Pa55"}'
    )
    with pytest.raises(ConfigFileError) as raised:
        AppSettings.parse(data).replace(new_values)
    assert says in str(raised.value)
    assert "S3cret" not in str(raised.value)


def test_same_value_under_two_spellings_is_one_edit() -> None:
    settings = AppSettings.parse(b'{"A": {"B": "x"}}')
    assert settings.replace({"$.A.B": "y", "$.a.b": "y"}) == b'{"A": {"B": "y"}}'
    joined = AppSettings.parse(b'{"A:B": "x"}')
    assert joined.replace({"$.a.b": "y"}) == b'{"A:B": "y"}'


# --- hygiene and comparison -------------------------------------------------------------------


def _value(text: str) -> StringValue:
    found = AppSettings.parse(f'{{"T": {json.dumps(text)}}}'.encode()).find("$.T")
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        (CLEAN, []),
        ("\u200e" + CLEAN, ["thumbprint-invisible-char"]),
        ("\u200e" + CLEAN + "\ufeff", ["thumbprint-invisible-char", "thumbprint-invisible-char"]),
        (CLEAN[:20] + " " + CLEAN[20:], ["thumbprint-separators"]),
        (CLEAN.lower(), ["thumbprint-lowercase"]),
        (CLEAN[:-1], ["thumbprint-malformed"]),
        ("", ["thumbprint-malformed"]),
        (
            "\u200e" + CLEAN[:-1].lower() + "-",
            ["thumbprint-invisible-char", "thumbprint-lowercase", "thumbprint-malformed"],
        ),
    ],
)
def test_thumbprint_findings_codes(text: str, codes: list[str]) -> None:
    assert [finding.code for finding in thumbprint_findings(_value(text), "svc")] == codes


def test_invisible_char_finding_names_char_and_position() -> None:
    value = _value("AB\u200fCD")  # {"T": "AB\u200fCD"}: the escape starts at column 10
    [invisible, *_] = thumbprint_findings(value, "svc")
    assert invisible.message.startswith(
        "$.T has an invisible U+200F RIGHT-TO-LEFT MARK at line 1, column 10 (written as \\u200f)"
    )


@pytest.mark.parametrize(
    ("configured", "thumbprint", "same"),
    [
        (CLEAN, CLEAN, True),
        ("\u200e" + CLEAN.lower(), CLEAN, True),
        (" ".join(CLEAN[i : i + 2] for i in range(0, 40, 2)), CLEAN.lower(), True),
        (CLEAN[:-1] + "5", CLEAN, False),
        (CLEAN[:-1], CLEAN, False),
        ("not a thumbprint", CLEAN, False),
    ],
)
def test_same_thumbprint(configured: str, thumbprint: str, same: bool) -> None:
    assert same_thumbprint(configured, thumbprint) is same


# --- diffs, reprs and secrets -----------------------------------------------------------------


def test_edit_diff_shows_changed_lines_only() -> None:
    before = (CORPUS / "digihelse-sender/appsettings.json").read_bytes()
    after = AppSettings.parse(before).replace({"$.CertSettings.EncryptionThumbprint": CLEAN})
    assert edit_diff(before, after, source="appsettings.json") == (
        "--- appsettings.json (before)\n"
        "+++ appsettings.json (after)\n"
        "@@ -14 +14 @@\n"
        '-    "EncryptionThumbprint": "<U+200E>9A1B2C3D4E5F60718293A4B5C6D7E8F901234567",\n'
        f'+    "EncryptionThumbprint": "{CLEAN}",'
    )
    assert edit_diff(before, before, source="appsettings.json") == ""


def test_edit_diff_hides_secrets_on_changed_and_context_lines() -> None:
    before = (
        b'{"ConnectionStrings": {"Db": "Server=db;Password=S3cret!Pa55"}, "Api": "x", "T": "A"}'
    )
    after = AppSettings.parse(before).replace({"$.T": CLEAN})
    diff = edit_diff(before, after, source="appsettings.json", context=3)
    assert '"Db": "<hidden>"' in diff
    assert '"T": "' + CLEAN in diff
    assert "S3cret" not in diff
    changed_secret = AppSettings.parse(before).replace({"$.ConnectionStrings.Db": "Password=other"})
    assert '"<hidden, changed>"' in edit_diff(before, changed_secret, source="appsettings.json")


def test_reprs_do_not_show_values() -> None:
    settings = _read("digihelse-sender/appsettings.json")
    assert repr(settings) == "<AppSettings digihelse-sender/appsettings.json: 10 values>"
    secret = settings.find("$.ConnectionStrings.DigihelseDb")
    assert secret is not None
    assert "S3cret" not in repr(secret)
    assert repr(AppSettings.parse(b'{"a": "b"}')) == "<AppSettings appsettings.json: 1 value>"


def _error_text(name: str, path: str) -> str:
    try:
        _read(name).get(path)
    except ConfigFileError as error:
        return str(error)
    return ""


@pytest.mark.parametrize("name", _corpus_files(broken=True) + _corpus_files(broken=False))
def test_errors_on_files_with_passwords_never_show_them(name: str) -> None:
    paths = ("$.ConnectionStrings", "$.ConnectionStrings.Db.X", "$.CertSettings.Nope")
    errors = [_error_text(name, path) for path in paths]
    assert all(errors)
    assert not any(secret in error for secret in SECRETS for error in errors)


# --- helpers shared with the property tests ---------------------------------------------------


def _assert_only_tokens_changed(before: AppSettings, after: AppSettings, edited: set[str]) -> None:
    """Every byte outside the edited string tokens is the same, and so is every other value."""
    old, new = before.strings(), after.strings()
    assert [value.path for value in old] == [value.path for value in new]
    old_end = new_end = 0
    for old_value, new_value in zip(old, new, strict=True):
        assert before.data[old_end : old_value.start] == after.data[new_end : new_value.start]
        if old_value.path not in edited:
            assert (old_value.raw, old_value.value) == (new_value.raw, new_value.value)
        old_end, new_end = old_value.end, new_value.end
    assert before.data[old_end:] == after.data[new_end:]


# --- property tests: generated documents with comments, trailing commas, BOM, CRLF, escapes ---

_KEY_CHARS = string.ascii_letters + string.digits + "_-. $'\"\\/æøåÆØÅ\u200e"
_COMMENTS = ('"x": 1, }', "{ [ , : ", "æ\u200e ø", "// inside", ' "Key": "value" ')
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n"}
_SHORT_ESCAPES |= {"\r": "\\r", "\t": "\\t"}

_scalars = st.one_of(
    st.text(max_size=24),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
_trees = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(_KEY_CHARS, max_size=8), children, max_size=4)
    ),
    max_leaves=24,
)


@dataclass(frozen=True)
class _Document:
    data: bytes
    strings: list[tuple[str, str]]  # (canonical path, value) in file order
    scalars: int


@st.composite
def _documents(draw: st.DrawFn) -> _Document:
    tree = draw(st.dictionaries(st.text(_KEY_CHARS, max_size=8), _trees, max_size=6))
    writer = _Writer(draw(st.randoms(use_true_random=False)), draw(st.sampled_from(["\n", "\r\n"])))
    text = writer.gap() + writer.value(_unique_keys(tree), ()) + writer.gap()
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return _Document(bom + text.encode(), writer.strings, writer.scalars)


def _unique_keys(tree: Any) -> Any:
    """The tree without keys that equal an earlier sibling case-insensitively."""
    if isinstance(tree, list):
        return [_unique_keys(item) for item in tree]
    if not isinstance(tree, dict):
        return tree
    kept: dict[str, Any] = {}
    for key, value in tree.items():
        if key.upper() not in {other.upper() for other in kept}:
            kept[key] = _unique_keys(value)
    return kept


class _Writer:
    """Writes a tree as an appsettings.json a person might have edited by hand."""

    def __init__(self, rnd: random.Random, newline: str) -> None:
        self.rnd, self.newline = rnd, newline
        self.strings: list[tuple[str, str]] = []
        self.scalars = 0

    def gap(self) -> str:
        comment = self.rnd.choice(_COMMENTS)
        return self.rnd.choice(
            [
                "",
                " ",
                "\t",
                self.newline + "  ",
                f" /* {comment} */ ",
                f" // {comment}{self.newline}",
            ]
        )

    def space(self) -> str:
        """Between a property name and its ':' .NET allows whitespace only."""
        return self.rnd.choice(["", " ", "\t", self.newline + "  "])

    def value(self, value: Any, segments: tuple[str | int, ...]) -> str:
        if isinstance(value, dict):
            items = [
                f"{self.gap()}{self.string(key)}{self.space()}:{self.gap()}"
                f"{self.value(item, (*segments, key))}{self.gap()}"
                for key, item in value.items()
            ]
            return "{" + self.items(items) + "}"
        if isinstance(value, list):
            items = [
                self.gap() + self.value(item, (*segments, index)) + self.gap()
                for index, item in enumerate(value)
            ]
            return "[" + self.items(items) + "]"
        self.scalars += 1
        if isinstance(value, str):
            self.strings.append((format_path(segments), value))
            return self.string(value)
        return json.dumps(value)

    def items(self, items: list[str]) -> str:
        trailing = "," + self.gap() if items and self.rnd.random() < 0.3 else ""
        return ",".join(items) + trailing or self.gap()

    def string(self, text: str) -> str:
        return '"' + "".join(self.char(char) for char in text) + '"'

    def char(self, char: str) -> str:
        roll = self.rnd.random()
        if char in _SHORT_ESCAPES and (roll < 0.7 or char in '"\\'):
            return _SHORT_ESCAPES[char]
        if char == "/" and roll < 0.5:
            return "\\/"
        if ord(char) < 0x20 or roll < 0.15:
            return "".join(self.escape(unit) for unit in _utf16_units(char))
        return char

    def escape(self, unit: int) -> str:
        digits = f"{unit:04x}"
        return "\\u" + (digits.upper() if self.rnd.random() < 0.5 else digits)


def _utf16_units(char: str) -> list[int]:
    encoded = char.encode("utf-16-be")
    return [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]


def _shout(path: str) -> str:
    """The same path in other letter case (ASCII only, where upper-casing is one-to-one)."""
    return path.upper() if path.isascii() else path


_PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_PROPERTY_SETTINGS
@given(_documents())
def test_property_unedited_file_writes_back_identically(document: _Document) -> None:
    parsed = AppSettings.parse(document.data)
    assert parsed.replace({}) == document.data
    assert len(parsed) == document.scalars
    assert [(value.path, value.value) for value in parsed.strings()] == document.strings
    for value in parsed.strings():
        assert document.data[value.start : value.end] == value.raw
        assert json.loads(value.raw) == value.value
        assert parsed.get(_shout(value.path)) == value.value
    assert parsed.replace({value.path: value.value for value in parsed.strings()}) == document.data


@_PROPERTY_SETTINGS
@given(_documents(), st.data())
def test_property_edit_changes_only_the_edited_tokens(
    document: _Document, data: st.DataObject
) -> None:
    before = AppSettings.parse(document.data)
    assume(before.strings())
    chosen = data.draw(
        st.lists(st.sampled_from(before.strings()), min_size=1, unique_by=lambda v: v.start)
    )
    new_values = {value.path: data.draw(st.text(max_size=24)) for value in chosen}
    after = AppSettings.parse(
        before.replace({_shout(path): text for path, text in new_values.items()})
    )
    assert all(after.get(path) == text for path, text in new_values.items())
    _assert_only_tokens_changed(before, after, set(new_values))


@_PROPERTY_SETTINGS
@given(_documents(), st.data())
def test_property_damaged_files_fail_with_config_file_error_only(
    document: _Document, data: st.DataObject
) -> None:
    damaged = bytearray(document.data)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(damaged)))
        if data.draw(st.booleans()) and position < len(damaged):
            del damaged[position]
        else:
            damaged.insert(position, data.draw(st.sampled_from(b'{}[],:"/*\\ \nx0\x00\xe6')))
    assert _PARSE_ERROR.fullmatch(_parse_error(bytes(damaged)))


@_PROPERTY_SETTINGS
# jsonpath-ng reads the key "*" as a wildcard even when quoted, so no path can name it.
@given(st.text().filter(lambda key: key != "*"))
def test_property_canonical_path_finds_any_key(key: str) -> None:
    document = json.dumps({"Section": {key: "found"}}).encode()
    assert AppSettings.parse(document).get(format_path(("Section", key))) == "found"


@given(st.binary(max_size=200))
def test_property_random_bytes_never_crash(data: bytes) -> None:
    assert _PARSE_ERROR.fullmatch(_parse_error(data))


_PARSE_ERROR = re.compile(r"(appsettings\.json(:\d+:\d+)?: .+ — .+)?")


def _parse_error(data: bytes) -> str:
    try:
        AppSettings.parse(data)
    except ConfigFileError as error:
        return str(error)
    return ""


def test_deep_nesting_is_refused_without_exhausting_the_stack() -> None:
    with pytest.raises(ConfigFileError, match="nested deeper than 64 levels"):
        AppSettings.parse(b'{"a": ' + b"[" * 100_000)
