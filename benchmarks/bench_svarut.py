"""Time of the SvarUT steps: SSH connect, gather, plan, and a whole rotation with its rollback.

Run: python3 benchmarks/bench_svarut.py [--runs N]
Prints medians against the in-process lab host, and — when run as root with sshd, sudo and
nginx installed (scripts/setup-dev) — against a real OpenSSH sshd with real sudo and nginx
(the integration tests' set-up). A rotation = gather, plan, apply (stage, install, edit
prod.env, restart, verify by TLS); each run is rolled back afterwards (timed too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosdoc_certs import svarut
from cosdoc_certs.lab.certs import default_ca, make_ssl_certificate
from cosdoc_certs.lab.svarut_host import LabSvarutHost
from cosdoc_certs.svarut import SINGLE, NewCertificate, SvarutTarget


def _median_ms(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def _connect_once(target: SvarutTarget) -> None:
    connection = await target.connect()
    await connection.close()


def _measure(
    name: str, target: SvarutTarget, new: NewCertificate, runs: int, journals: Path
) -> None:
    connect = _median_ms(lambda: asyncio.run(_connect_once(target)), runs)
    gather = _median_ms(lambda: svarut.status(target), runs)
    rotations, rollbacks = [], []
    for _ in range(runs):
        start = time.perf_counter()
        svarut.apply(target, svarut.plan(target, new), journal_dir=journals)
        rotations.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        svarut.rollback(target, journal_dir=journals)
        rollbacks.append((time.perf_counter() - start) * 1000)
    print(
        f"{name:<28} connect {connect:7.1f} ms   gather (connect+status) {gather:7.1f} ms   "
        f"rotation {statistics.median(rotations):7.1f} ms   rollback "
        f"{statistics.median(rollbacks):7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    ca = default_ca()
    old, new_issued = make_ssl_certificate(ca), make_ssl_certificate(ca)
    new = NewCertificate(new_issued.certificate, new_issued.private_key, new_issued.chain)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        with LabSvarutHost(folder / "lab") as lab:
            lab.seed(SINGLE, cert_pem=old.cert_pem(), key_pem=old.key_pem())
            _measure("lab host (in-process)", lab.target(), new, runs, folder / "journals")
        if os.geteuid() != 0:
            print("real sshd + nginx: skipped (run as root after scripts/setup-dev)")
            return
        from tests.svarut.real_host import missing_tools, running_host

        if missing_tools():
            print(f"real sshd + nginx: skipped ({', '.join(missing_tools())} missing)")
            return
        env = "SSL_CERT_FILENAME = {cert}\nSSL_CERT_KEY_FILENAME = {key}\n"
        with running_host() as host:
            installation = host.install(
                SINGLE, cert_pem=old.cert_pem(), key_pem=old.key_pem(), env_template=env
            )
            _measure(
                "real sshd + sudo + nginx",
                host.target(installation),
                new,
                runs,
                folder / "journals",
            )


if __name__ == "__main__":
    main()
