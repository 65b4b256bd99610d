"""How the client copes with the faults a real WinRM service answers with (the lab answers
them the same way, with the same codes): an expired idle shell, a request over the
server's MaxEnvelopeSizekb, an account without the right to remote."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from cosdoc_certs.certs import load_bundle
from cosdoc_certs.errors import RemoteError
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.winrm import wsman
from cosdoc_certs.status import gather, status
from cosdoc_certs.windows.apply import apply_windows
from cosdoc_certs.windows.connection import AccessDeniedError, WindowsHost
from cosdoc_certs.windows.planning import plan_windows

IDLE = 0.4


def _gather(host: WindowsHost) -> str:
    return str(host.run_script("gather")["computerName"])


@pytest.mark.parametrize("https", [False, True], ids=["http-sealed", "https"])
def test_a_shell_expired_while_idle_is_opened_again_and_the_script_runs(
    lab: Lab, https: bool
) -> None:
    endpoint = lab.https if https else lab.http
    endpoint.idle_timeout = IDLE
    with WindowsHost(lab.connection_info().options(https=https)) as host:
        assert _gather(host) == "COSDOC-APP01"
        time.sleep(IDLE * 2)  # the consultant reads the plan
        assert _gather(host) == "COSDOC-APP01"
    assert endpoint.recorder.faults["ShellExpired"] == 1
    assert len(endpoint.recorder.shells) == 2
    assert endpoint.recorder.script_names == ["gather", "gather"]


def test_apply_after_the_shell_expired_sends_the_pfx_password_for_the_new_session(
    lab: Lab, tmp_path: Path
) -> None:
    """The SecureString key belongs to a session: the consultant read the plan longer than
    the idle timeout, so apply runs in a new session and its PFX password must still open
    the PFX files (a password encrypted for the old session would not)."""
    info = lab.connection_info()
    files = info.pfx_files
    bundle = load_bundle([files["pair"], files["ssl"]], info.pfx_password.encode())
    lab.http.idle_timeout = IDLE
    with WindowsHost(info.options(https=False)) as host:
        facts = gather(host)
        plan = plan_windows(facts, bundle, host="cosdoc-app01")
        time.sleep(IDLE * 2)
        result = apply_windows(host, plan, bundle, facts, journal_dir=tmp_path / "journals")
    assert result.results
    assert all(step.ok for step in result.results)
    assert lab.http.recorder.faults["ShellExpired"] == 1
    assert lab.http.recorder.script_names == ["gather", "apply"]


def test_the_expired_shell_fault_is_shaped_like_a_real_servers() -> None:
    fault = wsman.fault("uuid:1", wsman.shell_not_found("ABC"))
    assert b"faultDetail/UnexpectedSelectors</" in fault
    assert b'Code="2150858843"' in fault
    assert b":ProviderFault" in fault
    assert b"ShellId ABC failed because the shell was not found" in fault


def test_a_server_with_a_smaller_envelope_size_gets_requests_that_fit(
    lab: Lab, tmp_path: Path
) -> None:
    """pypsrp sends up to 500 KiB per request to any PowerShell 3+ server; one configured
    with MaxEnvelopeSizekb=150 refuses that (HTTP 413) before the script starts. The client
    reads the server's limit, opens a session that fits, and the rotation goes on."""
    info = lab.connection_info()
    files = info.pfx_files
    bundle = load_bundle([files["pair"], files["ssl"]], info.pfx_password.encode())
    lab.http.max_envelope_kb = 150
    large = "x" * (400 * 1024)  # a parameter the size of a chain of large PFX files
    with WindowsHost(info.options(https=False)) as host:
        facts = gather(host)
        plan = plan_windows(facts, bundle, host="cosdoc-app01")
        host.run_script("gather", ServicePatterns=[large], ConfigFiles=[])
        result = apply_windows(host, plan, bundle, facts, journal_dir=tmp_path / "journals")
    assert all(step.ok for step in result.results)
    assert lab.http.recorder.faults["EnvelopeTooLarge"] == 1
    assert lab.http.recorder.requests["Get"] == 1  # the server's configuration, read once
    assert lab.http.recorder.script_names == ["gather", "gather", "apply"]


def test_a_request_over_the_envelope_size_the_server_reports_fails_clearly(lab: Lab) -> None:
    """A server whose configuration cannot be trusted (it refuses what it advertises): one
    clear line, no retry loop, nothing run."""
    info = lab.connection_info()
    lab.http.max_envelope_kb = 150
    with WindowsHost(info.options(https=False)) as host:
        host.options = dataclasses.replace(host.options, max_envelope_size=400 * 1024)
        host.close()
        host.open()
        with pytest.raises(RemoteError, match="larger than its MaxEnvelopeSizekb") as caught:
            host.run_script("gather", ServicePatterns=["x" * (300 * 1024)], ConfigFiles=[])
    assert "Set-Item WSMan:\\localhost\\MaxEnvelopeSizekb" in caught.value.hint
    assert lab.http.recorder.script_names == []


@pytest.mark.parametrize("language", ["en-US", "nb-NO"])
def test_an_account_without_remoting_rights_is_access_denied_in_any_language(
    lab: Lab, language: str
) -> None:
    """The client decides by the fault code (5), never by the English text."""
    lab.http.access_denied = True
    lab.http.language = language
    with pytest.raises(AccessDeniedError, match="denied access while trying to open") as caught:
        status(lab.connection_info().options(https=False))
    assert "Administrators" in caught.value.hint
    if language == "nb-NO":
        assert "Ingen tilgang" in caught.value.problem
    assert lab.http.recorder.shells == []
