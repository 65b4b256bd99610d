"""The PSRP messages of the lab endpoint as Windows PowerShell 5.1 sends them, and how the
client reads them: the UTF-8 BOM, the session data ($PSVersionTable), error records with
their script position, the first command's progress record, and faults in Norwegian.

Compared with pypsrp's recordings of real servers (tests/tests_pypsrp/responses/*.yml in
jborean93/pypsrp), read through the real pypsrp client.
"""

from __future__ import annotations

import base64
import logging
import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.winrm import wsman
from cosdoc_certs.status import status
from cosdoc_certs.windows.connection import (
    PowerShellTooOldError,
    ScriptError,
    SessionLostError,
    WindowsHost,
)
from tests.lab.wire import RecordingProxy, through

BOM = b"\xef\xbb\xbf"
GATHER = "# cosdoc-certs-script: gather\n"


def _server_messages(received: bytes) -> list[tuple[int, bytes]]:
    """(message type, data) of each PSRP message in the Receive answers on the wire."""
    streams = re.findall(rb"<rsp:Stream[^>]*>([A-Za-z0-9+/=]+)</rsp:Stream>", received)
    parts: dict[int, bytes] = {}
    messages = []
    for stream in streams:
        blob = base64.b64decode(stream)
        while blob:
            object_id, _, flags, length = struct.unpack(">QQBI", blob[:21])
            parts[object_id] = parts.get(object_id, b"") + blob[21 : 21 + length]
            blob = blob[21 + length :]
            if flags & 2:
                message = parts.pop(object_id)
                messages.append((struct.unpack("<I", message[4:8])[0], message[40:]))
    return messages


def _pool(lab: Lab) -> RunspacePool:
    info = lab.connection_info()
    return RunspacePool(
        WSMan(
            info.host,
            port=info.http_port,
            username=info.username,
            password=info.password,
            ssl=False,
            auth="basic",
            encryption="never",
            no_proxy=True,
        )
    )


def test_every_psrp_message_from_the_server_starts_with_the_utf8_bom(
    unencrypted_lab: Lab,
) -> None:
    """As in every server message of the recordings; the client reads through it."""
    info = unencrypted_lab.connection_info()
    with RecordingProxy((info.host, info.http_port)) as proxy:
        status(through(proxy, info.options(https=False, auth="basic")))
    messages = _server_messages(proxy.received)
    assert len(messages) >= 6  # capability, session data, pool state, output, state...
    assert all(data.startswith(BOM + b"<") for _, data in messages)


def test_the_session_data_is_a_windows_server_s(unencrypted_lab: Lab) -> None:
    with _pool(unencrypted_lab) as pool:
        capability = (pool.protocol_version, pool.ps_version, pool.serialization_version)
        table = pool.application_private_data.data["PSVersionTable"]
    assert capability == ("2.3", "2.0", "1.1.0.1")  # SESSION_CAPABILITY, as recorded
    assert table["PSVersion"].startswith("5.1.")
    assert table["PSEdition"] == "Desktop"
    assert table["CLRVersion"] == "4.0.30319.42000"
    assert table["BuildVersion"].startswith("10.0.")
    assert table["PSRemotingProtocolVersion"] == "2.3"


