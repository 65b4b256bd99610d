"""The example notebooks of docs/notebooks/ run headless in a real Jupyter kernel.

Each is executed with nbclient in a fresh ipykernel, cell by cell, as a reader would run it;
an error output (nbclient raises) or anything on stderr fails the test. What the status,
plan and rotation cells show is checked too: a notebook that runs but shows nothing useful
is a broken example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.kernel import execute

NOTEBOOKS = Path(__file__).resolve().parent.parent / "docs" / "notebooks"

pytestmark = pytest.mark.timeout(300)


def _run(
    name: str, folder: Path, expected_stderr: tuple[str, ...] = ()
) -> list[nbformat.NotebookNode]:
    """The notebook's code cells, executed; stderr may hold only ``expected_stderr`` lines."""
    notebook = execute(nbformat.read(NOTEBOOKS / name, as_version=4), folder)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    stderr = [
        line
        for cell in cells
        for output in cell.outputs
        if output["output_type"] == "stream" and output["name"] == "stderr"
        for line in output["text"].splitlines()
    ]
    assert stderr == list(expected_stderr)
    return cells


def _shown(cell: nbformat.NotebookNode, kind: str) -> str:
    return "".join(output.get("data", {}).get(kind, "") for output in cell.outputs)


def _cell(cells: list[nbformat.NotebookNode], starts: str) -> Any:
    (found,) = [cell for cell in cells if cell.source.startswith(starts)]
    return found


def test_the_troubleshooting_notebook_runs_and_shows_status_plan_and_rotation(
    tmp_path: Path,
) -> None:
    cells = _run("troubleshooting.ipynb", tmp_path)
    status = _shown(_cell(cells, "before = installation_status"), "text/html")
    assert "thumbprint-invisible-char" in status
    assert "serves in a TLS handshake" in status
    plan = _shown(_cell(cells, "rplan = plan_rotation"), "text/html")
    assert "<table>" in plan
    assert "appsettings.json" in plan
    rotation = _shown(_cell(cells, "result = apply_rotation"), "text/html")
    assert "testkommune: applied" in rotation
    assert "-windows-" in rotation  # the host journals' paths
    assert "-svarut-" in rotation
    assert "verified" in rotation
    restored = _shown(_cell(cells, "restored = installation_status"), "text/plain")
    assert "newer-not-used" in restored


def test_a_kernel_interrupt_during_apply_rolls_back(tmp_path: Path) -> None:
    cells = _run(
        "interrupt-during-apply.ipynb",
        tmp_path,
        expected_stderr=("signal SIGINT: stopping after the current step and rolling back",),
    )
    assert "the installation is as it was" in _shown(cells[-2], "text/plain") + "".join(
        output.get("text", "") for output in cells[-2].outputs
    )
