"""Where a SvarUT installation keeps its nginx container's files on the Linux host.

Two layouts are common: *single* (one SvarUT installation: ``/usr/containers/svarut`` with
``prod.env`` beside the compose file and the certificate files in ``persistent/``) and
*samdrift* (several SvarUT installations sharing one nginx: ``/usr/containers/nginx`` with
``prod.env`` itself in ``persistent/``). Customers deviate, so the root folder, the layout
and the env keys can all be given explicitly.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace

from cosdoc_certs.errors import InputError

__all__ = ["CERT_KEY", "KEY_KEY", "LAYOUTS", "SAMDRIFT", "SINGLE", "Layout", "candidate_layouts"]

CERT_KEY = "SSL_CERT_FILENAME"
KEY_KEY = "SSL_CERT_KEY_FILENAME"


@dataclass(frozen=True)
class Layout:
    """A compose folder (``root``), its env file and its certificate folder (both relative)."""

    name: str
    root: str
    env_file: str
    files_dir: str = "persistent"
    cert_key: str = CERT_KEY
    key_key: str = KEY_KEY

    @property
    def env_path(self) -> str:
        """The absolute path of ``prod.env``."""
        return posixpath.join(self.root, self.env_file)

    @property
    def files_path(self) -> str:
        """The absolute path of the folder that holds the certificate files."""
        return posixpath.join(self.root, self.files_dir)

    def file_path(self, name: str) -> str:
        """The absolute path of the certificate file ``name`` (as prod.env names it)."""
        return posixpath.join(self.files_path, name)

    def with_root(self, root: str) -> Layout:
        """The same layout under another compose folder."""
        return replace(self, root=root.rstrip("/") or "/")

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready form."""
        return {
            "name": self.name,
            "root": self.root,
            "env_path": self.env_path,
            "files_path": self.files_path,
            "cert_key": self.cert_key,
            "key_key": self.key_key,
        }


SINGLE = Layout("single", "/usr/containers/svarut", "prod.env")
SAMDRIFT = Layout("samdrift", "/usr/containers/nginx", "persistent/prod.env")
LAYOUTS = {layout.name: layout for layout in (SINGLE, SAMDRIFT)}


def candidate_layouts(name: str | None = None, root: str | None = None) -> tuple[Layout, ...]:
    """The layouts to look for: one when ``name`` is given, else both; under ``root`` if set."""
    if name is not None and name not in LAYOUTS:
        raise InputError(f"unknown layout {name!r}", f"use one of: {', '.join(LAYOUTS)}")
    chosen = (LAYOUTS[name],) if name else tuple(LAYOUTS.values())
    if root is None:
        return chosen
    if not root.startswith("/"):
        raise InputError(
            f"the root {root!r} is not an absolute path", "give e.g. /usr/containers/svarut"
        )
    return tuple(layout.with_root(root) for layout in chosen)
