"""Script twins: the Python stand-ins that run the project's PowerShell scripts in the lab.

The lab's WinRM endpoint does not interpret PowerShell. Each project script
(``cosdoc_certs/windows/scripts/*.ps1``) starts with a marker line
``# cosdoc-certs-script: <name>``; its twin is a Python handler registered under that name
that takes the script's parameters, reads or changes the simulated
:class:`~cosdoc_certs.lab.model.CosDocServer`, and answers what the real script would answer
on a Windows server.

A twin lives in a module of this package that defines
``register(registry: ScriptRegistry, server: CosDocServer) -> None`` and is listed in
:data:`TWIN_MODULES`. :func:`register_twins` registers them all, plus pypsrp's own
``Client.copy``/``Client.fetch`` scripts against the server's file system.
"""

from __future__ import annotations

import importlib
import logging

from cosdoc_certs.lab.model import CosDocServer, PathNotFoundError
from cosdoc_certs.lab.winrm import ScriptRegistry, register_pypsrp_file_transfer

logger = logging.getLogger(__name__)

TWIN_MODULES: tuple[str, ...] = ("gather", "apply")
"""Modules of this package (names relative to it) whose ``register`` adds a script twin."""


def register_twins(registry: ScriptRegistry, server: CosDocServer) -> list[str]:
    """Register every script twin against ``server``; returns the script names now known."""
    for module_name in TWIN_MODULES:
        module = importlib.import_module(f"{__name__}.{module_name}")
        module.register(registry, server)
    register_pypsrp_file_transfer(
        registry,
        read=lambda path: _read(server, path),
        write=lambda path, data: _write(server, path, data),
    )
    names = registry.names()
    logger.debug("lab scripts registered: %s", ", ".join(names))
    return names


def _read(server: CosDocServer, path: str) -> bytes:
    try:
        return server.files.read(path)
    except PathNotFoundError as error:
        raise FileNotFoundError(error.message) from None


def _write(server: CosDocServer, path: str, data: bytes) -> str:
    server.files.write(path, data)
    return path
