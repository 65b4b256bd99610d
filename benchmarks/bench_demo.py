"""Time of ``cosdoc-certs demo``: the whole rotation and rollback of the lab installation.

Run: python3 benchmarks/bench_demo.py [--runs N]
Prints the median time of each phase (lab start, status, loading the PFX files, plan,
apply, verify, rollback...) over ``N`` in-process runs of the demo, its total, the round
trips the lab recorded, and the wall time of one ``cosdoc-certs demo`` as a fresh process
(what a user waits for, Python start and imports included).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from cosdoc_certs.cli.demo import DemoRun, run_demo


def _process_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cosdoc_certs", "demo"], capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    """Run the demo ``--runs`` times and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    results: list[DemoRun] = [run_demo() for _ in range(runs)]
    assert all(run.ok for run in results), "a demo run did not verify"
    print(f"cosdoc-certs demo, in process, median of {runs} run(s):")
    for phase in results[0].phases:
        median = statistics.median(run.phases[phase] for run in results)
        print(f"  {phase:<24} {median * 1000:8.1f} ms")
    total = statistics.median(sum(run.phases.values()) for run in results)
    print(f"  {'total':<24} {total * 1000:8.1f} ms")
    trips = results[0].round_trips
    print(
        f"round trips: {trips['windows_scripts']} PowerShell scripts from plan to verify "
        f"({trips['windows_http_requests']} WinRM requests), "
        f"{trips['svarut_commands']} SvarUT commands in apply and verify"
    )
    print(f"`cosdoc-certs demo` as a fresh process: {_process_seconds():.2f} s wall")


if __name__ == "__main__":
    main()
