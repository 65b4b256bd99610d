"""The library in a real Jupyter kernel: what a cell prints and shows, and what it leaves.

Each test runs cells in a fresh kernel against a lab started inside that kernel (the lab
is part of the library), as a consultant's notebook does.
"""

from __future__ import annotations

from pathlib import Path

from tests.kernel import execute, notebook_of, run_cells, text_of

_LAB = """
from cosdoc_certs import Lab, lab_target
lab = Lab().start()
info = lab.connection_info()
target = lab_target(info)
"""


def test_print_of_a_windows_status_report_prints_its_text_in_one_output(tmp_path: Path) -> None:
    outputs = run_cells(
        [
            _LAB,
            "from cosdoc_certs.status import status\nreport = status(info.options())",
            "print(report)",
            "text = str(report)\nprint(len(text.splitlines()))",
            "lab.stop()",
        ],
        tmp_path,
    )
    printed = outputs[2]
    assert len(printed) == 1, f"the report came out as {len(printed)} outputs"
    assert "thumbprint" in text_of(printed)
    assert int(text_of(outputs[3])) > 10  # str(report) is the text, not ''


def test_run_demo_without_show_prints_nothing(tmp_path: Path) -> None:
    outputs = run_cells(
        ["from cosdoc_certs.cli.demo import run_demo\nrun = run_demo()\nprint(run.ok)"],
        tmp_path,
    )
    assert text_of(outputs[0]).strip() == "True"
    assert len(outputs[0]) == 1


def test_status_many_leaves_the_notebook_loops_executor_alone(tmp_path: Path) -> None:
    outputs = run_cells(
        [
            _LAB,
            "import asyncio, concurrent.futures, threading\n"
            "from cosdoc_certs import status_many_async\n"
            "loop = asyncio.get_running_loop()\n"
            "loop.set_default_executor(concurrent.futures.ThreadPoolExecutor("
            "4, thread_name_prefix='mine'))\n"
            "statuses = await status_many_async([target, target])\n"
            "name = await loop.run_in_executor(None, lambda: threading.current_thread().name)\n"
            "print(name.startswith('mine'), [s.worst is not None for s in statuses])",
            "lab.stop()",
        ],
        tmp_path,
    )
    assert text_of(outputs[1]).strip() == "True [True, True]"


def test_an_expected_apply_error_shows_a_short_traceback(tmp_path: Path) -> None:
    notebook = notebook_of(
        [
            _LAB,
            "from cosdoc_certs import apply_rotation, load_bundle, plan_rotation\n"
            "bundle = load_bundle([info.pfx_files['pair'], info.pfx_files['ssl']], "
            "info.pfx_password)\n"
            "rplan = plan_rotation(target, bundle)\n"
            "lab.faults.fail_pipeline('apply', 'Access is denied')",
            "apply_rotation(rplan)",
            "lab.faults.clear()\nlab.svarut.faults.container_exits = True",
            "from cosdoc_certs import apply_rotation_async\nawait apply_rotation_async(rplan)",
            "lab.stop()",
        ]
    )
    for failing in (2, 4):  # the plain call (Windows refuses), the async twin (SvarUT fails)
        notebook.cells[failing].metadata["tags"] = ["raises-exception"]
    cells = execute(notebook, tmp_path).cells
    for failing in (2, 4):
        (error,) = [output for output in cells[failing].outputs if output["output_type"] == "error"]
        assert error["ename"] == "ApplyError"
        frames = "\n".join(error["traceback"])
        assert "concurrent" not in frames
        assert "asyncio" not in frames
        assert "The above exception was the direct cause" not in frames
        assert len(error["traceback"]) <= 6, frames
