"""The real pypsrp 0.9.1 client against the lab WinRM endpoint, over HTTP and HTTPS."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pypsrp.client import Client
from pypsrp.complex_objects import ObjectMeta, PSInvocationState
from pypsrp.exceptions import AuthenticationError, WinRMError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from cosdoc_certs.lab.certs import make_ssl_certificate, make_test_ca
from cosdoc_certs.lab.winrm import (
    ScriptCall,
    ScriptRegistry,
    ScriptResult,
    WinRMEndpoint,
    register_pypsrp_file_transfer,
    tls_context,
)

USER = "lab\\consultant"
PASSWORD = "Correct-Horse-9"
MB = 1024 * 1024


def marker(name: str, body: str = "param($Value)") -> str:
    """A lab script: the marker line, then PowerShell the lab never interprets."""
    return f"# cosdoc-certs-script: {name}\n{body}\n"


def _echo(call: ScriptCall) -> ScriptResult:
    return ScriptResult(output=[call.parameters[k] for k in sorted(call.parameters)])


def _digest(call: ScriptCall) -> ScriptResult:
    return ScriptResult(output=[hashlib.sha256(call.parameters["Data"]).hexdigest()])


def _big_output(call: ScriptCall) -> ScriptResult:
    return ScriptResult(output=[bytes(range(256)) * (call.parameters["Size"] // 256)])


def _mixed(call: ScriptCall) -> ScriptResult:
    return ScriptResult(output=["kept"], errors=["first problem", "second problem"])


def _throws(call: ScriptCall) -> ScriptResult:
    return ScriptResult(output=["partial"], terminating_error="Keyset does not exist")


def _crashes(call: ScriptCall) -> ScriptResult:
    raise RuntimeError("model bug")


def _sums_input(call: ScriptCall) -> ScriptResult:
    return ScriptResult(output=[sum(call.input)])


@pytest.fixture
def registry() -> ScriptRegistry:
    registry = ScriptRegistry()
    for name, handler in {
        "echo": _echo,
        "digest": _digest,
        "big-output": _big_output,
        "mixed": _mixed,
        "throws": _throws,
        "crashes": _crashes,
        "sums-input": _sums_input,
    }.items():
        registry.register(name, handler)
    return registry


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    ca = make_test_ca()
    issued = make_ssl_certificate(ca, hostnames=["lab.cosdoc.test"])
    ca_file = tmp_path_factory.mktemp("ca") / "lab-ca.pem"
    ca_file.write_bytes(ca.root_pem())
    context = tls_context(issued.cert_pem() + issued.chain_pem(), issued.key_pem())
    return context, ca_file


@pytest.fixture(params=["http", "https"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def endpoint(
    registry: ScriptRegistry, scheme: str, tls_material: tuple[Any, Path]
) -> Iterator[WinRMEndpoint]:
    tls = tls_material[0] if scheme == "https" else None
    with WinRMEndpoint(registry, username=USER, password=PASSWORD, tls=tls) as endpoint:
        yield endpoint


@pytest.fixture
def connect(endpoint: WinRMEndpoint, tls_material: tuple[Any, Path]) -> Any:
    """Build WSMan keyword arguments for the endpoint, as a consultant would write them.

    Like a default Windows Server, HTTP takes Negotiate with sealed messages; HTTPS takes
    Basic for the local account.
    """

    def kwargs(**overrides: Any) -> dict[str, Any]:
        options: dict[str, Any] = {
            "port": endpoint.port,
            "username": USER,
            "password": PASSWORD,
            "ssl": endpoint.scheme == "https",
            "auth": "basic" if endpoint.scheme == "https" else "negotiate",
            "encryption": "always" if endpoint.scheme == "http" else "auto",
            "no_proxy": True,
            "cert_validation": str(tls_material[1]) if endpoint.scheme == "https" else False,
        }
        options.update(overrides)
        return options

    return kwargs


def wsman(connect: Any, **overrides: Any) -> WSMan:
    return WSMan("127.0.0.1", **connect(**overrides))


def run(pool: RunspacePool, name: str, **parameters: Any) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_script(marker(name))
    for key, value in parameters.items():
        ps.add_parameter(key, value)
    ps.invoke()
    return ps


VALUES = [
    pytest.param("Grüß Gott — ✓", id="str"),
    pytest.param(42, id="int"),
    pytest.param(True, id="bool-true"),
    pytest.param(False, id="bool-false"),
    pytest.param(b"\x00\x01binary\xff", id="bytes"),
    pytest.param(["a", 1, True], id="list"),
    pytest.param({"Thumbprint": "3F" * 20, "HasPrivateKey": True}, id="dict"),
]


@pytest.mark.parametrize("value", VALUES)
def test_parameters_and_outputs_round_trip_as_python_values(
    connect: Any, endpoint: WinRMEndpoint, value: Any
) -> None:
    with RunspacePool(wsman(connect)) as pool:
        ps = run(pool, "echo", Value=value)
    assert ps.output == [value]
    assert type(ps.output[0]) is type(value)
    assert not ps.had_errors
    assert ps.state == PSInvocationState.COMPLETED
    (script,) = endpoint.recorder.scripts
    assert script.call.name == "echo"
    assert script.call.parameters == {"Value": value}
    assert script.outcome == "Completed"


def test_a_secure_string_parameter_reaches_the_handler_decrypted(
    connect: Any, endpoint: WinRMEndpoint
) -> None:
    with RunspacePool(wsman(connect)) as pool:
        pool.exchange_keys()
        secret = pool.serialize("Pfx-Pa55word", ObjectMeta("SS"))
        ps = run(pool, "echo", Value=secret)
    assert "Pfx-Pa55word" not in repr(endpoint.recorder.scripts[0].call)
    assert endpoint.recorder.scripts[0].call.parameters == {"Value": "Pfx-Pa55word"}
    assert ps.output == ["Pfx-Pa55word"]


def test_non_terminating_errors_land_in_the_error_stream_only(
    connect: Any, endpoint: WinRMEndpoint
) -> None:
    with RunspacePool(wsman(connect)) as pool:
        ps = run(pool, "mixed")
    assert ps.output == ["kept"]
    assert [str(e) for e in ps.streams.error] == ["first problem", "second problem"]
    assert not ps.had_errors
    assert ps.state == PSInvocationState.COMPLETED


@pytest.mark.parametrize(
    ("script", "message", "output"),
    [
        pytest.param(marker("throws"), "Keyset does not exist", ["partial"], id="throws"),
        pytest.param(marker("crashes"), "RuntimeError: model bug", [], id="handler-raises"),
        pytest.param(marker("nobody"), "The script 'nobody' is not known", [], id="unknown"),
        pytest.param("Get-ChildItem Cert:\\", "not a '# cosdoc-certs-script:", [], id="no-marker"),
    ],
)
def test_terminating_errors_fail_the_pipeline(
    connect: Any, script: str, message: str, output: list[str]
) -> None:
    with RunspacePool(wsman(connect)) as pool:
        ps = PowerShell(pool)
        ps.add_script(script)
        assert ps.invoke() == output
    assert ps.had_errors
    assert ps.state == PSInvocationState.FAILED
    assert message in str(ps.streams.error[-1])


def test_an_unknown_cmdlet_is_not_recognised_like_powershell_says(connect: Any) -> None:
    with RunspacePool(wsman(connect)) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-Service").add_parameter("Name", "Digihelse*")
        ps.invoke()
    assert ps.had_errors
    error = ps.streams.error[-1]
    assert "The term 'Get-Service' is not recognized" in str(error)
    assert error.fq_error == "CommandNotFoundException"


def test_injected_pipeline_failure(connect: Any, endpoint: WinRMEndpoint) -> None:
    endpoint.faults.fail_pipeline("echo", "Access is denied")
    with RunspacePool(wsman(connect)) as pool:
        failed = run(pool, "echo", Value=1)
        passed = run(pool, "digest", Data=b"x")
    assert failed.had_errors
    assert str(failed.streams.error[-1]) == "Access is denied"
    assert not passed.had_errors
    assert [s.outcome for s in endpoint.recorder.scripts] == ["Failed", "Completed"]


def test_pipeline_input_reaches_the_handler(connect: Any) -> None:
    with RunspacePool(wsman(connect)) as pool:
        ps = PowerShell(pool)
        ps.add_script(marker("sums-input"))
        assert ps.invoke(input=[1, 2, 3, 4]) == [10]


def test_a_1mb_parameter_is_fragmented_across_many_messages(
    connect: Any, endpoint: WinRMEndpoint
) -> None:
    data = bytes(range(256)) * (MB // 256)
    with RunspacePool(wsman(connect)) as pool:
        ps = run(pool, "digest", Data=data)
    assert ps.output == [hashlib.sha256(data).hexdigest()]
    assert endpoint.recorder.requests["Send"] >= 2  # first fragment rides in Command


@pytest.mark.parametrize("max_envelope_size", [153600, 40960])
def test_a_1mb_output_comes_back_within_the_negotiated_envelope_size(
    connect: Any, endpoint: WinRMEndpoint, max_envelope_size: int
) -> None:
    with RunspacePool(wsman(connect, max_envelope_size=max_envelope_size)) as pool:
        negotiated = pool.connection.max_envelope_size
        ps = run(pool, "big-output", Size=MB)
    assert ps.output == [bytes(range(256)) * (MB // 256)]
    assert endpoint.recorder.requests["Receive"] >= 3
    assert endpoint.recorder.largest_response["Receive"] <= negotiated


def test_ctrl_c_stops_a_running_pipeline_and_the_pool_stays_usable(
    connect: Any, endpoint: WinRMEndpoint
) -> None:
    endpoint.faults.slow_pipeline("echo", 30)
    with RunspacePool(wsman(connect)) as pool:
        ps = PowerShell(pool)
        ps.add_script(marker("echo")).add_parameter("Value", "never")
        ps.begin_invoke()
        ps.stop()
        assert ps.state == PSInvocationState.STOPPED
        after = run(pool, "digest", Data=b"still alive")
    assert after.output == [hashlib.sha256(b"still alive").hexdigest()]
    assert [(s.call.name, s.outcome) for s in endpoint.recorder.scripts] == [
        ("echo", "Stopped"),
        ("digest", "Completed"),
    ]


@pytest.mark.parametrize("code", ["powershell/signal/ctrl_c", "powershell/signal/crtl_c"])
def test_both_spellings_of_the_powershell_ctrl_c_signal_stop(
    connect: Any, endpoint: WinRMEndpoint, code: str
) -> None:
    endpoint.faults.slow_pipeline("echo", 30)
    with RunspacePool(wsman(connect)) as pool:
        ps = PowerShell(pool)
        ps.add_script(marker("echo")).add_parameter("Value", 1)
        ps.begin_invoke()
        pool.shell.signal(code, ps.id)
        ps.end_invoke()
    assert ps.state == PSInvocationState.STOPPED
    assert "The pipeline has been stopped." in str(ps.streams.error[-1])


def test_wrong_password_is_refused_with_401(connect: Any, endpoint: WinRMEndpoint) -> None:
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman(connect, password="wrong")).open()
    assert endpoint.recorder.faults["Unauthorized"] == 1
    assert endpoint.recorder.shells == []


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_a_dropped_connection_surfaces_as_a_connection_error(
    connect: Any, endpoint: WinRMEndpoint, before: bool
) -> None:
    """Over HTTPS the pool goes on. Over HTTP the sealing context belonged to the dropped
    connection: pypsrp re-authenticates the next request on a new connection but seals it with
    the old context, which the server cannot read (HTTP 400) — a new pool is needed, which is
    what the client's reconnect does."""
    endpoint.faults.drop_connection_at(1, before=before, action="Command")
    pool = RunspacePool(wsman(connect))
    pool.open()
    with pytest.raises(requests.exceptions.ConnectionError):
        run(pool, "echo", Value=1)
    if endpoint.scheme == "https":
        assert run(pool, "echo", Value=2).output == [2]
        pool.close()
    else:
        with pytest.raises(WinRMError, match="400"):
            run(pool, "echo", Value=2)
        assert endpoint.recorder.faults["UndecryptableMessage"] == 1
        with RunspacePool(wsman(connect)) as pool:
            assert run(pool, "echo", Value=2).output == [2]
    created = 2 if not before else 1
    assert len(endpoint.recorder.pipelines) == created


