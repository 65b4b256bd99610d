"""Time of ``status`` against the lab: session, gather, doctor — and its round trips.

Run: python3 benchmarks/bench_status.py [--runs N] [--latency SECONDS]
Prints, for HTTP and HTTPS, the median time of a whole ``status`` (open a runspace pool, one
gather pipeline, close, doctor), of the gather alone and of the doctor alone, with the
WS-Management requests and pipelines per status counted by the lab's call recording.
``--latency`` adds that many seconds to every request, to see what a WAN link does.
"""

from __future__ import annotations

import argparse
import statistics
import time

from cosdoc_certs.consumers import COSDOC_CATALOG
from cosdoc_certs.facts import diagnose
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.status import status


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.1f} ms"


def bench(lab: Lab, *, https: bool, runs: int) -> None:
    """Run ``status`` ``runs`` times over one transport and print the figures."""
    options = lab.connection_info().options(https=https)
    endpoint = lab.https if https else lab.http
    totals: list[float] = []
    gathers: list[float] = []
    doctors: list[float] = []
    requests = pipelines = 0
    for _ in range(runs):
        endpoint.recorder.reset()
        started = time.perf_counter()
        report = status(options)
        totals.append(time.perf_counter() - started)
        gathers.append(report.gather_seconds)
        requests = sum(endpoint.recorder.requests.values())
        pipelines = len(endpoint.recorder.pipelines)
        started = time.perf_counter()
        diagnose(report.facts, COSDOC_CATALOG, now=report.now)
        doctors.append(time.perf_counter() - started)
    name = "HTTPS" if https else "HTTP "
    print(
        f"{name}  status {_median_ms(totals)}   gather {_median_ms(gathers)}   "
        f"doctor {_median_ms(doctors)}   {requests} WS-Man requests, {pipelines} pipeline(s) "
        f"per status   ({runs} runs, {len(report.consumers)} consumers, "
        f"{len(report.facts.certificates)} certificates)"
    )


def main() -> None:
    """Start the default lab and measure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.0)
    arguments = parser.parse_args()
    with Lab() as lab:
        lab.faults.latency_per_request = arguments.latency
        print(f"lab: {lab!r}, latency per request {arguments.latency * 1000:.0f} ms")
        bench(lab, https=False, runs=arguments.runs)
        bench(lab, https=True, runs=arguments.runs)


if __name__ == "__main__":
    main()
