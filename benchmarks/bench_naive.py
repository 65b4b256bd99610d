"""Our ``status`` against the script a consultant would write with pypsrp: one call a question.

Run: python3 benchmarks/bench_naive.py [--runs N]
The naive way asks the server the 20 questions a status needs (certificates, services, key
ACLs, six config files, IIS sites, pools and bindings...) with one ``Client.execute_ps`` each,
as pypsrp's README shows; every call opens and closes a runspace pool. The lab answers those
questions from a handler registered for the benchmark (it does not interpret PowerShell), so
the figures are the protocol's cost: WS-Management requests and wall time. Ours is the real
``status``: one pool, one gather pipeline, the doctor. Both run in this process against the
same lab over HTTPS, at 0 and 50 ms per request; the ratios are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

from pypsrp.client import Client

from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.winrm.scripts import MARKER_PREFIX, ScriptCall, ScriptResult
from cosdoc_certs.status import status

QUESTIONS = (
    r"Get-ChildItem Cert:\LocalMachine\My | Select-Object Thumbprint, NotAfter, HasPrivateKey",
    "Get-CimInstance Win32_Service -Filter \"Name LIKE 'Digihelse%'\"",
    "Get-CimInstance Win32_Service -Filter \"Name LIKE 'KPR%'\"",
    r"Get-Content 'C:\Program Files\DIPS\Digihelse.Mottak\appsettings.json' -Raw",
    r"Get-Content 'C:\Program Files\DIPS\Digihelse.Sender\appsettings.json' -Raw",
    r"Get-Content 'C:\Program Files\DIPS\KPR.Mottak\appsettings.json' -Raw",
    r"Get-Content 'C:\Program Files\DIPS\KPR.Innsending\appsettings.json' -Raw",
    r"Get-Content 'C:\inetpub\Authentication\appsettings.json' -Raw",
    r"Get-Content 'C:\inetpub\SkatteIntegrasjonApi\appsettings.json' -Raw",
    "Import-Module WebAdministration; Get-Website | Select-Object Name, PhysicalPath",
    "Import-Module WebAdministration; Get-WebApplication",
    r"Import-Module WebAdministration; Get-ChildItem IIS:\AppPools",
    "Import-Module WebAdministration; Get-WebBinding -Protocol https",
    r"Get-ChildItem IIS:\SslBindings",
    "netsh http show sslcert",
    r"Get-Acl $env:ProgramData\Microsoft\Crypto\Keys\* | Select-Object Path, AccessToString",
    r"Get-Acl $env:ProgramData\Microsoft\Crypto\RSA\MachineKeys\*",
    "Get-Service Digihelse*, KPR* | Select-Object Name, Status",
    "Get-WebAppPoolState -Name *",
    "$env:COMPUTERNAME",
)
_NAIVE = "naive-question"


def _answer(call: ScriptCall) -> ScriptResult:
    return ScriptResult(output=["(an answer of a few hundred bytes) " * 8])


def naive_status(lab: Lab) -> int:
    """Ask every question with its own ``execute_ps``; the number of answers."""
    info = lab.connection_info()
    client = Client(
        info.host,
        port=info.https_port,
        username=info.username,
        password=info.password,
        auth="basic",
        ssl=True,
        cert_validation=str(info.ca_file),
        no_proxy=True,
    )
    answers = 0
    for question in QUESTIONS:
        output, _streams, had_errors = client.execute_ps(f"{MARKER_PREFIX} {_NAIVE}\n{question}")
        assert not had_errors, question
        assert output, question
        answers += 1
    return answers


def _measure(lab: Lab, run: object, runs: int) -> tuple[float, int]:
    """Median wall seconds of ``run()`` and the WS-Man requests of one run."""
    seconds: list[float] = []
    requests = 0
    for _ in range(runs):
        lab.https.recorder.reset()
        started = time.perf_counter()
        run()  # type: ignore[operator]
        seconds.append(time.perf_counter() - started)
        requests = sum(lab.https.recorder.requests.values())
    return statistics.median(seconds), requests


def main() -> None:
    """Measure both ways at 0 and 50 ms per request and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    with Lab(svarut=False) as lab:
        lab.registry.register(_NAIVE, _answer)
        options = lab.connection_info().options(https=True)
        for latency in (0.0, 0.05):
            lab.faults.latency_per_request = latency
            ours, our_requests = _measure(lab, lambda: status(options), arguments.runs)
            naive, naive_requests = _measure(lab, lambda: naive_status(lab), arguments.runs)
            print(
                f"{latency * 1000:3.0f} ms/request: status {ours * 1000:6.0f} ms, "
                f"{our_requests} WS-Man requests; naive pypsrp ({len(QUESTIONS)} execute_ps) "
                f"{naive * 1000:6.0f} ms, {naive_requests} requests; "
                f"naive/ours {naive / ours:.1f}x time, "
                f"{naive_requests / our_requests:.0f}x requests"
            )


if __name__ == "__main__":
    main()