def test_the_client_logs_the_server_s_powershell_version(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    lab.http.powershell_version = "5.1.17763.6054"
    with (
        caplog.at_level(logging.INFO, logger="cosdoc_certs"),
        WindowsHost(lab.connection_info().options(https=False)),
    ):
        pass
    assert "Windows PowerShell 5.1.17763.6054" in caplog.text


def test_a_server_with_powershell_older_than_5_1_is_refused_before_any_script(lab: Lab) -> None:
    """Server 2012 R2 without WMF 5.1 runs PowerShell 4.0: the scripts need 5.1."""
    lab.http.powershell_version = "4.0"
    with pytest.raises(PowerShellTooOldError, match=r"PowerShell 4\.0;") as caught:
        status(lab.connection_info().options(https=False))
    assert "Windows Management Framework 5.1" in caught.value.hint
    assert lab.http.recorder.script_names == []
    assert lab.http.recorder.requests["Delete"] == 1  # the session was closed again


def test_an_error_record_carries_its_script_position(unencrypted_lab: Lab) -> None:
    """As Windows PowerShell 5.1 serialises a throw: InvocationInfo with the position
    message, the script stack trace, the category."""
    unencrypted_lab.faults.fail_pipeline("gather", "Cannot find path 'D:\\x'.", line=3)
    with _pool(unencrypted_lab) as pool:
        ps = PowerShell(pool)
        ps.add_script(GATHER + "param()\n    throw \"Cannot find path '$Path'.\"\n")
        ps.invoke()
    assert ps.had_errors
    record = ps.streams.error[0]
    where = record.invocation_info.adapted_properties
    assert where["ScriptLineNumber"] == 3
    assert where["PositionMessage"].startswith("At line:3 char:5\r\n+     throw ")
    assert record.script_stacktrace == "at <ScriptBlock>, <No file>: line 3"
    assert record.reason == "RuntimeException"
    assert record.fq_error == "Cannot find path 'D:\\x'."


def test_a_failed_script_says_at_which_line_and_shows_no_password(lab: Lab) -> None:
    lab.faults.fail_pipeline(
        "gather", "Cannot open the database: Password=Hemmelig-1 refused", line=42
    )
    with pytest.raises(ScriptError) as caught:
        status(lab.connection_info().options(https=False))
    assert "at line 42 of gather.ps1" in caught.value.problem
    assert "Hemmelig-1" not in str(caught.value)


def test_the_first_command_reports_first_use_progress_and_the_client_ignores_it(
    unencrypted_lab: Lab,
) -> None:
    with _pool(unencrypted_lab) as pool:
        first, second = PowerShell(pool), PowerShell(pool)
        for ps in (first, second):
            ps.add_script(GATHER)
            assert len(ps.invoke()) == 1
    assert [p.activity for p in first.streams.progress] == ["Preparing modules for first use."]
    assert second.streams.progress == []
    with WindowsHost(unencrypted_lab.connection_info().options(https=False)) as host:
        assert host.run_script("gather")["computerName"] == "COSDOC-APP01"


def test_a_receive_that_gets_only_the_first_use_progress_is_counted_apart(
    unencrypted_lab: Lab,
) -> None:
    recorder = unencrypted_lab.http.recorder
    unencrypted_lab.http.faults.slow_pipeline("gather", 0.3)  # still running at the Receive
    with _pool(unencrypted_lab) as pool:
        recorder.reset()
        first = PowerShell(pool)
        first.add_script(GATHER)
        assert len(first.invoke()) == 1
        assert recorder.requests["Receive"] == 2  # the progress record, then the output
        assert recorder.progress_only_receives == 1
        unencrypted_lab.http.faults.clear()
        second = PowerShell(pool)
        second.add_script(GATHER)
        assert len(second.invoke()) == 1
    assert recorder.progress_only_receives == 1  # later commands send no such record


@pytest.fixture
def norwegian_lab(tmp_path: Path) -> Iterator[Lab]:
    """The Norwegian scenario: the server's faults are worded in Norwegian."""
    with Lab(scenario="norwegian", root=tmp_path / "lab", svarut=False) as running:
        yield running


def test_a_norwegian_server_words_its_faults_in_norwegian_with_the_same_codes(
    norwegian_lab: Lab,
) -> None:
    info = norwegian_lab.connection_info()
    transport = WSMan(
        info.host,
        port=info.https_port,
        username=info.username,
        password=info.password,
        auth="basic",
        cert_validation=str(info.ca_file),
        no_proxy=True,
    )
    pool = RunspacePool(transport)
    pool.open()
    pool.shell.close()
    ps = PowerShell(pool)
    ps.add_script(GATHER)
    with pytest.raises(WSManFaultError) as raised:
        ps.invoke()
    assert raised.value.code == wsman.INVALID_SELECTORS
    assert "ugyldige velgere" in raised.value.reason


def test_the_client_decides_by_fault_codes_on_a_norwegian_server(norwegian_lab: Lab) -> None:
    """Idle expiry, a lost shell and an unknown shell id, each answered in Norwegian."""
    options = norwegian_lab.connection_info().options(https=False)
    norwegian_lab.http.idle_timeout = 0.4
    with WindowsHost(options) as host:
        assert host.run_script("gather")["computerName"]
        time.sleep(0.8)
        assert host.run_script("gather")["computerName"]  # opened again after expiry
        assert host.close_shell("5B4B7C1E-0000-4000-8000-000000000000") is False
        norwegian_lab.faults.lose_shell_at(1, action="Receive")
        with pytest.raises(SessionLostError):
            host.run_script("gather")
    assert norwegian_lab.http.recorder.faults["ShellExpired"] == 1
    assert norwegian_lab.http.recorder.faults["w:InvalidSelectors"] >= 2
