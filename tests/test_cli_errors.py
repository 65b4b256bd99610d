"""Bad input to every command: one actionable line on stderr, a meaningful exit code, no
traceback, valid (or empty) JSON on stdout, and the lab installation left exactly as it was.

The lab (real WinRM over pypsrp, real SSH over asyncssh, real TLS) is started once for the
module; each case snapshots its files before and compares after.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from terminal import Terminal

from cosdoc_certs.cli import main
from cosdoc_certs.cli._common import OPTION_FOR_PARAMETER
from cosdoc_certs.journal import Journal, Outcome
from cosdoc_certs.lab.runner import ConnectionInfo, Lab, SvarutInfo

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


def _svarut(info: ConnectionInfo) -> SvarutInfo:
    assert info.svarut is not None
    return info.svarut


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
    assert not [word for word in OPTION_FOR_PARAMETER if word in lines[0]], lines[0]
    assert " — " in lines[0] or lines[0].startswith("error: "), lines[0]


def _file(folder: Path, name: str, data: bytes = b"") -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _status(i: ConnectionInfo, *extra: str) -> list[str]:
    return ["status", *_windows(i), *extra]


def _inventory(i: ConnectionInfo, folder: Path) -> str:
    return _file(
        folder,
        "inventory.toml",
        (
            f'[customers.lab.windows]\nhost = "{i.host}"\nport = {i.https_port}\n'
            f'user = "{i.username}"\nauth = "basic"\npassword_env = "{WINRM_PW}"\n'
            f'ca_bundle = "{i.ca_file}"\n'
        ).encode(),
    )


CASES = [
    # the known bugs
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
        "Did you mean '--winrm-password-env'",
    ),
    # passwords
    Case(
        "status with --winrm-password-env naming an unset variable",
        lambda i, _: [*_status(i)[:-1], UNSET],
        4,
        f"{UNSET} is not set",
    ),
    Case(
        "status with a user, no password variable and no terminal",
        lambda i, _: [*_status(i)[:-2]],
        4,
        "pass --winrm-password-env VAR",
    ),
    Case(
        "plan with a PFX password variable that is not set",
        lambda i, _: ["plan", *_installation(i), *_pfx(i)[:-1], UNSET],
        4,
        f"{UNSET} is not set",
    ),
    Case(
        "plan with the wrong PFX password",
        lambda i, _: ["plan", *_installation(i), *_pfx(i)],
        4,
        "wrong password",
        env={PFX_PW: "not-the-password"},
    ),
    # files
    Case(
        "inspect a file that does not exist",
        lambda i, d: ["inspect", str(d / "missing.pfx")],
        4,
        "does not exist",
    ),
    Case("inspect a folder", lambda i, d: ["inspect", str(d)], 4, "is a folder"),
    Case(
        "inspect an empty PFX",
        lambda i, d: ["inspect", _file(d, "empty.pfx")],
        4,
        "is empty",
    ),
    Case(
        "inspect --json of a file that is no certificate: stdout stays empty",
        lambda i, d: ["inspect", "--json", _file(d, "junk.pfx", b"junk")],
        4,
        "is not a certificate file",
    ),
    Case(
        "plan with a folder as --pfx",
        lambda i, d: ["plan", *_installation(i), "--pfx", str(d)],
        2,
        "is a directory",
    ),
    Case(
        "export-public where a folder is in the way of a file",
        lambda i, d: [
            "export-public",
            str(i.pfx_files["ssl"]),
            "--password-env",
            PFX_PW,
            "--out",
            str((d / "out" / "ssl.cer").mkdir(parents=True) or d / "out"),
        ],
        4,
        "cannot write",
    ),
    Case(
        "make-test-certs with an empty organisation",
        lambda i, d: ["make-test-certs", "--out", str(d / "certs"), "--organisation", ""],
        2,
        "give 1 to 64 characters",
    ),
    Case(
        "make-test-certs with a host name that is no DNS name",
        lambda i, d: ["make-test-certs", "--out", str(d / "certs"), "--hostname", "a b"],
        2,
        "is not a DNS name",
    ),
    # WinRM connection
    Case(
        "status on a port where nothing listens",
        lambda i, _: [*_status(i), "--port", str(_free_port())],
        4,
        "connection refused",
    ),
    Case(
        "status --json with a CA bundle that is no certificate",
        lambda i, d: [*_status(i), "--json", "--ca-bundle", _file(d, "ca.pem", b"junk")],
        4,
        "holds no PEM certificate",
    ),
    Case(
        "status trusting the wrong CA",
        lambda i, d: [*_status(i), "--ca-bundle", _file(d, "other.pem", _other_ca_pem())],
        4,
        "is not trusted",
    ),
    Case(
        "status over HTTPS to the HTTP port",
        lambda i, _: [*_status(i), "--port", str(i.http_port)],
        4,
        "does not answer HTTPS",
    ),
    Case(
        "status --auth certificate without a client certificate",
        lambda i, _: ["status", "--host", i.host, "--auth", "certificate"],
        4,
        "--auth certificate needs the client certificate",
    ),
    Case(
        "status with an empty --host",
        lambda i, _: ["status", "--host", " ", "--port", str(i.https_port)],
        4,
        "no Windows server given",
    ),
    Case(
        "status with a deviations file that is not TOML",
        lambda i, d: [*_status(i), "--consumers", _file(d, "dev.toml", b"x = [")],
        4,
        "is not valid TOML",
    ),
    # SSH
    Case(
        "svarut status with a known_hosts file that is not text",
        lambda i, d: [
            *("svarut", "status", "--host", i.host, "--port", str(_svarut(i).ssh_port)),
            *("--identity", str(_svarut(i).client_key)),
            *("--known-hosts", _file(d, "known_hosts", b"\x82\xff\x00binary")),
        ],
        4,
        "is not a text file",
    ),
    Case(
        "svarut status with an --identity that is not a private key",
        lambda i, _: [
            *("svarut", "status", "--host", i.host, "--port", str(_svarut(i).ssh_port)),
            *("--host-key", _svarut(i).host_key, "--identity", str(i.pfx_files["ssl"])),
        ],
        4,
        "cannot use the SSH private key",
    ),
    Case(
        "svarut status with a port out of range",
        lambda i, _: ["svarut", "status", "--host", i.host, "--port", "70000"],
        2,
        "is not in the range",
    ),
    Case(
        "plan with a SvarUT TLS port out of range",
        lambda i, _: ["plan", *_installation(i), "--svarut-tls-port", "0", *_pfx(i)],
        2,
        "is not in the range",
    ),
    Case(
        "lab --root under a file",
        lambda i, d: ["lab", "--root", str(Path(_file(d, "a-file")) / "lab")],
        4,
        "cannot create the folder",
    ),
    # inventories
    Case(
        "inventory check of a file that is not TOML",
        lambda i, d: ["inventory", "check", _file(d, "inv.toml", b"[customers.a\n")],
        4,
        "is not valid TOML",
    ),
    Case(
        "plan for a customer the inventory does not have",
        lambda i, d: ["plan", "--inventory", _inventory(i, d), "--customer", "nobody", *_pfx(i)],
        4,
        "no customer 'nobody'",
    ),
    Case(
        "inventory status of an unknown customer",
        lambda i, d: ["inventory", "status", _inventory(i, d), "--customer", "nobody"],
        4,
        "no customer 'nobody'",
    ),
    # changing the installation
    Case(
        "apply without a terminal and without --yes",
        lambda i, _: ["apply", *_installation(i), *_pfx(i)],
        4,
        "no terminal to confirm on",
    ),
    Case(
        "apply --json with a journal folder that cannot be written",
        lambda i, d: [
            "apply",
            *_installation(i),
            *_pfx(i),
            "--yes",
            "--json",
            "--journal-dir",
            str(Path(_file(d, "a-file")) / "journals"),
        ],
        4,
        "cannot write a journal",
    ),
    Case(
        "svarut apply with a journal folder that cannot be written",
        lambda i, d: [
            *("svarut", "apply", *_ssh(i), "--pfx", str(i.pfx_files["ssl"])),
            *("--password-env", PFX_PW, "--yes"),
        ],
        4,
        "cannot write a journal",
        env={"COSDOC_CERTS_JOURNAL_DIR": "/proc/no-journals-here"},
    ),
    Case(
        "rollback when no run was journaled",
        lambda i, _: ["rollback", *_installation(i), "--yes"],
        4,
        "no run to roll back for",
    ),
    Case(
        "rollback with a corrupt journal",
        lambda i, d: [
            *("rollback", *_installation(i), "--yes"),
            *("--journal", _file(d, "run.json", b'{"kind": "rot')),
        ],
        4,
        "cannot read the journal",
    ),
    Case(
        "verify with a journal of another installation",
        lambda i, d: ["verify", *_installation(i), "--journal", _foreign_journal(d)],
        4,
        "not on 127.0.0.1",
    ),
    Case(
        "svarut rollback with the journal of another host",
        lambda i, d: [
            *("svarut", "rollback", *_ssh(i), "--yes"),
            *("--journal", _foreign_journal(d, kind="svarut")),
        ],
        4,
        "is the journal of elsewhere.example",
    ),
    # usage
    Case("a command that does not exist", lambda i, _: ["rotate"], 2, "No such command"),
    Case("plan without --pfx", lambda i, _: ["plan", *_installation(i)], 2, "--pfx"),
    Case("plan without an installation", lambda i, _: ["plan", *_pfx(i)], 2, "no installation"),
    Case(
        "plan with --inventory but no --customer",
        lambda i, d: ["plan", "--inventory", _inventory(i, d), *_pfx(i)],
        2,
        "--inventory and --customer go together: add --customer",
    ),
    Case(
        "plan with --host and --inventory",
        lambda i, d: [
            "plan",
            "--inventory",
            _inventory(i, d),
            "--customer",
            "lab",
            *_installation(i),
            *_pfx(i),
        ],
        2,
        "--host cannot be combined with --inventory",
    ),
    Case(
        "svarut status without a known_hosts file",
        lambda i, d: [
            *("svarut", "status", "--host", _svarut(i).host, "--port", str(_svarut(i).ssh_port)),
            *("--identity", str(_svarut(i).client_key)),
        ],
        4,
        "there is no known_hosts file ~/.ssh/known_hosts — check the host key fingerprint",
        env={"HOME": "/nonexistent-home"},
    ),
    Case(
        "plan whose SvarUT host key is not known names the --svarut- option",
        lambda i, d: [
            "plan",
            *(
                arg
                for arg in _installation(i)
                if arg not in (_svarut(i).host_key, "--svarut-host-key")
            ),
            *_pfx(i),
        ],
        4,
        "or pin it (--svarut-host-key)",
        env={"HOME": "/nonexistent-home"},
    ),
    Case(
        "status trusting no CA says which option gives one",
        lambda i, _: [arg for arg in _status(i) if arg not in ("--ca-bundle", str(i.ca_file))],
        4,
        ") — give the CA that issued the WinRM certificate (--ca-bundle FILE)",
    ),
    Case(
        "rollback without a terminal and without --yes names the run",
        lambda i, d: [
            *("rollback", *_installation(i)),
            *("--journal", str(_finished_run(d, i.host))),
        ],
        4,
        "rolling back the run of 127.0.0.1 started",
    ),
]


def _foreign_journal(folder: Path, kind: str = "rotation") -> str:
    """A finished run's journal, written for a host that is not the lab."""
    return str(_finished_run(folder / "foreign", "elsewhere.example", kind))


