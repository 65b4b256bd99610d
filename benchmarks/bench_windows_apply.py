"""Time of a full Windows rotation of the default lab: plan + apply + verify-gather.

Run: python3 benchmarks/bench_windows_apply.py [--runs N] [--latency SECONDS ...]
Each run builds a fresh default lab installation (certificates made once), then over one
session (HTTPS): gather and plan, apply (one ``apply.ps1`` pipeline), and the verify
re-gather. Prints the median time of each part and of the whole, with the WS-Management
requests and pipelines the lab's call recording counted — without latency and with 50 ms
per request (``--latency`` changes the list).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import LabCertificates, default_installation, make_lab_certificates
from cosdoc_certs.status import gather
from cosdoc_certs.windows.apply import apply_windows
from cosdoc_certs.windows.connection import WindowsHost
from cosdoc_certs.windows.planning import plan_windows

HOST = "cosdoc-app01"


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.1f} ms"


def _bundle(certificates: LabCertificates, folder: Path) -> CertificateBundle:
    files = certificates.write_files(folder)
    return load_bundle([files.pair_pfx, files.ssl_pfx], certificates.pfx_password.encode())


def one_rotation(certificates: LabCertificates, latency: float, folder: Path) -> dict[str, float]:
    """Rotate a fresh default lab; the seconds of each part and the recorder's counts."""
    server = default_installation(folder / "server", certificates=certificates)
    bundle = _bundle(certificates, folder / "pfx")
    with Lab(server=server, root=folder / "lab", svarut=False) as lab:
        lab.faults.latency_per_request = latency
        lab.https.recorder.reset()
        with WindowsHost(lab.connection_info().options(https=True)) as host:
            started = time.perf_counter()
            facts = gather(host)
            plan = plan_windows(facts, bundle, host=HOST)
            planned = time.perf_counter()
            result = apply_windows(host, plan, bundle, facts, journal_dir=folder / "journals")
            applied = time.perf_counter()
            gather(host)
            verified = time.perf_counter()
        assert not result.results or all(r.ok for r in result.results)
        recorder = lab.https.recorder
        return {
            "plan": planned - started,
            "apply": applied - planned,
            "verify": verified - applied,
            "total": verified - started,
            "actions": len(result.results),
            "requests": sum(recorder.requests.values()),
            "pipelines": len(recorder.pipelines),
        }


def main() -> None:
    """Measure rotations with each latency."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency", type=float, nargs="*", default=[0.0, 0.05])
    arguments = parser.parse_args()
    certificates = make_lab_certificates()
    for latency in arguments.latency:
        runs = []
        for number in range(arguments.runs):
            with tempfile.TemporaryDirectory(prefix="bench-windows-apply-") as folder:
                runs.append(one_rotation(certificates, latency, Path(folder) / str(number)))
        last = runs[-1]
        median = {
            part: _ms([r[part] for r in runs]) for part in ("total", "plan", "apply", "verify")
        }
        print(
            f"latency {latency * 1000:3.0f} ms/request: rotation {median['total']}"
            f" (gather+plan {median['plan']}, apply {median['apply']},"
            f" verify-gather {median['verify']}); {last['actions']:.0f} actions,"
            f" {last['requests']:.0f} WS-Man requests, {last['pipelines']:.0f} pipelines"
            f" ({arguments.runs} runs, HTTPS)"
        )


if __name__ == "__main__":
    main()
