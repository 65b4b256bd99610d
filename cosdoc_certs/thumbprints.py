"""Thumbprints: the SHA-1 of a certificate's DER, as Windows shows and configs store it.

People copy thumbprints out of the Windows certificate dialog, which (before Server 2019)
prepends an invisible LEFT-TO-RIGHT MARK; spaces, colons and lower case also turn up.
:func:`normalize_thumbprint` accepts exactly those artefacts and nothing else.
"""

from __future__ import annotations

import hashlib
import string
import unicodedata

from cosdoc_certs.errors import ThumbprintError

THUMBPRINT_LENGTH = 40
_HEX_DIGITS = frozenset(string.hexdigits)
_SEPARATORS = frozenset(" :\t")


def thumbprint_of_der(der: bytes) -> str:
    """The Windows thumbprint of a DER-encoded certificate: SHA-1, upper-case hex."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def is_invisible(char: str) -> bool:
    """True for Unicode format characters (category Cf) such as U+200E and U+FEFF."""
    return unicodedata.category(char) == "Cf"


def show_invisible(value: str) -> str:
    """``value`` with each invisible character written as ``<U+200E>`` so a person sees it."""
    return "".join(f"<U+{ord(char):04X}>" if is_invisible(char) else char for char in value)


def normalize_thumbprint(value: str) -> str:
    """Return ``value`` as 40 upper-case hex digits, or raise :class:`ThumbprintError`.

    Drops Unicode format characters (U+200E, U+200F, U+FEFF, ...), spaces, tabs and colons;
    any other character, or a length other than 40 hex digits afterwards, is rejected.
    """
    digits = []
    for position, char in enumerate(value):
        if char in _HEX_DIGITS:
            digits.append(char)
        elif not (char in _SEPARATORS or is_invisible(char)):
            raise ThumbprintError(
                f"thumbprint has the character {char!r} (U+{ord(char):04X}) at position "
                f"{position + 1}",
                "a thumbprint is 40 hex digits (0-9, A-F); copy it again from the certificate",
            )
    if len(digits) != THUMBPRINT_LENGTH:
        raise ThumbprintError(
            f"thumbprint has {len(digits)} hex digits, expected {THUMBPRINT_LENGTH}",
            "copy the whole thumbprint (SHA-1) of the certificate, not its serial number",
        )
    return "".join(digits).upper()
