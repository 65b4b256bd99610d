"""Fleet status as a consultant runs it: many installations read at once over a slow link.

Run: python3 benchmarks/bench_fleet.py [--installations N] [--latency SECONDS] [--profile]
Starts ``N`` labs, each in a process of its own (so their work is not billed to the client),
with ``--latency`` seconds added to every WinRM request as on a WAN link, and reads them
with ``rotation.status_many``: one installation, then all ``N``. Prints the wall time of each,
their ratio, the client's CPU time per extra installation, the labs' CPU per installation
(they share this machine's cores with the client: the CPU-bound floor of the wall time is
printed too) and the client's peak memory. Then it reads the ``N`` one after the other in
this thread and splits the client's CPU per installation: the WinRM session (TLS, NTLM,
runspace pool), the gather pipeline, parsing, the doctor, the TLS handshakes of the IIS
bindings — and what pypsrp alone costs for the same session and pipeline (the floor).
``--profile`` then profiles those reads (cProfile, CPU time) and prints the top 30 by own time.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import datetime as dt
import functools
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from pypsrp.powershell import PowerShell, RunspacePool

from cosdoc_certs import rotation
from cosdoc_certs.consumers import config_files, service_patterns
from cosdoc_certs.facts import WindowsFacts, diagnose
from cosdoc_certs.inventory import parse_inventory
from cosdoc_certs.windows.connection import WindowsHost, default_pool, load_script
from cosdoc_certs.windows.gather import GatherDocument

# each lab prints itself as an inventory entry and its password: the client reads the fleet
# as `cosdoc-certs inventory status` does, and never loads the lab's own code
_LAB_PROCESS = """
import json, sys
from cosdoc_certs.lab.runner import Lab
lab = Lab(svarut=False).start()
lab.faults.latency_per_request = float(sys.argv[1])
info, name = lab.connection_info(), sys.argv[2]
entry = info.inventory_entry(name, password_env=f"COSDOC_BENCH_{name}", auth="negotiate")
print(json.dumps({"entry": entry, "password": info.password}), flush=True)
sys.stdin.read()
lab.stop()
"""
T = TypeVar("T")


@contextlib.contextmanager
def lab_processes(
    count: int, latency: float
) -> Iterator[tuple[list[rotation.Target], list[subprocess.Popen[bytes]]]]:
    """``count`` labs in processes of their own, as the targets of an inventory's customers
    ``k0``, ``k1``, ...; stopped (stdin closed) on leaving."""
    names = [f"k{number}" for number in range(count)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _LAB_PROCESS, str(latency), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for name in names
    ]
    try:
        entries = [
            _inventory_entry(name, process) for name, process in zip(names, processes, strict=True)
        ]
        fleet = parse_inventory("\n".join(entries), Path("bench-fleet.toml"))
        yield [rotation.Target.from_customer(customer) for customer in fleet.customers], processes
    finally:
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in processes:
            process.wait(timeout=30)


def _inventory_entry(name: str, process: subprocess.Popen[bytes]) -> str:
    """The lab's inventory entry; its password goes to the variable the entry names."""
    assert process.stdout is not None
    document = json.loads(process.stdout.readline())
    os.environ[f"COSDOC_BENCH_{name}"] = document["password"]
    return str(document["entry"])


