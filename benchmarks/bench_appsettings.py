"""Throughput of reading and editing appsettings.json: parse, parse + replace, edit diff.

Run: python3 benchmarks/bench_appsettings.py
Prints MB/s and microseconds per file for a realistic 5 KB CosDoc config (BOM, CRLF,
comments) and a 1 MB config of many such sections.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path

from cosdoc_certs.appsettings import AppSettings, edit_diff

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "appsettings_corpus"
NEW = "3F2504E04F8941D39A0C0305E82C3301A1B2C3D4"
EDITS = {
    "$.CertSettings.SigningThumbprint": NEW,
    "$.CertSettings.EncryptionThumbprint": NEW,
}


def _section(index: int) -> str:
    return (
        f"  // section {index}: queue settings, copied from the vendor template\r\n"
        f'  "Queue{index}": {{\r\n'
        f'    "Name": "digihelse-k\\u00f8-{index}",\r\n'
        f'    "Url": "https:\\/\\/helsenett.example\\/queue\\/{index}",\r\n'
        f'    "Retries": {index % 7}, "Enabled": true, "Tags": [ "a", "b", ],\r\n'
        f'    /* timeouts in seconds */ "Timeouts": {{ "Connect": 5, "Read": 30 }},\r\n'
        f"  }},\r\n"
    )


def _config(target_size: int) -> bytes:
    """The Digihelse sender corpus file, grown with sections up to ``target_size`` bytes."""
    base = (CORPUS / "digihelse-sender" / "appsettings.json").read_bytes()
    head, tail = base[: base.index(b"{") + 3], base[base.index(b"{") + 3 :]  # after "{\r\n"
    sections: list[bytes] = []
    index = 0
    while len(base) + sum(map(len, sections)) < target_size:
        sections.append(_section(index).encode())
        index += 1
    return head + b"".join(sections) + tail


def _best_of(action: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``action`` in seconds, the collector off (as timeit)."""
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            action()
            best = min(best, time.perf_counter() - started)
    finally:
        gc.enable()
    return best


def _report(label: str, data: bytes, seconds: float) -> None:
    megabytes = len(data) / 1_000_000
    print(f"  {label:<26} {seconds * 1e6:>12,.0f} µs/file {megabytes / seconds:>8.1f} MB/s")


def main() -> None:
    """Measure and print the figures."""
    for name, size, repeat in [("5 KB config", 5_000, 300), ("1 MB config", 1_000_000, 5)]:
        data = _config(size)
        settings = AppSettings.parse(data)
        edited = settings.replace(EDITS)
        print(f"{name}: {len(data):,} bytes, {len(settings):,} values")
        _report("parse", data, _best_of(lambda d=data: AppSettings.parse(d), repeat))
        _report(
            "parse + replace (2 keys)",
            data,
            _best_of(lambda d=data: AppSettings.parse(d).replace(EDITS), repeat),
        )
        _report(
            "edit_diff",
            data,
            _best_of(
                lambda d=data, e=edited: edit_diff(d, e, source="a.json"), max(1, repeat // 5)
            ),
        )


if __name__ == "__main__":
    main()
