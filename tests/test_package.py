"""The package's public API: every re-exported name resolves, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cosdoc_certs

HEAVY = ("cryptography", "asn1crypto", "pypsrp", "asyncssh", "cosdoc_certs.rotation")


@pytest.mark.parametrize("name", cosdoc_certs.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(cosdoc_certs, name) is not None
    assert name in dir(cosdoc_certs)


def test_the_script_calls_are_reachable_from_the_package() -> None:
    assert cosdoc_certs.rotation.apply.__name__ == "apply"
    assert cosdoc_certs.installation_status is cosdoc_certs.rotation.installation_status
    assert cosdoc_certs.load_bundle.__module__ == "cosdoc_certs.certs.load"
    assert cosdoc_certs.svarut.apply.__module__ == "cosdoc_certs.svarut.api"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'load_bundles'"):
        cosdoc_certs.load_bundles  # noqa: B018 -- the access is the test


def test_importing_the_package_loads_no_heavy_library() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, cosdoc_certs; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [name for name in HEAVY if name in loaded] == []