def test_latency_injection_slows_every_request(connect: Any, endpoint: WinRMEndpoint) -> None:
    with RunspacePool(wsman(connect)) as pool:
        run(pool, "echo", Value=0)
        endpoint.faults.latency_per_request = 0.1
        endpoint.recorder.reset()
        started = time.perf_counter()
        run(pool, "echo", Value=1)
        slow = time.perf_counter() - started
        requests = sum(endpoint.recorder.requests.values())
    assert requests >= 2  # Command and Receive at least
    # a lower bound only: a loaded machine makes the run slower, never faster
    assert slow >= 0.1 * requests


def test_a_slow_pipeline_exercises_the_receive_timeout_and_retry(
    connect: Any, endpoint: WinRMEndpoint
) -> None:
    endpoint.faults.slow_pipeline("echo", 2.5)
    with RunspacePool(wsman(connect, operation_timeout=1)) as pool:
        ps = run(pool, "echo", Value="late")
    assert ps.output == ["late"]
    assert endpoint.recorder.faults["OperationTimeout"] >= 2


def test_a_receive_retried_after_a_read_timeout_gets_the_same_answer(
    connect: Any, endpoint: WinRMEndpoint
) -> None:
    endpoint.faults.slow_pipeline("echo", 1.5)
    connection = wsman(connect, read_timeout=1, operation_timeout=10, reconnection_backoff=0.1)
    with RunspacePool(connection) as pool:
        ps = run(pool, "echo", Value="once")
    assert ps.output == ["once"]
    assert ps.state == PSInvocationState.COMPLETED


