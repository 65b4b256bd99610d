"""Fixtures shared by the test modules: the test CA and certificates, and the running lab."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cosdoc_certs import rotation
from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.lab import certs
from cosdoc_certs.lab.kerberos import LabRealm, kerberos_tools_missing
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


@pytest.fixture
def target(lab: Lab) -> rotation.Target:
    """The running lab as a rotation target (its Windows server and SvarUT host)."""
    return rotation.lab_target(lab.connection_info(), name="testkommune")


@pytest.fixture
def bundle(lab: Lab) -> CertificateBundle:
    """The lab's renewed certificates: the enterprise pair's PFX and the SSL PFX."""
    info = lab.connection_info()
    return load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)


@pytest.fixture(scope="session")
def kerberos_realm() -> Iterator[LabRealm]:
    """The lab's Kerberos realm on loopback (a KDC, lab-user, the server's keytab).

    Skipped only where MIT Kerberos or Python's gssapi cannot be installed (a non-root
    developer machine); in CI (CI=true) a missing piece fails the tests instead.
    """
    missing = kerberos_tools_missing()
    if importlib.util.find_spec("gssapi") is None or importlib.util.find_spec("krb5") is None:
        missing.append("the Python packages gssapi and krb5 (pypsrp[kerberos])")
    if missing:
        reason = f"no Kerberos here: {', '.join(missing)} (scripts/setup-dev installs them as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with LabRealm() as realm:
        yield realm


@pytest.fixture
def kerberos_ticket(
    kerberos_realm: LabRealm, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LabRealm]:
    """This process uses the lab realm, and lab-user has a fresh forwardable ticket."""
    for name, value in kerberos_realm.environment.items():
        monkeypatch.setenv(name, value)
    kerberos_realm.kinit()
    yield kerberos_realm
    kerberos_realm.kdestroy()