def _finished_run(folder: Path, host: str, kind: str = "rotation") -> Path:
    """The journal of a finished run on ``host`` with one done step and no host journal."""
    journal = Journal.start(
        kind=kind, host=host, old_thumbprint=None, new_thumbprint=None, directory=folder
    )
    with journal.step("windows"):
        pass
    journal.finish(Outcome.APPLIED)
    return journal.path


def _other_ca_pem() -> bytes:
    """A self-signed CA the lab's WinRM certificate was not issued by."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some other CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input_gives_one_clear_line(
    case: Case, info: ConnectionInfo, env: dict[str, str], tmp_path: Path
) -> None:
    before = _snapshot(Path(info.server_root).parent)
    args = case.args(info, tmp_path)
    result = _invoke(args, {**env, **case.env})
    _assert_one_clear_line(result, case)
    if "--json" in args:
        assert result.stdout == "" or json.loads(result.stdout) is not None
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


@pytest.mark.parametrize(
    ("group", "order"),
    [
        ([], ["inspect", "status", "plan", "apply", "verify", "rollback"]),
        (["svarut"], ["status", "plan", "apply", "verify", "rollback"]),
        (["inventory"], ["check", "status"]),
    ],
)
def test_group_help_lists_the_commands_in_runbook_order(group: list[str], order: list[str]) -> None:
    result = CliRunner().invoke(main, [*group, "--help"])
    listed = [
        line.split()[0]
        for line in result.stdout.split("Commands:")[1].splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    assert listed[: len(order)] == order


@pytest.mark.parametrize(
    ("command", "question", "keys"),
    [
        ("apply", b"Apply this plan", b"\x03"),
        ("apply", b"Apply this plan", b"n\r"),
        ("rollback", b"Roll back", b"\x03"),
        ("status", b"WinRM password for", b"\x03"),
    ],
)
def test_stopping_at_a_question_on_a_terminal_changes_nothing(
    command: str, question: bytes, keys: bytes, info: ConnectionInfo, env: dict[str, str]
) -> None:
    arguments = {
        "apply": [*_installation(info), *_pfx(info)],
        "rollback": [*_installation(info)],
        "status": _windows(info)[:-2],  # no password variable: asked on the terminal
    }[command]
    if command == "rollback":  # a finished run on the lab to be asked about
        _finished_run(Path(env["COSDOC_CERTS_JOURNAL_DIR"]), info.host)
    before = _snapshot(Path(info.server_root).parent)
    text, exit_code = _on_a_terminal([command, *arguments], env, question, keys)
    assert exit_code == 130, text
    assert "Traceback" not in text
    assert "error: stopped at the question — nothing was changed" in text
    assert _snapshot(Path(info.server_root).parent) == before


def _on_a_terminal(
    arguments: list[str], env: dict[str, str], question: bytes, keys: bytes
) -> tuple[str, int]:
    """Run the command on a pseudo-terminal, answer ``question`` with ``keys``."""
    terminal = Terminal(arguments, env)
    terminal.read_until(question)
    time.sleep(0.5)  # as a person would: a key sent before the read starts waits for the next
    terminal.type(keys)
    exit_code = terminal.finish()
    return terminal.transcript.decode(errors="replace"), exit_code


def test_the_command_the_lab_prints_runs_verbatim(tmp_path: Path) -> None:
    lab = subprocess.Popen(
        [sys.executable, "-m", "cosdoc_certs", "lab"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert lab.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] not in ("", "Press Ctrl+C to stop.\n"):  # "": it ended
            lines.append(lab.stdout.readline())
        tried = lines[lines.index("Try (one line per authentication):\n") + 1 :]
        script = "".join(tried[: tried.index("\n")])
        script = script.replace("cosdoc-certs", f"{sys.executable} -m cosdoc_certs")
        done = subprocess.run(
            ["bash", "-c", script],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 3, done.stderr  # the lab's seeded invisible character
        assert "Traceback" not in done.stderr
    finally:
        lab.send_signal(signal.SIGINT)
        lab.communicate(timeout=30)


def test_inventory_status_reads_the_others_when_one_customer_lacks_its_password(
    info: ConnectionInfo, env: dict[str, str], tmp_path: Path
) -> None:
    good = Path(_inventory(info, tmp_path)).read_text(encoding="utf-8")
    lacking = good.replace("customers.lab", "customers.other").replace(WINRM_PW, UNSET)
    inventory = _file(tmp_path, "two.toml", (good + lacking).encode())
    result = _invoke(["inventory", "status", inventory, "--json"], {**env})
    assert result.exit_code == 3, result.output
    by_customer = {row["target"]: row for row in json.loads(result.stdout)}
    assert by_customer["lab"]["errors"] == []
    assert f"{UNSET}" in by_customer["other"]["errors"][0]


def test_an_ascii_locale_still_prints_the_tables(info: ConnectionInfo, env: dict[str, str]) -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("LC_", "PYTHON"))
    }
    environment.update(env, LC_ALL="C", LANG="C")
    done = subprocess.run(
        [sys.executable, "-m", "cosdoc_certs", "inspect", *_pfx(info)[1:2], *_pfx(info)[4:]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "«" in done.stdout.decode("utf-8")  # the test pair's friendly name
