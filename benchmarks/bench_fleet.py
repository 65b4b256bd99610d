"""Fleet status as a consultant runs it: many installations read at once over a slow link.

Run: python3 benchmarks/bench_fleet.py [--installations N] [--latency SECONDS] [--profile]
Starts ``N`` labs, each in a process of its own (so their work is not billed to the client),
with ``--latency`` seconds added to every WinRM request as on a WAN link, and reads them
with ``rotation.status_many``: one installation, then all ``N``. Prints the wall time of each,
their ratio, the client's CPU time per extra installation and the client's peak memory.
``--profile`` then reads the ``N`` one after the other in this thread under cProfile and
prints where the client's CPU goes (top 30 by own time).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from cosdoc_certs import rotation
from cosdoc_certs.lab.runner import ConnectionInfo

_LAB_PROCESS = """
import json, sys, threading
from cosdoc_certs.lab.runner import Lab
lab = Lab(svarut=False).start()
lab.faults.latency_per_request = float(sys.argv[1])
print(json.dumps(lab.connection_info().as_dict()), flush=True)
sys.stdin.read()
lab.stop()
"""


@contextlib.contextmanager
def lab_processes(count: int, latency: float) -> Iterator[list[ConnectionInfo]]:
    """``count`` labs in processes of their own; stopped (stdin closed) on leaving."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _LAB_PROCESS, str(latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    try:
        yield [_connection_info(process) for process in processes]
    finally:
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in processes:
            process.wait(timeout=30)


def _connection_info(process: subprocess.Popen[bytes]) -> ConnectionInfo:
    assert process.stdout is not None
    document = json.loads(process.stdout.readline())
    document.update(
        ca_file=Path(document["ca_file"]),
        server_root=Path(document["server_root"]),
        pfx_files={role: Path(path) for role, path in document["pfx_files"].items()},
        svarut=None,
    )
    return ConnectionInfo(**document)


def _read(targets: list[rotation.Target]) -> tuple[float, float]:
    """Wall and client CPU seconds of one ``status_many`` over ``targets``."""
    wall, cpu = time.perf_counter(), time.process_time()
    statuses = rotation.status_many(targets)
    assert all(status.windows is not None for status in statuses), "a status read failed"
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    """Start the labs, read one and all, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installations", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--profile", action="store_true")
    arguments = parser.parse_args()
    count = arguments.installations
    with lab_processes(count, arguments.latency) as infos:
        targets = [rotation.lab_target(info, name=f"k{i}") for i, info in enumerate(infos)]
        _read(targets[:1])  # warm-up: imports, first TLS contexts
        one_wall, one_cpu = min(_read(targets[:1]) for _ in range(3))
        all_wall, all_cpu = _read(targets)
        if arguments.profile:
            profile = cProfile.Profile(time.process_time)
            profile.runcall(lambda: [rotation._windows_status(t, 30) for t in targets])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_extra_ms = (all_cpu - one_cpu) / max(1, count - 1) * 1000
    print(
        f"fleet status, labs in separate processes, {arguments.latency * 1000:.0f} ms per WinRM "
        f"request: 1 installation {one_wall:.2f} s, {count} installations {all_wall:.2f} s "
        f"({all_wall / one_wall:.2f}x)"
    )
    print(
        f"client CPU: {one_cpu * 1000:.0f} ms for 1, {per_extra_ms:.1f} ms per extra installation"
    )
    print(f"client peak RSS: {peak_mib:.0f} MiB")
    if arguments.profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
