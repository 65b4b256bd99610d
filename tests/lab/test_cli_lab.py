"""The running lab: ``Lab`` with the real pypsrp client, and ``cosdoc-certs lab`` as a process."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from pypsrp.powershell import PowerShell, RunspacePool

from cosdoc_certs.errors import InputError
from cosdoc_certs.lab.runner import ConnectionInfo, Lab, SvarutInfo
from cosdoc_certs.svarut.api import status as svarut_status
from cosdoc_certs.thumbprints import thumbprint_of_der
from cosdoc_certs.windows.connection import ConnectionOptions, CredentialsError, WindowsHost

STARTUP_SECONDS = 60
STOP_SECONDS = 20


# -- Lab, in process -----------------------------------------------------------------------------


@pytest.mark.parametrize("https", [True, False], ids=["https", "http"])
def test_the_real_pypsrp_client_runs_the_gather_twin_through_the_lab(lab: Lab, https: bool) -> None:
    options = lab.connection_info().options(https=https)
    with WindowsHost(options) as host:
        facts = host.run_script("gather")
    assert facts["computerName"] == "COSDOC-APP01"
    recorder = (lab.https if https else lab.http).recorder
    assert "gather" in recorder.script_names


def test_a_script_without_a_twin_fails_with_a_clear_error_record(lab: Lab) -> None:
    with RunspacePool(lab.connection_info().options().wsman()) as pool:
        shell = PowerShell(pool)
        shell.add_script("Get-ChildItem Cert:\\LocalMachine\\My")
        output = shell.invoke()
    assert output == []
    assert shell.had_errors
    messages = [str(record) for record in shell.streams.error]
    assert len(messages) == 1
    assert "does not interpret PowerShell" in messages[0]


def test_wrong_credentials_are_refused(lab: Lab) -> None:
    info = lab.connection_info()
    options = ConnectionOptions(
        server=info.host,
        port=info.https_port,
        username=info.username,
        password="not-" + info.password,
        auth="basic",
        ca_bundle=str(info.ca_file),
    )
    with pytest.raises(CredentialsError, match="refused the credentials"), WindowsHost(options):
        pass


def test_connection_info_names_every_endpoint_and_hides_the_passwords(lab: Lab) -> None:
    info = lab.connection_info()
    assert info.host == "127.0.0.1"
    assert {info.http_port, info.https_port}.isdisjoint({0, 5985, 5986})
    assert info.ca_file.read_bytes() == lab.server.certificates.ca.root_pem()
    assert set(info.tls_endpoints) == {"*:443", "0.0.0.0:443"}
    assert set(info.pfx_files) == {"signing", "encryption", "pair", "ssl"}
    assert all(path.is_file() for path in info.pfx_files.values())
    assert info.password not in repr(info)
    assert info.pfx_password not in repr(info)
    assert json.loads(json.dumps(info.as_dict()))["pfx_password_env"] == "COSDOC_LAB_PFX_PASSWORD"


def test_stopping_the_lab_closes_every_port(tmp_path: Path) -> None:
    with Lab(root=tmp_path) as running:
        info = running.connection_info()
    addresses = [(info.host, info.http_port), (info.host, info.https_port)]
    addresses += [_address(real) for real in info.tls_endpoints.values()]
    for address in addresses:
        with pytest.raises(OSError):  # noqa: PT011 -- refused or reset, depending on timing
            socket.create_connection(address, timeout=2).close()
    assert (tmp_path / "server" / "C" / "Program Files" / "DIPS").is_dir()


def test_a_root_holding_an_earlier_server_is_refused(tmp_path: Path) -> None:
    (tmp_path / "server" / "C").mkdir(parents=True)
    with pytest.raises(InputError, match="already holds the files of a lab server"):
        Lab(root=tmp_path)


def test_an_unknown_scenario_is_refused() -> None:
    with pytest.raises(InputError, match="unknown lab scenario 'nope' — use one of: broken-wmi"):
        Lab(scenario="nope")


# -- cosdoc-certs lab, as a subprocess -----------------------------------------------------------


@contextmanager
def _lab_process(*arguments: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``cosdoc-certs lab ARGUMENTS``; yield it with what it printed until it was ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cosdoc_certs", "lab", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process, _read_until_ready(process, json_output="--json" in arguments)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(STOP_SECONDS)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _read_until_ready(process: subprocess.Popen[str], *, json_output: bool) -> str:
    """What the lab printed, read straight from the pipe until it is complete."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(descriptor, selectors.EVENT_READ)
    deadline = time.monotonic() + STARTUP_SECONDS
    data = b""
    while time.monotonic() < deadline:
        if not selector.select(timeout=1):
            continue
        chunk = os.read(descriptor, 65536)
        if not chunk:
            break
        data += chunk
        text = data.decode("utf-8")
        if (json_output and text.rstrip().endswith("\n}")) or "Press Ctrl+C" in text:
            return text
    stderr = process.stderr.read() if process.stderr and process.poll() is not None else ""
    raise AssertionError(f"the lab did not get ready: {data!r} {stderr!r}")


