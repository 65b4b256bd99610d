"""``cosdoc-certs demo`` end to end, as a user runs it: a fresh process, the lab in it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

CONSUMERS = (
    "Digihelse",
    "KPR",
    "Authentication",
    "SkatteIntegrasjonApi",
    "IIS HTTPS bindings",
    "SvarUT",
    "E-meldinger",
)


def _demo(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, TMPDIR=str(tmp_path), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "cosdoc_certs", "demo", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=110,
        check=False,
    )


def test_the_demo_rotates_verifies_and_rolls_back(tmp_path: Path) -> None:
    done = _demo(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for consumer in CONSUMERS:
        assert consumer in out
    title = re.search(r"signing ([0-9A-F]{40}), encryption ([0-9A-F]{40}), ssl ([0-9A-F]{40})", out)
    assert title is not None
    verify = out.split("5. Verify")[1].split("6. Status after")[0]
    for thumbprint in title.groups():
        assert thumbprint in verify
    assert "U+200E" in out.split("2. The renewed")[0]  # the seeded finding, before
    assert "serves " + title.group(3) in verify  # SvarUT, in a TLS handshake
    assert "as before the rotation" in out
    assert "result: rotation verified and rollback restored everything" in out
    assert "2 PowerShell script call(s) on the Windows server from plan to verify, in 1 " in out
    assert "server facts from the post-state apply.ps1 read at the end of its pipeline" in verify
    assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir()), "the demo left files behind"


def test_the_demo_json_says_what_happened(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["verify"]["ok"] is True
    assert report["restored"] is True
    assert report["not_restored"] == []
    assert report["round_trips"]["windows_scripts"] == 2
    assert report["round_trips"]["windows_sessions"] == 1
    trips = report["round_trips"]
    # the first command's progress record may come alone, as on a real server: one Receive more
    assert trips["windows_progress_only_receives"] <= 1, trips
    assert trips["windows_http_requests"] - trips["windows_progress_only_receives"] <= 9, trips
    assert report["verify"]["windows"]["facts_from"].startswith("the post-state")
    assert {change["consumer"] for change in report["plan"]["changes"]} >= {
        "Digihelse",
        "SvarUT nginx",
        "E-meldinger",
    }
    assert report["apply"]["outcome"] == "applied"
    assert report["rollback"]["outcome"] == "rolled-back"
    assert set(report["seconds"]) >= {"plan", "apply", "verify", "rollback"}
    assert done.stderr == ""  # no progress lines with --json


def test_keep_leaves_the_lab_files(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--keep", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    kept = Path(json.loads(done.stdout)["lab_files"])
    assert kept.is_dir()
    assert list((kept / "client" / "journals").glob("*-rotation-*.json"))


@pytest.mark.parametrize("scenario", ["norwegian", "dot-user"])
def test_the_demo_rotates_and_rolls_back_where_account_names_differ(
    tmp_path: Path, scenario: str
) -> None:
    done = _demo(tmp_path, "--scenario", scenario, "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["apply"]["outcome"] == "applied"
    assert report["rollback"]["outcome"] == "rolled-back"
    grants = [c for c in report["plan"]["changes"] if c["action"] == "grant-key-read"]
    assert grants
    assert all(c["details"]["sid"].startswith("S-1-5-") for c in grants)
    if scenario == "norwegian":
        accounts = {c["details"]["account"] for c in grants}
        assert "NT-MYNDIGHET\\NETTVERKSTJENESTE" in accounts