def test_eight_threads_on_eight_shells_at_once(connect: Any, endpoint: WinRMEndpoint) -> None:
    results: dict[int, list[Any]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            with RunspacePool(wsman(connect)) as pool:
                barrier.wait()
                results[n] = [run(pool, "echo", Value=f"{n}-{i}").output[0] for i in range(5)]
        except BaseException as error:  # reported below, with the thread's context
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert results == {n: [f"{n}-{i}" for i in range(5)] for n in range(8)}
    assert len(set(endpoint.recorder.shells)) == 8
    assert len(endpoint.recorder.scripts) == 40


def test_client_execute_ps_runs_a_marker_script(connect: Any, endpoint: WinRMEndpoint) -> None:
    with Client("127.0.0.1", **connect()) as client:
        output, streams, had_errors = client.execute_ps(marker("mixed"))
    assert output == "kept"
    assert [str(e) for e in streams.error] == ["first problem", "second problem"]
    assert not had_errors
    assert endpoint.recorder.script_names == ["mixed"]


def test_client_copy_and_fetch_with_the_file_transfer_twins(
    registry: ScriptRegistry, connect: Any, tmp_path: Path
) -> None:
    server_files: dict[str, bytes] = {}

    def write(path: str, data: bytes) -> str:
        server_files[path] = data
        return path

    def read(path: str) -> bytes:
        if path not in server_files:
            raise FileNotFoundError(path)
        return server_files[path]

    register_pypsrp_file_transfer(registry, read, write)
    payload = bytes(range(256)) * 2000
    source = tmp_path / "appsettings.json"
    source.write_bytes(payload)
    fetched = tmp_path / "fetched.json"
    with Client("127.0.0.1", **connect()) as client:
        remote = client.copy(str(source), "C:\\Temp\\appsettings.json")
        client.fetch("C:\\Temp\\appsettings.json", str(fetched))
        with pytest.raises(WinRMError, match="does not exist"):
            client.fetch("C:\\Temp\\missing.json", str(tmp_path / "missing"))
    assert remote == "C:\\Temp\\appsettings.json"
    assert server_files[remote] == payload
    assert fetched.read_bytes() == payload


def test_pool_liveness_and_server_config_via_get(connect: Any) -> None:
    connection = wsman(connect)
    connection.update_max_payload_size()
    assert connection.max_envelope_size == 500 * 1024
    pool = RunspacePool(connection)
    pool.open()
    assert pool.is_alive()
    pool.shell.close()  # Delete: the shell is gone on the server
    assert not pool.is_alive()


def test_delete_succeeds_with_a_pipeline_still_running(
    connect: Any, endpoint: WinRMEndpoint
) -> None:
    endpoint.faults.slow_pipeline("echo", 30)
    pool = RunspacePool(wsman(connect))
    pool.open()
    ps = PowerShell(pool)
    ps.add_script(marker("echo")).add_parameter("Value", 1)
    ps.begin_invoke()
    pool.close()
    assert endpoint.recorder.requests["Delete"] == 1
    assert endpoint.recorder.faults == {}
