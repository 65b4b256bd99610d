"""Time of a full Windows rotation of the default lab: plan + apply + verify.

Run: python3 benchmarks/bench_windows_apply.py [--runs N] [--latency SECONDS ...] [--auth ...]
Each run builds a fresh default lab installation (certificates made once), then over one
session: gather and plan, apply (one ``apply.ps1`` pipeline, which ends by reading the state
it reached with gather.ps1), and the verification over that post-state with real TLS
handshakes (no pipeline of its own); then, in a session of its own, the rollback of that run
from its journal (the gather that looks for hand edits, and the undo, whose check that the
original bytes are back is made over the state the undo call read at its end).
Prints the median time of each part and of the whole, with the WS-Management requests and
pipelines the lab's call recording counted (the rollback's apart), the HTTP requests
(authentication legs included) and the authentication handshakes — without latency and with
50 ms per request (``--latency`` changes the list), for each way of authenticating (``--auth``
picks some: negotiate-http, ntlm-http, kerberos-http, negotiate-https, basic-https,
certificate-https; kerberos-http needs MIT Kerberos, see ``cosdoc_certs.lab.kerberos``).
A Receive that got only the first command's first-use progress record (it depends on timing)
is counted apart.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.journal import Journal, Outcome
from cosdoc_certs.lab.kerberos import SERVICE_HOST, LabRealm, kerberos_tools_missing
from cosdoc_certs.lab.runner import ConnectionInfo, Lab
from cosdoc_certs.lab.scenarios import LabCertificates, default_installation, make_lab_certificates
from cosdoc_certs.status import gather
from cosdoc_certs.windows.apply import apply_windows, rollback_windows
from cosdoc_certs.windows.connection import ConnectionOptions, WindowsHost
from cosdoc_certs.windows.planning import plan_windows
from cosdoc_certs.windows.verify import POST_STATE, endpoint_map, verify_desired_facts

HOST = "cosdoc-app01"
AUTHS = (
    "negotiate-http",
    "ntlm-http",
    "kerberos-http",
    "negotiate-https",
    "basic-https",
    "certificate-https",
)


def _options(info: ConnectionInfo, auth: str) -> ConnectionOptions:
    method, scheme = auth.split("-")
    options = info.options(https=scheme == "https", auth=method)
    if method == "kerberos":
        options = dataclasses.replace(options, server=SERVICE_HOST, username=None, password=None)
    return options


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.1f} ms"


def _bundle(certificates: LabCertificates, folder: Path) -> CertificateBundle:
    files = certificates.write_files(folder)
    return load_bundle([files.pair_pfx, files.ssl_pfx], certificates.pfx_password.encode())


def one_rotation(
    certificates: LabCertificates,
    latency: float,
    folder: Path,
    auth: str = "negotiate-https",
    keytab: Path | None = None,
) -> dict[str, float]:
    """Rotate a fresh default lab; the seconds of each part and the recorder's counts."""
    server = default_installation(folder / "server", certificates=certificates)
    bundle = _bundle(certificates, folder / "pfx")
    with Lab(server=server, root=folder / "lab", svarut=False, keytab=keytab) as lab:
        lab.faults.latency_per_request = latency
        endpoint = lab.https if auth.endswith("https") else lab.http
        endpoint.recorder.reset()
        with WindowsHost(_options(lab.connection_info(), auth)) as host:
            started = time.perf_counter()
            facts = gather(host)
            plan = plan_windows(facts, bundle, host=HOST)
            planned = time.perf_counter()
            result = apply_windows(host, plan, bundle, facts, journal_dir=folder / "journals")
            applied = time.perf_counter()
            assert result.post_state is not None, result.post_state_problem
            report = verify_desired_facts(
                result.post_state,
                server=host.options.server,
                tls_address=endpoint_map(lab.connection_info().tls_endpoints),
                facts_from=POST_STATE,
            )
            verified = time.perf_counter()
        assert not result.results or all(r.ok for r in result.results)
        assert report.ok, report.to_text()
        recorder = endpoint.recorder
        figures = {
            "http": endpoint.http_posts,
            "handshakes": len(endpoint.auth.authentications),
            "plan": planned - started,
            "apply": applied - planned,
            "verify": verified - applied,
            "total": verified - started,
            "actions": len(result.results),
            "early": recorder.progress_only_receives,
            "requests": sum(recorder.requests.values()) - recorder.progress_only_receives,
            "pipelines": len(recorder.pipelines),
        }
        recorder.reset()
        rollback_started = time.perf_counter()
        with WindowsHost(_options(lab.connection_info(), auth)) as host:
            undone = rollback_windows(host, Journal.load(result.journal_path))
        figures["rollback"] = time.perf_counter() - rollback_started
        assert undone.outcome is Outcome.ROLLED_BACK, undone.message
        assert undone.post_state is not None, undone.post_state_problem
        early = figures["rollback_early"] = recorder.progress_only_receives
        figures["rollback_requests"] = sum(recorder.requests.values()) - early
        figures["rollback_pipelines"] = len(recorder.pipelines)
        return figures


def _early(receives: float) -> str:
    return f" (+{receives:.0f} Receive for the first-use progress record alone)" if receives else ""


def main() -> None:
    """Measure rotations for each way of authenticating, with each latency."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency", type=float, nargs="*", default=[0.0, 0.05])
    parser.add_argument("--auth", nargs="*", choices=AUTHS, default=list(AUTHS))
    arguments = parser.parse_args()
    certificates = make_lab_certificates()
    with contextlib.ExitStack() as stack:
        keytab = None
        if "kerberos-http" in arguments.auth:
            if kerberos_tools_missing():
                print(f"kerberos-http skipped: missing {', '.join(kerberos_tools_missing())}")
                arguments.auth.remove("kerberos-http")
            else:
                realm = stack.enter_context(LabRealm())
                realm.kinit()
                os.environ.update(realm.environment)
                keytab = realm.keytab
        for auth in arguments.auth:
            for latency in arguments.latency:
                _report(certificates, auth, latency, arguments.runs, keytab)


def _report(
    certificates: LabCertificates, auth: str, latency: float, runs: int, keytab: Path | None
) -> None:
    done = []
    for number in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-windows-apply-") as folder:
            done.append(
                one_rotation(certificates, latency, Path(folder) / str(number), auth, keytab)
            )
    last = done[-1]
    parts = ("total", "plan", "apply", "verify", "rollback")
    median = {part: _ms([r[part] for r in done]) for part in parts}
    print(
        f"{auth:17} latency {latency * 1000:3.0f} ms/request: rotation {median['total']}"
        f" (gather+plan {median['plan']}, apply {median['apply']},"
        f" verify {median['verify']}); {last['actions']:.0f} actions,"
        f" {last['requests']:.0f} WS-Man requests{_early(last['early'])},"
        f" {last['http']:.0f} HTTP requests,"
        f" {last['handshakes']:.0f} handshake(s), {last['pipelines']:.0f} pipelines;"
        f" rollback {median['rollback']} in a session of its own,"
        f" {last['rollback_pipelines']:.0f} pipelines, {last['rollback_requests']:.0f} WS-Man"
        f" requests{_early(last['rollback_early'])} ({runs} runs)"
    )


if __name__ == "__main__":
    main()
