"""Every result object a user holds shows itself: ``print``, IPython's terminal, Jupyter's HTML.

One rotation against the lab yields every object of the common path (bundle, certificate,
target, status, plan, result, verify report, SvarUT facts and plan); each must have text that
says what it holds (``str`` is that text, IPython's terminal shows it too) and an HTML form.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.lib.pretty import pretty

from cosdoc_certs import (
    Lab,
    apply_rotation,
    installation_status,
    lab_target,
    load_bundle,
    plan_rotation,
    rollback_rotation,
    svarut,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def held(lab: Lab) -> dict[str, Any]:
    """The objects a notebook holds after status, plan, apply (verified) and rollback."""
    info = lab.connection_info()
    target = lab_target(info)
    bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
    status = installation_status(target)
    rplan = plan_rotation(target, bundle)
    result = apply_rotation(rplan, verify=True)
    assert result.verification is not None
    objects = {
        "bundle": bundle,
        "certificate": bundle.ssl,
        "target": target,
        "status": status,
        "windows status": status.windows,
        "svarut facts": status.svarut,
        "plan": rplan,
        "whole plan": rplan.plan,
        "svarut plan": rplan.svarut,
        "result": result,
        "windows result": result.windows,
        "svarut result": result.svarut,
        "verification": result.verification,
        "windows verification": result.verification.windows,
        "svarut verification": result.verification.svarut,
    }
    objects["rollback"] = rollback_rotation(target, result.journal_path)
    return objects


def test_every_object_shows_its_text_in_print_ipython_and_html(held: dict[str, Any]) -> None:
    for name, value in held.items():
        text = str(value)
        assert text.strip(), f"{name}: str() is empty"
        assert text != repr(value) or "\n" not in text, name
        assert pretty(value) == text, f"{name}: IPython's terminal does not show the text"
        assert value._repr_html_().startswith("<"), name


def test_a_target_shows_its_hosts_not_the_catalog(held: dict[str, Any]) -> None:
    target = held["target"]
    assert len(repr(target)) < 120
    assert "Digihelse" in str(target)
    assert str(target.journal_dir) in str(target)


def test_a_certificate_shows_thumbprint_and_expiry(held: dict[str, Any]) -> None:
    certificate = held["certificate"]
    assert certificate.thumbprint in repr(certificate)
    assert f"{certificate.not_after:%Y-%m-%d}" in repr(certificate)
    assert certificate.thumbprint in certificate._repr_html_()


def test_the_installation_status_shows_consumers_and_what_is_served(held: dict[str, Any]) -> None:
    status = held["status"]
    assert "Digihelse" in str(status)
    assert "serves" in str(status)
    page = status._repr_html_()
    assert "<table>" in page
    assert str(status.svarut.endpoint) in page


def test_a_rotation_result_shows_hosts_timings_changes_verification_and_journals(
    held: dict[str, Any],
) -> None:
    result = held["result"]
    page = result._repr_html_()
    for host in (result.windows, result.svarut):
        assert str(host.journal_path) in page
        assert str(host.journal_path) in str(result)
    assert str(result.journal_path) in page
    assert " s</td>" in page  # each host's time
    assert "import-pfx" in page  # what changed on Windows
    assert "verified" in page
    assert "binding" in page  # what verify checked: the TLS handshakes too
    assert result.phase_seconds.keys() == {"windows", "svarut", "verify"}


def test_a_svarut_run_result_shows_itself(held: dict[str, Any]) -> None:
    assert isinstance(held["svarut result"], svarut.RunResult)
    assert "journal" in held["svarut result"]._repr_html_()


def test_texts_keep_thumbprints_whole(held: dict[str, Any]) -> None:
    report = held["windows status"]
    text = str(report)
    for status in report.consumers:
        for use in status.uses:
            if use.thumbprint:
                assert use.thumbprint in text
    bundle = held["bundle"]
    assert all(info.thumbprint in bundle.to_text() for info in bundle)
