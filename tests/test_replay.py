"""Servers replayed from captured facts: every file in tests/facts/ rotates, verifies, rolls back;
and a capture of each lab scenario, replayed, reports the same status as the scenario itself.

A consultant's ``--save-facts`` file dropped into tests/facts/ becomes one more case here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_process import running_lab

from cosdoc_certs.captured import load_facts, save_facts
from cosdoc_certs.certs import load_bundle
from cosdoc_certs.errors import ConfigFileError, InputError
from cosdoc_certs.journal import Journal, Outcome
from cosdoc_certs.lab.replay import ReplayedServer, replay_installation
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import SCENARIOS, LabCertificates, make_lab_certificates
from cosdoc_certs.plan import ChangeKind
from cosdoc_certs.status import gather, status
from cosdoc_certs.windows.apply import apply_windows, rollback_windows
from cosdoc_certs.windows.connection import WindowsHost
from cosdoc_certs.windows.planning import plan_windows
from cosdoc_certs.windows.verify import endpoint_map, verify_windows

FACTS = sorted((Path(__file__).parent / "facts").glob("*.json"))
HOST = "cosdoc-app01.testkommune.no"


@pytest.fixture(scope="module")
def certificates() -> LabCertificates:
    return make_lab_certificates()


def _config_files(server: ReplayedServer) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(server.files.root.rglob("appsettings.json"))}


# Captured servers that planning refuses, as it refuses the scenario they were captured from
# (a config file the session cannot read, one on a drive that is gone, IIS it cannot read):
# the error and what it says.
REFUSED: dict[str, tuple[type[Exception], str]] = {
    "locked-config": (ConfigFileError, "locked by another process"),
    "unreadable-config": (ConfigFileError, "access denied to the connecting account"),
    "unc-config": (ConfigFileError, "a UNC path is a second hop"),
    "missing-drive": (ConfigFileError, "Q:\\DIPS\\KPR\\Arkiv\\appsettings.json does not exist"),
    "iis-without-module": (InputError, "its PowerShell module WebAdministration is not installed"),
}


@pytest.mark.parametrize("path", FACTS, ids=lambda path: path.stem)
def test_a_captured_server_rotates_verifies_and_rolls_back(
    path: Path, tmp_path: Path, certificates: LabCertificates
) -> None:
    server = replay_installation(load_facts(path), tmp_path / "server", certificates=certificates)
    files = certificates.write_files(tmp_path / "pfx")
    bundle = load_bundle([files.pair_pfx, files.ssl_pfx], certificates.pfx_password.encode())
    originals = _config_files(server)
    with (
        server,
        Lab(server=server, root=tmp_path / "lab", svarut=False) as lab,
        WindowsHost(lab.connection_info().options(https=False)) as host,
    ):
        facts = gather(host)
        if path.stem in REFUSED:
            error, message = REFUSED[path.stem]
            with pytest.raises(error, match=re.escape(message)):
                plan_windows(facts, bundle, host=HOST)
            return
        plan = plan_windows(facts, bundle, host=HOST)
        assert any(c.kind is ChangeKind.EDIT_CONFIG_KEY for c in plan.changes)
        result = apply_windows(host, plan, bundle, facts, journal_dir=tmp_path / "journals")
        assert result.outcome is Outcome.APPLIED
        assert _config_files(server) != originals
        endpoints = endpoint_map(lab.connection_info().tls_endpoints)
        report = verify_windows(host, plan, tls_address=endpoints)
        assert report.ok, report.to_text()
        undone = rollback_windows(host, Journal.load(result.journal_path))
        assert undone.outcome is Outcome.ROLLED_BACK
    assert _config_files(server) == originals


# -- round trip: capture, replay, same status ------------------------------------------------

_ROUND_TRIP = [
    name
    for name in SCENARIOS
    if name not in ("broken-wmi", "constrained-language", "large-config")  # no facts, too big
]
_RUN_SPECIFIC = ("host", "gathered_at")
_SERIAL = re.compile(r"serial [0-9A-F]+")
_KEY_FILE = re.compile(r"(Crypto\\\\(?:Keys|RSA\\\\MachineKeys)\\\\)[0-9A-Za-z_-]+")
_LOWER_CASE_COLUMN = re.compile(r"(is in lower case \(first at line \d+), column \d+")


def stand_in_free(report: dict[str, Any], stand_ins: dict[str, str]) -> dict[str, Any]:
    """``report`` with the documented stand-ins put back: thumbprints (whole, lower-case and
    as 8-digit prefixes), serial numbers, key file names, and where a lower-case thumbprint's
    first lower-case letter is; the run-specific address and time dropped."""
    text = json.dumps(
        {k: v for k, v in report.items() if k not in _RUN_SPECIFIC}, ensure_ascii=False
    )
    for old, new in stand_ins.items():
        text = text.replace(new, old).replace(new.lower(), old.lower())
        text = text.replace(f"{new[:8]}…", f"{old[:8]}…")
    text = _KEY_FILE.sub(r"\1…", _SERIAL.sub("serial …", text))
    return json.loads(_LOWER_CASE_COLUMN.sub(r"\1", text))  # type: ignore[no-any-return]


@pytest.fixture
def scenario_lab(
    request: pytest.FixtureRequest, tmp_path: Path, certificates: LabCertificates
) -> Iterator[Lab]:
    server = SCENARIOS[request.param](tmp_path / "server", certificates=certificates)
    with Lab(server=server, root=tmp_path / "lab", svarut=False) as lab:
        yield lab


@pytest.mark.parametrize("scenario_lab", _ROUND_TRIP, indirect=True)
def test_capture_then_replay_reports_the_same_status(scenario_lab: Lab, tmp_path: Path) -> None:
    original = status(scenario_lab.connection_info().options(https=False))
    path = save_facts(tmp_path / "facts.json", original.facts)
    replayed_server = replay_installation(load_facts(path), tmp_path / "replayed")
    with (
        replayed_server,
        Lab(server=replayed_server, root=tmp_path / "replayed-lab", svarut=False) as lab,
    ):
        replayed = status(lab.connection_info().options(https=False))
    assert replayed_server.stand_ins  # every key-holding certificate got a stand-in
    assert set(replayed_server.stand_ins) <= {c.thumbprint for c in original.facts.certificates}
    expected = stand_in_free(original.to_dict(), {})
    assert stand_in_free(replayed.to_dict(), replayed_server.stand_ins) == expected


def test_the_lab_command_replays_a_facts_file() -> None:
    facts = FACTS[0]
    with running_lab("--facts", str(facts)) as document:
        assert document["scenario"] == str(facts)
        assert document["hostname"] == load_facts(facts).document.computer_name