def _stop(process: subprocess.Popen[str], signum: int) -> str:
    process.send_signal(signum)
    assert process.wait(STOP_SECONDS) == 0
    assert process.stderr is not None
    return process.stderr.read()


def _info(document: dict[str, Any]) -> ConnectionInfo:
    lab_only = ("scenario", "allow_unencrypted", "kerberos")
    fields = {key: value for key, value in document.items() if key not in lab_only}
    fields["ca_file"] = Path(fields["ca_file"])
    for name in ("client_certificate", "client_key"):
        fields[name] = Path(fields[name])
    fields["server_root"] = Path(fields["server_root"])
    fields["pfx_files"] = {name: Path(path) for name, path in fields["pfx_files"].items()}
    fields["svarut"] = SvarutInfo(
        **{**fields["svarut"], "client_key": Path(fields["svarut"]["client_key"])}
    )
    return ConnectionInfo(**fields)


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def test_lab_json_prints_connection_info_serves_clients_and_stops_on_sigint() -> None:
    with _lab_process("--json") as (process, printed):
        document = json.loads(printed)
        info = _info(document)
        assert document["scenario"] == "default"
        with WindowsHost(info.options()) as host:
            assert host.run_script("gather")["computerName"] == "COSDOC-APP01"
        context = ssl.create_default_context(cafile=str(info.ca_file))
        with (
            socket.create_connection(_address(info.tls_endpoints["*:443"]), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="cosdoc.testkommune.no") as tls,
        ):
            served = thumbprint_of_der(tls.getpeercert(binary_form=True) or b"")
        assert served in _store_thumbprints(info)
        stderr = _stop(process, signal.SIGINT)
    assert "lab stopped" in stderr
    assert "Traceback" not in stderr
    assert not info.server_root.exists()
    assert not info.ca_file.exists()


def test_lab_text_output_says_how_to_connect_and_root_keeps_the_files(tmp_path: Path) -> None:
    with _lab_process("--root", str(tmp_path), "--scenario", "missing-acl") as (process, printed):
        for expected in (
            "WinRM",
            "user      lab-admin",
            "CA file",
            "*:443",
            "COSDOC_LAB_PFX_PASSWORD",
            "cosdoc-certs status --host 127.0.0.1",
            "ssh -p",
        ):
            assert expected in printed
        stderr = _stop(process, signal.SIGTERM)
    assert "Traceback" not in stderr
    assert (tmp_path / "server" / "C" / "Program Files" / "DIPS").is_dir()
    assert (tmp_path / "client" / "renewed-pair.pfx").is_file()


@pytest.mark.parametrize(
    ("flag", "expected"),
    [("--allow-unencrypted", "--insecure-http"), ("--kerberos", "--auth kerberos")],
)
def test_every_printed_status_command_works_against_the_lab(
    request: pytest.FixtureRequest, flag: str, expected: str
) -> None:
    """The lab prints one command per authentication; each one runs as printed."""
    if flag == "--kerberos":
        request.getfixturevalue("kerberos_realm")  # skips (or fails in CI) without Kerberos
    with _lab_process(flag) as (process, printed):
        lines = [line.strip() for line in printed.splitlines()]
        export = next(line for line in lines if line.startswith("export COSDOC_LAB_WINRM"))
        commands = [line for line in lines if "cosdoc-certs status" in line]
        assert len(commands) == 6
        assert any("--http" in line and "--auth" not in line for line in commands)
        assert any(expected in line for line in commands)
        for line in commands:
            completed = subprocess.run(
                ["bash", "-c", f"{export}\n{line} --json"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert completed.returncode in (0, 3), f"{line}: {completed.stderr}"
            assert json.loads(completed.stdout)["computer_name"] == "COSDOC-APP01"
        stderr = _stop(process, signal.SIGTERM)
    assert "Traceback" not in stderr


def _store_thumbprints(info: ConnectionInfo) -> set[str]:
    """Thumbprints of the SSL certificates the lab's server holds (read over the lab's gather)."""
    with WindowsHost(info.options(https=False)) as host:
        facts = host.run_script("gather")
    return {str(cert["thumbprint"]).upper() for cert in facts["certificates"]}


def test_the_lab_svarut_host_serves_the_current_ssl_certificate_over_ssh_and_tls(lab: Lab) -> None:
    info = lab.connection_info()
    assert info.svarut is not None
    facts = svarut_status(info.svarut.target())
    current = lab.server.certificates.current_ssl.thumbprint
    assert facts.layout.name == "single"
    leaf = facts.current_chain[0]
    assert thumbprint_of_der(leaf.public_bytes(Encoding.DER)) == current
    context = ssl.create_default_context(cafile=str(info.ca_file))
    with (
        socket.create_connection((info.svarut.host, info.svarut.tls_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="cosdoc.testkommune.no") as tls,
    ):
        assert thumbprint_of_der(tls.getpeercert(binary_form=True) or b"") == current
