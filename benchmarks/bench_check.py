"""Time and WS-Man requests of ``apply --check`` on every lab scenario.

Run: python3 benchmarks/bench_check.py [--runs N] [--latency SECONDS]
Each run builds the scenario's lab (certificates made once), gathers and plans the rotation to
the renewed certificates over one HTTPS session, then times ``check_windows`` alone: the one
``apply.ps1 -Check`` pipeline. Prints per scenario the median check time, the WS-Management
requests and pipelines of the check (from the lab's call recording), the actions checked and
the blockers found; then the same for gather + plan, for scale.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import (
    REFUSED_BEFORE_APPLY,
    SCENARIOS,
    LabCertificates,
    make_lab_certificates,
)
from cosdoc_certs.status import gather
from cosdoc_certs.windows.check import check_windows
from cosdoc_certs.windows.connection import WindowsHost
from cosdoc_certs.windows.planning import plan_windows

HOST = "cosdoc-app01"


def _bundle(certificates: LabCertificates, folder: Path) -> CertificateBundle:
    files = certificates.write_files(folder)
    return load_bundle([files.pair_pfx, files.ssl_pfx], certificates.pfx_password.encode())


def one_check(
    scenario: str, certificates: LabCertificates, latency: float, folder: Path
) -> dict[str, float]:
    """Plan and check one scenario; seconds and the recorder's counts of the check alone."""
    server = SCENARIOS[scenario](folder / "server", certificates=certificates)
    bundle = _bundle(certificates, folder / "pfx")
    with Lab(server=server, root=folder / "lab", svarut=False) as lab:
        lab.faults.latency_per_request = latency
        with WindowsHost(lab.connection_info().options(https=True)) as host:
            started = time.perf_counter()
            facts = gather(host)
            plan = plan_windows(facts, bundle, host=HOST)
            planned = time.perf_counter()
            lab.https.recorder.reset()
            found = check_windows(host, plan, bundle, facts)
            checked = time.perf_counter()
        recorder = lab.https.recorder
        return {
            "plan": planned - started,
            "check": checked - planned,
            "requests": sum(recorder.requests.values()),
            "pipelines": len(recorder.pipelines),
            "actions": len(found.verdicts),
            "blockers": len(found.blockers),
        }


def main() -> None:
    """Measure the check of every scenario."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.0)
    arguments = parser.parse_args()
    certificates = make_lab_certificates()
    print(
        f"{'scenario':<20} {'check':>9} {'requests':>8} {'pipelines':>9} {'actions':>7}"
        f" {'blockers':>8} {'gather+plan':>11}"
    )
    for scenario in SCENARIOS:
        if scenario in REFUSED_BEFORE_APPLY:
            continue
        runs = []
        for number in range(arguments.runs):
            with tempfile.TemporaryDirectory(prefix="bench-check-") as folder:
                runs.append(
                    one_check(scenario, certificates, arguments.latency, Path(folder) / str(number))
                )
        last = runs[-1]
        check = statistics.median(r["check"] for r in runs) * 1000
        plan = statistics.median(r["plan"] for r in runs) * 1000
        print(
            f"{scenario:<20} {check:7.1f}ms {last['requests']:8.0f} {last['pipelines']:9.0f}"
            f" {last['actions']:7.0f} {last['blockers']:8.0f} {plan:9.1f}ms"
        )
    print(
        f"({arguments.runs} runs each, HTTPS, {arguments.latency * 1000:.0f} ms latency per"
        " request; check = one apply.ps1 -Check call on an open session)"
    )


if __name__ == "__main__":
    main()
