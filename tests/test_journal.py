"""Journal: register before touching, atomic 0600 writes, no secrets, reload for rollback."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cosdoc_certs.errors import InputError
from cosdoc_certs.journal import Journal, Outcome, StepStatus, find_journals, latest_journal


def _start(folder: Path, host: str = "svarut01") -> Journal:
    return Journal.start(
        kind="svarut",
        host=host,
        old_thumbprint="A" * 40,
        new_thumbprint="B" * 40,
        directory=folder,
        context={"env_path": "/usr/containers/svarut/prod.env"},
    )


def test_file_and_folder_are_private(tmp_path: Path) -> None:
    journal = _start(tmp_path / "j")
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(journal.path.parent.stat().st_mode) == 0o700
    data = json.loads(journal.path.read_text())
    assert data["host"] == "svarut01"
    assert data["outcome"] == "running"
    assert data["user"]
    assert data["started"]


def test_steps_are_on_disk_before_and_after_the_touch(tmp_path: Path) -> None:
    journal = _start(tmp_path)
    with journal.step("upload", path="/p/cert.crt") as index:
        on_disk = Journal.load(journal.path)
        assert on_disk.steps[index]["status"] == "registered"
        journal.mark(index, StepStatus.REGISTERED, sha256="ab" * 32)
    assert Journal.load(journal.path).steps[0]["status"] == "done"
    assert Journal.load(journal.path).steps[0]["details"]["sha256"] == "ab" * 32
    with pytest.raises(RuntimeError), journal.step("restart"):
        raise RuntimeError("container exited")
    reloaded = Journal.load(journal.path)
    assert reloaded.steps[1]["status"] == "failed"
    assert reloaded.steps[1]["error"] == "container exited"
    assert [step["name"] for step in reloaded.steps_to_undo()] == ["restart", "upload"]
    reloaded.mark(1, StepStatus.UNDONE)
    assert [step["name"] for step in reloaded.steps_to_undo()] == ["upload"]
    reloaded.finish(Outcome.ROLLED_BACK, "container exited")
    assert Journal.load(journal.path).outcome is Outcome.ROLLED_BACK
    assert not list(tmp_path.glob(".*.tmp"))


def test_steps_of_one_call_are_registered_and_marked_together(tmp_path: Path) -> None:
    journal = _start(tmp_path)
    indexes = journal.register_many([("write-file", {"file": "a.json"}), ("set-binding", {})])
    assert indexes == [0, 1]
    on_disk = Journal.load(journal.path)
    assert [(s["name"], s["status"]) for s in on_disk.steps] == [
        ("write-file", "registered"),
        ("set-binding", "registered"),
    ]
    journal.mark_many(
        [
            (0, StepStatus.DONE, "", {"backup": "a.json.bak"}),
            (1, StepStatus.FAILED, "no such site", {}),
        ]
    )
    steps = Journal.load(journal.path).steps
    assert [s["status"] for s in steps] == ["done", "failed"]
    assert steps[0]["details"] == {"file": "a.json", "backup": "a.json.bak"}
    assert steps[1]["error"] == "no such site"


def test_a_secret_in_a_batch_records_none_of_it(tmp_path: Path) -> None:
    journal = _start(tmp_path)
    with pytest.raises(ValueError, match="journal"):
        journal.register_many([("upload", {}), ("key", {"pem": "-----BEGIN PRIVATE KEY-----"})])
    assert Journal.load(journal.path).steps == []
    assert journal.steps == []


@pytest.mark.parametrize(
    "secret",
    [b"bytes", "-----BEGIN PRIVATE KEY-----\nMII", {"nested": ["-----BEGIN RSA PRIVATE KEY-----"]}],
)
def test_secrets_are_refused(tmp_path: Path, secret: object) -> None:
    journal = _start(tmp_path)
    with pytest.raises(ValueError, match="journal"):
        journal.register("upload", content=secret)
    assert "PRIVATE" not in journal.path.read_text()


def test_find_and_latest_by_host(tmp_path: Path) -> None:
    first = _start(tmp_path, "a")
    _start(tmp_path, "b")
    (tmp_path / "other.json").write_text("{}")
    assert find_journals(tmp_path, host="a") == [first.path]
    assert latest_journal(tmp_path, host="b").host == "b"
    with pytest.raises(InputError, match="no journal for c"):
        latest_journal(tmp_path, host="c")


def test_load_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a cosdoc-certs journal"):
        Journal.load(tmp_path / "x.json")
    with pytest.raises(InputError, match="cannot read"):
        Journal.load(tmp_path / "missing.json")


def test_latest_is_the_last_started_even_within_one_second(tmp_path: Path) -> None:
    started = [_start(tmp_path, "h") for _ in range(5)]
    assert latest_journal(tmp_path, host="h").path == started[-1].path
    assert find_journals(tmp_path, host="h") == [journal.path for journal in started]


def test_a_run_whose_process_lives_is_in_progress_and_once_killed_crashed(tmp_path: Path) -> None:
    started = (
        "import sys, time; from pathlib import Path; from cosdoc_certs.journal import Journal; "
        "Journal.start(kind='rotation', host='testkommune', old_thumbprint=None, "
        f"new_thumbprint=None, directory=Path({str(tmp_path)!r})).register('windows'); "
        "print('started', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", started], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"
        (journal,) = (Journal.load(path) for path in tmp_path.glob("*.json"))
        assert journal.in_progress
        assert not journal.crashed
    finally:
        process.kill()
        process.wait()
    assert not journal.in_progress
    assert journal.crashed
    assert journal.undoable  # rollback takes it up
