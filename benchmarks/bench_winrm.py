"""Benchmark of the lab WinRM endpoint with the real pypsrp client, over HTTP and HTTPS.

HTTP uses Negotiate (NTLM) with every message sealed, as on a default Windows Server; HTTPS
uses Basic. Prints, per scheme: RunspacePool open time, round-trip time of one small script
invocation, and throughput of a script returning 1 MB (and of a 1 MB parameter). Run:

    python3 benchmarks/bench_winrm.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from cosdoc_certs.lab.certs import make_ssl_certificate, make_test_ca
from cosdoc_certs.lab.winrm import (
    ScriptRegistry,
    ScriptResult,
    WinRMEndpoint,
    tls_context,
)

USER, PASSWORD = "bench", "Bench-Pa55"
MB = 1024 * 1024
PAYLOAD = bytes(range(256)) * (MB // 256)


def _registry() -> ScriptRegistry:
    registry = ScriptRegistry()
    registry.register("ping", lambda call: ScriptResult(output=["pong"]))
    registry.register("one-mb", lambda call: ScriptResult(output=[PAYLOAD]))
    registry.register("size", lambda call: ScriptResult(output=[len(call.parameters["Data"])]))
    return registry


def _invoke(pool: RunspacePool, name: str, **parameters: Any) -> list[Any]:
    ps = PowerShell(pool)
    ps.add_script(f"# cosdoc-certs-script: {name}\n")
    for key, value in parameters.items():
        ps.add_parameter(key, value)
    output: list[Any] = ps.invoke()
    return output


def _median_seconds(rounds: int, action: Callable[[], object]) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _bench(endpoint: WinRMEndpoint, ca_file: Path | None, rounds: int) -> None:
    def connection() -> WSMan:
        return WSMan(
            "127.0.0.1",
            port=endpoint.port,
            username=USER,
            password=PASSWORD,
            ssl=ca_file is not None,
            auth="basic" if ca_file is not None else "negotiate",
            encryption="always" if ca_file is None else "auto",
            no_proxy=True,
            cert_validation=str(ca_file) if ca_file is not None else False,
        )

    def open_and_close() -> None:
        with RunspacePool(connection()):
            pass

    open_s = _median_seconds(rounds, open_and_close)
    with RunspacePool(connection()) as pool:
        invoke_s = _median_seconds(rounds * 5, lambda: _invoke(pool, "ping"))
        out_s = _median_seconds(max(3, rounds // 4), lambda: _invoke(pool, "one-mb"))
        in_s = _median_seconds(max(3, rounds // 4), lambda: _invoke(pool, "size", Data=PAYLOAD))
    scheme = endpoint.scheme.upper()
    print(f"{scheme:5}  pool open (Create + open + Delete)  {open_s * 1000:8.1f} ms")
    print(f"{scheme:5}  invoke round trip (small script)    {invoke_s * 1000:8.1f} ms")
    print(
        f"{scheme:5}  1 MB output                          {out_s * 1000:8.1f} ms  "
        f"{1 / out_s:6.1f} MB/s"
    )
    print(
        f"{scheme:5}  1 MB parameter                       {in_s * 1000:8.1f} ms  "
        f"{1 / in_s:6.1f} MB/s"
    )


def main() -> None:
    """Run the benchmark over HTTP, then over HTTPS."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=20, help="samples per figure (median)")
    rounds = parser.parse_args().rounds
    registry = _registry()
    with WinRMEndpoint(registry, username=USER, password=PASSWORD) as endpoint:
        _bench(endpoint, None, rounds)
    ca = make_test_ca()
    issued = make_ssl_certificate(ca)
    tls = tls_context(issued.cert_pem() + issued.chain_pem(), issued.key_pem())
    with tempfile.TemporaryDirectory() as folder:
        ca_file = Path(folder, "ca.pem")
        ca_file.write_bytes(ca.root_pem())
        with WinRMEndpoint(registry, username=USER, password=PASSWORD, tls=tls) as endpoint:
            _bench(endpoint, ca_file, rounds)


if __name__ == "__main__":
    main()
