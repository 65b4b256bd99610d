"""Bad input to every command: one actionable line on stderr, a meaningful exit code, no
traceback, valid (or empty) JSON on stdout, and the lab installation left exactly as it was.

The lab (real WinRM over pypsrp, real SSH over asyncssh, real TLS) is started once for the
module; each case snapshots its files before and compares after.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cosdoc_certs.cli import main
from cosdoc_certs.lab.runner import ConnectionInfo, Lab

pytestmark = pytest.mark.timeout(120)

WINRM_PW = "ERR_TEST_WINRM_PASSWORD"
PFX_PW = "ERR_TEST_PFX_PASSWORD"
UNSET = "ERR_TEST_VARIABLE_THAT_IS_NOT_SET"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(root=tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture(scope="module")
def info(lab: Lab) -> ConnectionInfo:
    return lab.connection_info()


@pytest.fixture
def env(info: ConnectionInfo, tmp_path: Path) -> dict[str, str]:
    return {
        WINRM_PW: info.password,
        PFX_PW: info.pfx_password,
        "COSDOC_CERTS_JOURNAL_DIR": str(tmp_path / "journals"),
    }


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under the lab's server and SvarUT folders, by content hash."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in ("server", "svarut")
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


def _windows(info: ConnectionInfo) -> list[str]:
    return [
        *("--host", info.host, "--port", str(info.https_port), "--user", info.username),
        *("--auth", "basic", "--ca-bundle", str(info.ca_file), "--winrm-password-env", WINRM_PW),
    ]


def _ssh(info: ConnectionInfo, prefix: str = "--") -> list[str]:
    assert info.svarut is not None
    return [
        *(f"{prefix}host", info.svarut.host, f"{prefix}port", str(info.svarut.ssh_port)),
        *(f"{prefix}host-key", info.svarut.host_key),
        *(f"{prefix}identity", str(info.svarut.client_key)),
    ]


def _installation(info: ConnectionInfo) -> list[str]:
    endpoints = [f"--tls-endpoint={key}={value}" for key, value in info.tls_endpoints.items()]
    return [*_windows(info), *endpoints, *_ssh(info, "--svarut-")]


def _pfx(info: ConnectionInfo) -> list[str]:
    files = info.pfx_files
    return ["--pfx", str(files["pair"]), "--pfx", str(files["ssl"]), "--password-env", PFX_PW]


@dataclass(frozen=True)
class Case:
    """A command line (built from the lab's connection info and a scratch folder) and what
    it must say."""

    name: str
    args: Callable[[ConnectionInfo, Path], list[str]]
    exit_code: int
    message: str
    env: dict[str, str | None] = field(default_factory=dict)


def _invoke(args: list[str], env: dict[str, str | None]) -> Result:
    return CliRunner().invoke(main, args, env=env)


def _assert_one_clear_line(result: Result, case: Case) -> None:
    assert result.exit_code == case.exit_code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert case.message in lines[0], lines[0]
    assert " — " in lines[0] or lines[0].startswith("error: "), lines[0]


KNOWN_BUGS = [
    Case(
        "status --auth basic without --user",
        lambda i, _: ["status", "--host", i.host, "--port", str(i.https_port), "--auth", "basic"],
        4,
        "--auth basic needs --user",
    ),
    Case(
        "status --auth ntlm without --user",
        lambda i, _: ["status", "--host", i.host, "--port", str(i.http_port), "--auth", "ntlm"],
        4,
        "--auth ntlm needs --user",
    ),
    Case(
        "plan --auth basic without --user",
        lambda i, _: ["plan", "--host", i.host, "--auth", "basic", *_pfx(i)],
        4,
        "--auth basic needs --user",
    ),
    Case(
        "status takes the WinRM password as --winrm-password-env, not --password-env",
        lambda i, _: ["status", "--host", i.host, "--password-env", WINRM_PW],
        2,
        "--password-env",
    ),
    Case(
        "status with --winrm-password-env naming an unset variable",
        lambda i, _: [
            "status",
            *_windows(i)[:-1],
            UNSET,
        ],
        4,
        f"{UNSET} is not set",
    ),
]


@pytest.mark.parametrize("case", KNOWN_BUGS, ids=lambda case: case.name)
def test_bad_input_gives_one_clear_line(
    case: Case, info: ConnectionInfo, env: dict[str, str], tmp_path: Path
) -> None:
    before = _snapshot(Path(info.server_root).parent)
    result = _invoke(case.args(info, tmp_path), {**env, **case.env})
    _assert_one_clear_line(result, case)
    assert _snapshot(Path(info.server_root).parent) == before


def test_svarut_status_without_user_logs_in_as_the_local_user(
    info: ConnectionInfo, env: dict[str, str]
) -> None:
    result = _invoke(["svarut", "status", *_ssh(info), "--json"], {**env})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["layout"]["name"] == "single"


def test_status_reads_the_winrm_password_from_winrm_password_env(
    info: ConnectionInfo, env: dict[str, str]
) -> None:
    result = _invoke(["status", *_windows(info), "--json"], {**env})
    assert result.exit_code == 3, result.output  # the lab's seeded invisible character
    assert json.loads(result.stdout)["consumers"]


def test_the_group_help_lists_the_commands_in_runbook_order() -> None:
    result = CliRunner().invoke(main, ["--help"])
    listed = [
        line.split()[0]
        for line in result.stdout.split("Commands:")[1].splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    runbook = ["inspect", "status", "plan", "apply", "verify", "rollback"]
    assert listed[: len(runbook)] == runbook
