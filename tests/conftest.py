"""Fixtures shared by the test modules: the test CA and certificates, and the running lab."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cosdoc_certs.lab import certs
from cosdoc_certs.lab.runner import Lab


@pytest.fixture(scope="module")
def ca() -> certs.TestCA:
    """A throwaway test CA (one per module)."""
    return certs.make_test_ca()


@pytest.fixture(scope="module")
def pair(ca: certs.TestCA) -> certs.EnterprisePair:
    """A Buypass-like enterprise pair (signing + encryption) issued by ``ca``."""
    return certs.make_enterprise_pair(ca)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """The default lab installation, the Windows server and the SvarUT host, running."""
    with Lab(root=tmp_path / "lab") as running:
        yield running
