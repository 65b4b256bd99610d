"""The package's public API: every re-exported name resolves, and importing it stays light."""

from __future__ import annotations

import inspect
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


def test_every_call_of_the_common_path_has_an_async_twin_named_alike() -> None:
    calls = [
        name
        for name in cosdoc_certs.__all__
        if not name.endswith("_async") and inspect.isfunction(getattr(cosdoc_certs, name))
    ]
    twins = {name: f"{name}_async" for name in calls if f"{name}_async" in cosdoc_certs.__all__}
    assert set(twins) >= {
        "installation_status",
        "status_many",
        "plan_rotation",
        "apply_rotation",
        "verify_rotation",
        "rollback_rotation",
    }
    for name, twin in twins.items():
        assert inspect.iscoroutinefunction(getattr(cosdoc_certs, twin)), twin
        assert getattr(cosdoc_certs, name).__wrapped__ is getattr(cosdoc_certs, twin)


@pytest.mark.parametrize("module", ["rotation", "svarut"])
def test_every_async_call_of_a_module_has_its_plain_twin(module: str) -> None:
    namespace = getattr(cosdoc_certs, module)
    for name in namespace.__all__:
        if name.endswith("_async"):
            plain = getattr(namespace, name.removesuffix("_async"))
            assert plain.__wrapped__ is getattr(namespace, name), name
