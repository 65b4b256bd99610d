"""How many WinRM round trips a rotation costs, counted by the lab's recorder.

A rotation with verification is two PowerShell pipelines — gather (plan) and apply, which
ends by reading the state it reached with gather.ps1 in the same pipeline — over one WinRM
session kept open by ``with target:``. Real pypsrp against the lab's endpoint; the figures
are counts, never times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cosdoc_certs import rotation
from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.journal import Outcome
from cosdoc_certs.lab.runner import Lab

pytestmark = pytest.mark.timeout(120)

MAX_REQUESTS = 9
"""WS-Man requests of a rotation: Create and Receive (open), Command and Receive (gather),
Send and Receive (the session key for the PFX password), Command and Receive (apply), Delete."""


@pytest.fixture
def target(lab: Lab) -> rotation.Target:
    return rotation.lab_target(lab.connection_info(), name="testkommune")


@pytest.fixture
def bundle(lab: Lab) -> CertificateBundle:
    info = lab.connection_info()
    return load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)


def test_a_verified_rotation_is_two_pipelines_in_one_session(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    recorder = lab.https.recorder
    recorder.reset()
    with target:
        rplan = rotation.plan(target, bundle)
        result = rotation.apply(rplan, journal_dir=tmp_path, verify=True)
    assert result.outcome is Outcome.APPLIED, str(result)
    assert result.verification is not None
    assert result.verification.ok, result.verification.to_text()
    assert recorder.script_names == ["gather", "apply"]
    assert len(recorder.pipelines) == 2
    assert len(recorder.shells) == 1
    assert sum(recorder.requests.values()) <= MAX_REQUESTS, dict(recorder.requests)
    assert recorder.requests["Delete"] == 1  # the session is closed when the block ends