def _cpu_seconds(processes: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU the processes used so far (Linux /proc; 0 elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for process in processes:
        try:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _read(targets: list[rotation.Target]) -> tuple[float, float]:
    """Wall and client CPU seconds of one ``status_many`` over ``targets``."""
    wall, cpu = time.perf_counter(), time.process_time()
    statuses = rotation.status_many(targets)
    assert all(status.windows is not None for status in statuses), "a status read failed"
    return time.perf_counter() - wall, time.process_time() - cpu


class _Phases:
    """Client CPU seconds summed per phase of a status read."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)

    def __call__(self, phase: str, work: Callable[[], T]) -> T:
        started = time.process_time()
        try:
            return work()
        finally:
            self.seconds[phase] += time.process_time() - started


def _status_in_phases(target: rotation.Target, phases: _Phases) -> None:
    """``rotation._windows_status`` step by step, each step's CPU noted in ``phases``."""
    options, consumers = target.windows, target.consumers
    assert options is not None
    pool = phases("session: transport and pool built", lambda: default_pool(options))
    host = WindowsHost(options, pool_factory=lambda _: pool)
    phases("session: opened (TLS, NTLM, runspace pool)", host.open)
    data = phases(
        "gather.ps1 pipeline",
        lambda: host.run_script(
            "gather",
            ServicePatterns=service_patterns(consumers),
            ConfigFiles=config_files(consumers),
        ),
    )
    phases("session: closed", host.close)
    facts = phases(
        "facts parsed", lambda: WindowsFacts.from_document(GatherDocument.from_data(data))
    )
    now = dt.datetime.now(dt.timezone.utc)
    phases("doctor", lambda: diagnose(facts, consumers, now=now))
    address = target.tls_address
    assert address is not None
    assert facts.iis is not None
    bindings = facts.iis.bindings
    phases(
        f"TLS handshakes of the IIS bindings ({len(bindings)})",
        lambda: [rotation._served(binding, address) for binding in bindings],
    )


def _pypsrp_alone(target: rotation.Target) -> None:
    """What pypsrp costs for the same session and pipeline: open, gather.ps1, close."""
    options, consumers = target.windows, target.consumers
    assert options is not None
    with RunspacePool(options.wsman()) as pool:
        shell = PowerShell(pool)
        shell.add_script(load_script("gather"))
        shell.add_parameter("ServicePatterns", service_patterns(consumers))
        shell.add_parameter("ConfigFiles", config_files(consumers))
        shell.invoke()


def _breakdown(targets: list[rotation.Target], rounds: int = 3) -> None:
    phases = _Phases()
    floor = _Phases()
    for _ in range(rounds):
        for target in targets:
            _status_in_phases(target, phases)
            floor("pypsrp alone", functools.partial(_pypsrp_alone, target))
    reads = rounds * len(targets)
    total = sum(phases.seconds.values())
    print(f"client CPU per installation, read one after another ({reads} reads):")
    for phase, seconds in sorted(phases.seconds.items(), key=lambda item: -item[1]):
        print(f"  {seconds / reads * 1000:6.2f} ms  {phase}")
    print(f"  {total / reads * 1000:6.2f} ms  in all")
    alone = floor.seconds["pypsrp alone"] / reads * 1000
    print(
        f"  {alone:6.2f} ms  pypsrp alone for the same session and pipeline (plain "
        "RunspacePool: open, gather.ps1, close; no parsing, doctor or handshakes)"
    )


def _profile(targets: list[rotation.Target]) -> None:
    profile = cProfile.Profile(time.process_time)
    profile.runcall(lambda: [rotation._windows_status(target, 30) for target in targets])
    pstats.Stats(profile).sort_stats("tottime").print_stats(30)


def main() -> None:
    """Start the labs, read one and all, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installations", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-breakdown", action="store_true", help="only the fleet figures")
    arguments = parser.parse_args()
    count = arguments.installations
    with lab_processes(count, arguments.latency) as (targets, processes):
        _read(targets[:1])  # warm-up: imports, first TLS contexts
        one_wall, one_cpu = min(_read(targets[:1]) for _ in range(3))
        labs_before = _cpu_seconds(processes)
        all_wall, all_cpu = _read(targets)
        labs_cpu = _cpu_seconds(processes) - labs_before
        peak_mib = _peak_rss_mib()
        _print_fleet(arguments.latency, count, (one_wall, one_cpu), (all_wall, all_cpu), labs_cpu)
        print(f"client peak RSS: {peak_mib:.0f} MiB")
        if not arguments.no_breakdown:
            _breakdown(targets)
        if arguments.profile:
            _profile(targets)


def _peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    On Linux from ``VmHWM`` (this program's memory only): ``ru_maxrss`` also keeps the peak
    of the process that started it, carried across ``exec`` (a benchmark started from a
    parent that had run the demo read 84 MiB instead of 77).
    """
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


def _print_fleet(
    latency: float, count: int, one: tuple[float, float], every: tuple[float, float], labs: float
) -> None:
    (one_wall, one_cpu), (all_wall, all_cpu) = one, every
    per_extra_ms = (all_cpu - one_cpu) / max(1, count - 1) * 1000
    print(
        f"fleet status, labs in separate processes, {latency * 1000:.0f} ms per WinRM "
        f"request: 1 installation {one_wall:.2f} s, {count} installations {all_wall:.2f} s "
        f"({all_wall / one_wall:.2f}x)"
    )
    print(
        f"client CPU: {one_cpu * 1000:.0f} ms for 1, {per_extra_ms:.1f} ms per extra installation"
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    floor = (all_cpu + labs) / (cores or 1)
    print(
        f"labs' CPU: {labs / count * 1000:.0f} ms per installation; client and labs share "
        f"{cores} cores: the {count} installations need at least {floor:.2f} s of wall time "
        f"here ({max(floor, one_wall) / one_wall:.2f}x one)"
    )


if __name__ == "__main__":
    main()
