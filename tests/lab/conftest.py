"""Shared lab fixtures: the default CosDoc installation and a running lab around it.

``lab_certificates`` is made once per session (RSA keys are slow); every test gets its own
server and files under ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import (
    LabCertificates,
    LabServer,
    default_installation,
    make_lab_certificates,
)


@pytest.fixture(scope="session")
def lab_certificates() -> LabCertificates:
    """Current, previous and renewed lab certificates, shared by the whole session."""
    return make_lab_certificates()


@pytest.fixture
def default_server(tmp_path: Path, lab_certificates: LabCertificates) -> Iterator[LabServer]:
    """The default installation, booted (everything running), TLS listeners not started."""
    server = default_installation(tmp_path / "server", certificates=lab_certificates)
    yield server
    server.close()


@pytest.fixture
def lab(tmp_path: Path, default_server: LabServer) -> Iterator[Lab]:
    """A running lab (TLS listeners, HTTP and HTTPS WinRM endpoints) around ``default_server``."""
    with Lab(server=default_server, root=tmp_path / "lab") as running:
        yield running


@pytest.fixture
def unencrypted_lab(default_server: LabServer, tmp_path: Path) -> Iterator[Lab]:
    """A lab started with ``allow_unencrypted`` (WinRM's AllowUnencrypted=true), so a proxy
    can read its messages."""
    with Lab(server=default_server, root=tmp_path / "lab", allow_unencrypted=True) as running:
        yield running
