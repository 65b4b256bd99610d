"""The base of the project's string-valued enums (roles, change kinds, journal states)."""

from __future__ import annotations

import enum

__all__ = ["TextEnum"]


class TextEnum(str, enum.Enum):
    """A str enum whose text is its value, in ``str()``, f-strings and JSON alike."""

    def __str__(self) -> str:
        return str(self.value)
