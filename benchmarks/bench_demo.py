"""Time of ``cosdoc-certs demo``: the whole rotation and rollback of the lab installation.

Run: python3 benchmarks/bench_demo.py [--runs N] [--installations N] [--latency SECONDS]
Prints the median time of each phase (lab start, status, loading the PFX files, plan,
apply, verify, rollback...) over ``N`` in-process runs of the demo, its total, the round
trips the lab recorded, and the wall time of one ``cosdoc-certs demo`` as a fresh process
(what a user waits for, Python start and imports included). Then the fleet status: ``N``
installations read at once (one lab behind each, ``--latency`` seconds added to every WinRM
request as on a WAN link) against the same installations read one after the other.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from cosdoc_certs import rotation
from cosdoc_certs.cli.demo import DemoRun, run_demo
from cosdoc_certs.lab.runner import Lab


def _process_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cosdoc_certs", "demo"], capture_output=True, check=True)
    return time.perf_counter() - started


def _fleet(installations: int, latency: float) -> None:
    labs = [Lab(svarut=False).start() for _ in range(installations)]
    try:
        for lab in labs:
            lab.faults.latency_per_request = latency
        targets = [
            rotation.lab_target(lab.connection_info(), name=f"k{i}") for i, lab in enumerate(labs)
        ]
        started = time.perf_counter()
        statuses = rotation.status_many(targets)
        together = time.perf_counter() - started
        started = time.perf_counter()
        for target in targets:
            rotation.installation_status(target)
        apart = time.perf_counter() - started
    finally:
        for lab in labs:
            lab.stop()
    assert all(status.windows is not None for status in statuses)
    print(
        f"fleet status of {installations} installations, {latency * 1000:.0f} ms per WinRM "
        f"request: {together:.2f} s at once, {apart:.2f} s one after the other"
    )


def main() -> None:
    """Run the demo ``--runs`` times, then the fleet status, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--installations", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05)
    arguments = parser.parse_args()
    runs = arguments.runs
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
    _fleet(arguments.installations, arguments.latency)


if __name__ == "__main__":
    main()
