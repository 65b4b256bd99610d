"""How the objects a user holds show themselves: ``print``, IPython's terminal, Jupyter's HTML.

Every result object (bundle, certificate, status, plan, rotation result, verify report...)
has a ``to_text()``. :class:`Displayed` derives from it ``__str__`` (what ``print`` shows),
``_repr_pretty_`` (what IPython's terminal shows for a bare expression: the text, not the
one-line ``repr``) and a default ``_repr_html_`` (the text, preformatted). Objects with a
table in them build their HTML with :func:`html_table`; :func:`html_text` escapes a value.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Displayed", "html_list", "html_table", "html_text"]


class Displayed:
    """Mixin: ``print(x)``, IPython's ``x`` and Jupyter's ``x`` all show ``x.to_text()``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # IPython's printer takes the first class in the MRO with `_repr_pretty_` or
        # `__repr__` in its own namespace: a subclass's `__repr__` would hide the mixin's
        super().__init_subclass__(**kwargs)
        if "_repr_pretty_" not in cls.__dict__:
            cls._repr_pretty_ = Displayed._repr_pretty_  # type: ignore[method-assign]

    def to_text(self) -> str:
        """The object as text for a terminal (each class says what it holds)."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's terminal display: the text (``repr`` when the object refers to itself)."""
        printer.text(repr(self) if cycle else self.to_text())

    def _repr_html_(self) -> str:
        return f"<pre>{html_text(self.to_text())}</pre>"


def html_text(value: object) -> str:
    """``str(value)`` escaped for HTML."""
    return html.escape(str(value))


def html_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain HTML table: one header row, then one row per item (cells escaped)."""
    head = "".join(f"<th>{html_text(title)}</th>" for title in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html_text(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def html_list(items: Iterable[object]) -> str:
    """An HTML bullet list of ``items`` (empty text when there are none)."""
    entries = "".join(f"<li>{html_text(item)}</li>" for item in items)
    return f"<ul>{entries}</ul>" if entries else ""
