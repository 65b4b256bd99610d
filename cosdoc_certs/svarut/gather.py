"""Gather the facts of a SvarUT host: layout, prod.env, certificate files, containers, TLS.

Everything is read in parallel over one connection (bounded channels): the env file of each
candidate layout (to detect which one the host has), the certificate file prod.env names,
the certificate folder's listing, the key file's mode, ``docker compose ps`` and the
certificate the TLS endpoint serves. The facts are plain data for the pure planner.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cosdoc_certs.display import Displayed
from cosdoc_certs.envfile import EnvFile, parse_env
from cosdoc_certs.errors import RemoteError
from cosdoc_certs.svarut.connection import HostConnection
from cosdoc_certs.svarut.layout import Layout, candidate_layouts
from cosdoc_certs.thumbprints import thumbprint_of_der
from cosdoc_certs.tls import ServedCertificate, fetch_certificate_async

__all__ = [
    "ContainerState",
    "Endpoint",
    "SvarutFacts",
    "compose_argv",
    "gather",
    "parse_compose_ps",
    "read_containers",
    "read_file",
]

logger = logging.getLogger(__name__)

_MISSING_MARKERS = ("No such file or directory", "Not a directory")


@dataclass(frozen=True)
class Endpoint:
    """Where the nginx container serves TLS, as seen from here (SNI name optional)."""

    host: str
    port: int = 443
    server_name: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ContainerState:
    """One container of the compose project, as ``docker compose ps -a`` reports it."""

    name: str
    service: str
    state: str
    exit_code: int | None = None

    @property
    def running(self) -> bool:
        """True while the container runs."""
        return self.state == "running"

    def __str__(self) -> str:
        code = f" (exit {self.exit_code})" if self.exit_code and not self.running else ""
        return f"{self.name} {self.state}{code}"


def parse_compose_ps(output: str) -> tuple[ContainerState, ...]:
    """Parse ``docker compose ps --format json``: a JSON array (old) or one object per line."""
    text = output.strip()
    if not text:
        return ()
    try:
        loaded = json.loads(text) if text.startswith("[") else None
        items = loaded if loaded is not None else [json.loads(line) for line in text.splitlines()]
    except ValueError as error:
        raise RemoteError(
            f"cannot read the output of docker compose ps: {error}",
            "run `docker compose ps --format json` on the host and check its output",
        ) from error
    return tuple(
        ContainerState(
            name=str(item.get("Name", "")),
            service=str(item.get("Service", "")),
            state=str(item.get("State", "")).lower(),
            exit_code=item.get("ExitCode"),
        )
        for item in items
        if isinstance(item, dict)
    )


def compose_argv(layout: Layout, *args: str) -> list[str]:
    """``docker compose --env-file <env> ARGS`` as run in the layout's compose folder."""
    return ["docker", "compose", "--env-file", layout.env_file, *args]


async def read_containers(connection: HostConnection, layout: Layout) -> tuple[ContainerState, ...]:
    """The compose project's containers (``docker compose ps -a --format json``)."""
    result = await connection.run(
        compose_argv(layout, "ps", "-a", "--format", "json"), cwd=layout.root
    )
    return parse_compose_ps(result.text())


async def read_file(connection: HostConnection, path: str) -> bytes | None:
    """A file's bytes (read with sudo), or None when it does not exist."""
    result = await connection.run(["cat", "--", path], check=False)
    if result.ok:
        return result.stdout
    if any(marker in result.stderr for marker in _MISSING_MARKERS):
        return None
    reason = result.stderr or f"exit {result.returncode}"
    raise RemoteError(
        f"{connection.host}: cannot read {path}: {reason}",
        "check the path and that the login user may use sudo",
    )


def _chain_of(data: bytes | None) -> tuple[x509.Certificate, ...]:
    """The certificates in a PEM file, in file order (empty when unreadable)."""
    if not data:
        return ()
    try:
        return tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        logger.warning("the certificate file is not PEM")
        return ()


