"""normalize_thumbprint: accepts the artefacts of copy-paste, rejects everything else."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosdoc_certs import ThumbprintError, normalize_thumbprint, thumbprint_of_der
from cosdoc_certs.thumbprints import show_invisible

CLEAN = "3F2504E04F8941D39A0C0305E82C3301A1B2C3D4"
hex_thumbprints = st.text(alphabet="0123456789abcdefABCDEF", min_size=40, max_size=40)
noise = st.sampled_from([" ", ":", "\t", "\u200e", "\u200f", "\ufeff", "\u200b"])


@pytest.mark.parametrize(
    ("pasted", "expected"),
    [
        (CLEAN, CLEAN),
        (CLEAN.lower(), CLEAN),
        ("\u200e" + CLEAN, CLEAN),
        (" ".join(CLEAN[i : i + 2] for i in range(0, 40, 2)), CLEAN),
        (":".join(CLEAN[i : i + 2] for i in range(0, 40, 2)), CLEAN),
        ("\ufeff" + CLEAN + " ", CLEAN),
    ],
)
def test_copy_paste_artefacts_are_removed(pasted: str, expected: str) -> None:
    assert normalize_thumbprint(pasted) == expected


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (CLEAN[:-1], "39 hex digits"),
        (CLEAN + "0", "41 hex digits"),
        ("", "0 hex digits"),
        (CLEAN[:-1] + "G", "'G'"),
        (CLEAN[:-1] + "-", "'-'"),
        (CLEAN + "\n", "U+000A"),
    ],
)
def test_rejections_say_what_is_wrong(bad: str, says: str) -> None:
    with pytest.raises(ThumbprintError, match=re.escape(says)):
        normalize_thumbprint(bad)


@given(hex_thumbprints, st.lists(st.tuples(st.integers(0, 40), noise), max_size=12))
def test_noise_anywhere_normalises_to_the_upper_case_digits(
    digits: str, insertions: list[tuple[int, str]]
) -> None:
    pasted = list(digits)
    for position, char in sorted(insertions, reverse=True):
        pasted.insert(position, char)
    assert normalize_thumbprint("".join(pasted)) == digits.upper()


@given(st.text(max_size=60))
def test_result_is_always_40_upper_hex_or_an_error(text: str) -> None:
    try:
        result = normalize_thumbprint(text)
    except ThumbprintError:
        return
    assert len(result) == 40
    assert set(result) <= set("0123456789ABCDEF")


@given(st.binary(max_size=200))
def test_thumbprint_of_der_is_upper_sha1(der: bytes) -> None:
    assert thumbprint_of_der(der) == hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("\u200eAB 12", "<U+200E>AB 12"),
        ("AB\ufeff\u200f", "AB<U+FEFF><U+200F>"),
        ("plain: æøå", "plain: æøå"),
    ],
)
def test_show_invisible_names_each_invisible_character(value: str, shown: str) -> None:
    assert show_invisible(value) == shown
