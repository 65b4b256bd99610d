"""Run code cells in a real Jupyter kernel (nbclient + ipykernel), as a notebook user would.

:func:`run_cells` executes cells in one fresh kernel and returns each cell's outputs; an
error output fails the run (:class:`nbclient.exceptions.CellExecutionError`) unless the
cell is marked to allow it. The kernel inherits this process's environment, so it imports
this worktree's package (PYTHONPATH).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

CELL_TIMEOUT = 120


def notebook_of(cells: list[str]) -> nbformat.NotebookNode:
    """A notebook of code cells."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    return notebook


def execute(notebook: nbformat.NotebookNode, folder: Path) -> nbformat.NotebookNode:
    """Execute ``notebook`` in a fresh python3 kernel started in ``folder``; fail on errors."""
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute()
    return notebook


def run_cells(cells: list[str], folder: Path) -> list[list[dict[str, Any]]]:
    """Each cell's outputs, the cells executed in order in one kernel."""
    notebook = execute(notebook_of(cells), folder)
    return [list(cell.outputs) for cell in notebook.cells]


def text_of(outputs: list[dict[str, Any]]) -> str:
    """The plain text a cell showed: its stream output and its results' text/plain."""
    parts = []
    for output in outputs:
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def html_of(outputs: list[dict[str, Any]]) -> str:
    """The HTML a cell showed (its results' text/html)."""
    return "".join(output.get("data", {}).get("text/html", "") for output in outputs)