@dataclass(frozen=True)
class SvarutFacts(Displayed):
    """What a SvarUT host looks like now. ``env_bytes`` may hold passwords: never shown."""

    host: str
    layout: Layout
    env_bytes: bytes = field(repr=False)
    files: tuple[str, ...]
    current_chain: tuple[x509.Certificate, ...] = field(repr=False)
    key_mode: str | None
    containers: tuple[ContainerState, ...]
    endpoint: Endpoint
    served: ServedCertificate | None
    served_error: str | None = None
    gathered: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def env(self) -> EnvFile:
        """prod.env parsed."""
        return parse_env(self.env_bytes)

    @property
    def env_sha256(self) -> str:
        """SHA-256 of prod.env as read (compare-and-swap before writing it)."""
        return hashlib.sha256(self.env_bytes).hexdigest()

    @property
    def cert_filename(self) -> str | None:
        """The certificate file prod.env names."""
        return self.env.get(self.layout.cert_key)

    @property
    def key_filename(self) -> str | None:
        """The key file prod.env names."""
        return self.env.get(self.layout.key_key)

    @property
    def current_leaf(self) -> x509.Certificate | None:
        """The first certificate of the file prod.env names (the leaf nginx serves)."""
        return self.current_chain[0] if self.current_chain else None

    @property
    def current_thumbprint(self) -> str | None:
        """Thumbprint of the configured leaf."""
        leaf = self.current_leaf
        return thumbprint_of_der(leaf.public_bytes(Encoding.DER)) if leaf is not None else None

    @property
    def served_thumbprint(self) -> str | None:
        """Thumbprint of the certificate the endpoint serves (None when no handshake)."""
        return self.served.thumbprint if self.served else None

    @property
    def all_running(self) -> bool:
        """True when the project has containers and all of them run."""
        return bool(self.containers) and all(c.running for c in self.containers)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (no file contents)."""
        leaf = self.current_leaf
        return {
            "host": self.host,
            "layout": self.layout.to_dict(),
            "env_sha256": self.env_sha256,
            "cert_filename": self.cert_filename,
            "key_filename": self.key_filename,
            "key_mode": self.key_mode,
            "current": None
            if leaf is None
            else {
                "thumbprint": self.current_thumbprint,
                "subject": leaf.subject.rfc4514_string(),
                "issuer": leaf.issuer.rfc4514_string(),
                "not_after": leaf.not_valid_after_utc.isoformat(),
                "chain_length": len(self.current_chain),
            },
            "endpoint": str(self.endpoint),
            "served_thumbprint": self.served_thumbprint,
            "served_error": self.served_error,
            "containers": [str(c) for c in self.containers],
            "gathered": self.gathered.isoformat(),
        }

    def to_text(self) -> str:
        """A short report for a terminal."""
        data = self.to_dict()
        current = data["current"] or {}
        served = self.served_thumbprint or f"nothing ({self.served_error})"
        lines = [
            f"SvarUT host {self.host} — layout {self.layout.name} at {self.layout.root}",
            f"  prod.env:   {self.layout.env_path}",
            f"  cert file:  {self.cert_filename} ({current.get('thumbprint', 'unreadable')})",
            f"  key file:   {self.key_filename} (mode {self.key_mode or '?'})",
        ]
        if current:
            lines.append(f"  issuer:     {current['issuer']}")
            lines.append(f"  expires:    {current['not_after']}")
        lines.append(f"  served:     {served} at {self.endpoint}")
        lines.append(f"  containers: {', '.join(data['containers']) or 'none'}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.to_text())}</pre>"

    def __repr__(self) -> str:
        return (
            f"<SvarutFacts {self.host} {self.layout.name} cert={self.cert_filename} "
            f"served={self.served_thumbprint}>"
        )


async def _detect(connection: HostConnection, layouts: tuple[Layout, ...]) -> tuple[Layout, bytes]:
    """The one candidate layout whose env file exists, with that file's bytes."""
    found = await asyncio.gather(*(read_file(connection, c.env_path) for c in layouts))
    present = [
        (layout, data) for layout, data in zip(layouts, found, strict=True) if data is not None
    ]
    if not present:
        looked = " or ".join(layout.env_path for layout in layouts)
        raise RemoteError(
            f"no SvarUT installation on {connection.host}: no {looked}",
            "check the paths on the host and give `SvarutTarget.root` (and `SvarutTarget.layout`)",
        )
    if len(present) > 1:
        raise RemoteError(
            f"{connection.host} has both {present[0][0].env_path} and {present[1][0].env_path}",
            "say which installation to rotate with --layout single|samdrift (and --root)",
        )
    return present[0]


async def _listing(connection: HostConnection, folder: str) -> tuple[str, ...]:
    result = await connection.run(["ls", "-A", "--", folder])
    return tuple(sorted(result.text().split()))


async def _key_mode(connection: HostConnection, path: str) -> str | None:
    result = await connection.run(["stat", "-c", "%a %U:%G", "--", path], check=False)
    return (result.text().strip() or None) if result.ok else None


async def _served(endpoint: Endpoint) -> tuple[ServedCertificate | None, str | None]:
    try:
        served = await fetch_certificate_async(
            endpoint.host, endpoint.port, server_name=endpoint.server_name
        )
    except RemoteError as error:
        return None, error.problem
    return served, None


async def gather(
    connection: HostConnection,
    endpoint: Endpoint,
    *,
    layout: str | None = None,
    root: str | None = None,
) -> SvarutFacts:
    """Read the host's state (sudo is checked first so its error comes before any other)."""
    await connection.run(["true"])
    chosen, env_bytes = await _detect(connection, candidate_layouts(layout, root))
    env = parse_env(env_bytes)
    cert_name, key_name = env.get(chosen.cert_key), env.get(chosen.key_key)
    cert_bytes, files, key_mode, containers, (served, served_error) = await asyncio.gather(
        read_file(connection, chosen.file_path(cert_name)) if cert_name else _none(),
        _listing(connection, chosen.files_path),
        _key_mode(connection, chosen.file_path(key_name)) if key_name else _none(),
        read_containers(connection, chosen),
        _served(endpoint),
    )
    facts = SvarutFacts(
        host=connection.host,
        layout=chosen,
        env_bytes=env_bytes,
        files=files,
        current_chain=_chain_of(cert_bytes),
        key_mode=key_mode,
        containers=containers,
        endpoint=endpoint,
        served=served,
        served_error=served_error,
    )
    logger.info("gathered %r", facts)
    return facts


async def _none() -> None:
    return None
