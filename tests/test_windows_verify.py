"""Verifying a Windows rotation against the lab over the real pypsrp client and real TLS.

The lab serves every HTTPS binding as a TLS listener on loopback; ``endpoint_map`` of its
``tls_endpoints`` says where. The rotation itself is done with the lab model's operations
(:func:`test_windows_planning.rotate_by_hand`): that sets up the world verify looks at.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_windows_planning import Renewed, rotate_by_hand

from cosdoc_certs.errors import RemoteError
from cosdoc_certs.facts import WindowsFacts
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.plan import ChangeKind, Plan
from cosdoc_certs.status import gather
from cosdoc_certs.windows.connection import WindowsHost
from cosdoc_certs.windows.gather import BindingFact
from cosdoc_certs.windows.planning import plan_windows
from cosdoc_certs.windows.verify import (
    WindowsVerifyReport,
    check_windows,
    endpoint_map,
    verify_windows,
)

HOST = "cosdoc-app01.testkommune.no"


@dataclasses.dataclass
class World:
    """A running lab, the files of its renewed certificates, and the plan for them."""

    lab: Lab
    renewed: Renewed
    facts: WindowsFacts
    plan: Plan

    def verify(self) -> WindowsVerifyReport:
        endpoints = endpoint_map(self.lab.connection_info().tls_endpoints)
        with WindowsHost(self.lab.connection_info().options(https=False)) as host:
            return verify_windows(host, self.plan, tls_address=endpoints)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with Lab(svarut=False) as lab:
        certificates = lab.server.certificates
        renewed = Renewed(certificates, certificates.write_files(tmp_path / "pfx"))
        with WindowsHost(lab.connection_info().options(https=False)) as host:
            facts = gather(host)
        plan = plan_windows(facts, renewed.bundle("pair", "ssl"), host=HOST)
        yield World(lab, renewed, facts, plan)


def _failed(report: WindowsVerifyReport) -> set[tuple[str, str]]:
    return {(check.kind, check.subject) for check in report.failed}


def test_before_the_rotation_config_values_and_bindings_fail(world: World) -> None:
    recorder = world.lab.http.recorder
    recorder.reset()
    report = world.verify()
    assert [run.call.name for run in recorder.scripts] == ["gather"]
    assert len(recorder.pipelines) == 1
    assert not report.ok
    kinds = {check.kind for check in report.failed}
    assert kinds == {"config", "binding", "doctor"}
    edits = sum(
        len(change.details["edits"])
        for change in world.plan.actions
        if change.kind is ChangeKind.EDIT_CONFIG_KEY
    )
    assert len([c for c in report.failed if c.kind == "config"]) == edits == 12
    current = world.lab.server.certificates.current_ssl.thumbprint
    bindings = [c for c in report.checks if c.kind == "binding"]
    assert len(bindings) == 3
    for check in bindings:
        assert not check.ok
        assert "not the new" in check.message
        assert current in check.message
    assert all(c.ok for c in report.checks if c.kind in ("service", "pool"))


def test_after_the_rotation_everything_is_verified(world: World) -> None:
    rotate_by_hand(world.lab.server, world.plan, world.renewed)
    report = world.verify()
    assert report.ok, report.to_text()
    counts = {kind: sum(1 for c in report.checks if c.kind == kind) for kind in ("config",)}
    assert counts == {"config": 12}
    new_ssl = world.renewed.certificates.renewed_ssl.thumbprint
    bindings = [c for c in report.checks if c.kind == "binding"]
    assert len(bindings) == 3
    assert all("(the new certificate)" in c.message for c in bindings)
    assert all(new_ssl[:4] in c.message for c in bindings)
    assert {c.subject for c in report.checks if c.kind == "service"} == {
        "Digihelse.Meldingstjeneste",
        "Digihelse.Adressering",
        "KPR.Innsending",
        "KPR.Overvaker",
    }
    assert {c.subject for c in report.checks if c.kind == "pool"} == {
        "Authentication Drift",
        "SkatteIntegrasjonApi Drift",
    }
    document = report.to_dict()
    json.dumps(document)
    assert document["ok"] is True
    assert report.to_text().startswith(f"127.0.0.1:{world.lab.http.port} (COSDOC-APP01): verified")
    assert "ok=True" in repr(report)
    assert "<table>" in report._repr_html_()


def test_a_stopped_service_is_reported(world: World) -> None:
    rotate_by_hand(world.lab.server, world.plan, world.renewed)
    world.lab.server.stop_service("KPR.Innsending")
    report = world.verify()
    assert _failed(report) == {("service", "KPR.Innsending")}
    (check,) = report.failed
    assert check.message == "is Stopped"
    assert "FAILED [service] KPR.Innsending: is Stopped" in report.to_text()


def test_a_binding_put_back_on_the_old_certificate_is_caught_by_the_handshake(
    world: World,
) -> None:
    rotate_by_hand(world.lab.server, world.plan, world.renewed)
    old = world.lab.server.certificates.current_ssl.thumbprint
    world.lab.server.set_binding_certificate("CosDoc Test", "*:443:cosdoc-test.testkommune.no", old)
    report = world.verify()
    assert _failed(report) == {("binding", "https *:443:cosdoc-test.testkommune.no (CosDoc Test)")}


def test_a_pool_that_cannot_read_its_key_is_reported(world: World) -> None:
    rotate_by_hand(world.lab.server, world.plan, world.renewed)
    server = world.lab.server
    signing = world.renewed.certificates.renewed.signing.thumbprint
    server.store.revoke_read(signing, "IIS AppPool\\SkatteIntegrasjonApi Drift")
    server.recycle_app_pool("SkatteIntegrasjonApi Drift")
    report = world.verify()
    assert _failed(report) == {
        ("pool", "SkatteIntegrasjonApi Drift"),
        ("doctor", "SkatteIntegrasjonApi"),
    }
    (doctor,) = [c for c in report.failed if c.kind == "doctor"]
    assert "key-not-readable" in doctor.message


# -- the pure checks, table-driven ------------------------------------------------------------


def _bindings(facts: WindowsFacts) -> dict[str, BindingFact]:
    assert facts.iis is not None
    return {b.binding_information: b for b in facts.iis.bindings}


@pytest.mark.parametrize(
    ("served_by", "failed_binding", "message"),
    [
        pytest.param({}, None, None, id="all-new"),
        pytest.param({"*:443:": "old"}, "*:443:", "serves ", id="fallback-old"),
        pytest.param(
            {"*:443:cosdoc.testkommune.no": None},
            "*:443:cosdoc.testkommune.no",
            "no handshake was made",
            id="not-checked",
        ),
        pytest.param(
            {"*:443:cosdoc.testkommune.no": RemoteError("no TLS handshake with x:1: refused")},
            "*:443:cosdoc.testkommune.no",
            "no TLS handshake with x:1: refused",
            id="unreachable",
        ),
    ],
)
def test_check_windows_judges_what_each_binding_served(
    world: World,
    served_by: dict[str, object],
    failed_binding: str | None,
    message: str | None,
) -> None:
    server = world.lab.server
    rotate_by_hand(server, world.plan, world.renewed)
    with WindowsHost(world.lab.connection_info().options(https=False)) as host:
        facts = gather(host)
    new = world.renewed.certificates.renewed_ssl.thumbprint
    old = server.certificates.current_ssl.thumbprint
    served: dict[BindingFact, object] = {}
    for name, binding in _bindings(facts).items():
        value = served_by.get(name, new)
        if value is not None:
            served[binding] = old if value == "old" else value
    report = check_windows(facts, world.plan, served, host=HOST)  # type: ignore[arg-type]
    bindings = [c for c in report.failed if c.kind == "binding"]
    assert len(report.failed) == len(bindings)
    if failed_binding is None:
        assert report.ok
        return
    (check,) = bindings
    assert check.subject.startswith(f"https {failed_binding} ")
    assert message is not None
    assert message in check.message
