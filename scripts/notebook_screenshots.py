"""Screenshots of what docs/notebooks/troubleshooting.ipynb shows for status, plan and rotation.

Executes the notebook in a fresh kernel (as the tests do), writes each chosen cell's HTML
output to a page with Jupyter-like table styling, and has headless Chromium photograph it
into docs/notebooks/screenshots/. Needs the dev extra and Debian's chromium package.

    python3 scripts/notebook_screenshots.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "docs" / "notebooks" / "troubleshooting.ipynb"
SHOTS = REPO / "docs" / "notebooks" / "screenshots"
# screenshot name -> the source line of the cell whose output it shows, and the page height
CELLS = {
    "status": ("before = installation_status(target)", 1950),
    "plan": ("rplan = plan_rotation(target, bundle)", 1900),
    "rotation": ("result = apply_rotation(rplan, verify=True, progress=print)", 3000),
}
STYLE = """
body { font-family: 'DejaVu Sans', sans-serif; font-size: 13px; margin: 16px; width: 1400px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { padding: 3px 8px; text-align: left; vertical-align: top; }
tr:nth-child(even) { background: #f5f5f5; } th { border-bottom: 1px solid #999; }
pre, code { font-family: 'DejaVu Sans Mono', monospace; font-size: 12px; }
.cell { border-left: 3px solid #1976d2; padding-left: 10px; }
.source { background: #f7f7f7; padding: 6px; margin-bottom: 8px; }
"""


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder:
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(notebook, timeout=120, resources={"metadata": {"path": folder}}).execute()
        SHOTS.mkdir(exist_ok=True)
        for name, (source, height) in CELLS.items():
            (cell,) = [c for c in notebook.cells if c.source.startswith(source)]
            page = Path(folder) / f"{name}.html"
            page.write_text(_page(cell), encoding="utf-8")
            _photograph(browser, page, SHOTS / f"{name}.png", height)
    return 0


def _page(cell: nbformat.NotebookNode) -> str:
    shown = "".join(output.get("data", {}).get("text/html", "") for output in cell.outputs)
    source = cell.source.replace("&", "&amp;").replace("<", "&lt;")
    return (
        f"<html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>"
        f"<pre class='source'>{source}</pre><div class='cell'>{shown}</div></body></html>"
    )


def _photograph(browser: str, page: Path, shot: Path, height: int) -> None:
    subprocess.run(
        [
            browser,
            *("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"),
            f"--window-size=1440,{height}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


if __name__ == "__main__":
    sys.exit(main())
