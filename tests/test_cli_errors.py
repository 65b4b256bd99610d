"""Bad input to every command: one actionable line on stderr, a meaningful exit code, no
traceback, valid (or empty) JSON on stdout, and the lab installation left exactly as it was.

The lab (real WinRM over pypsrp, real SSH over asyncssh, real TLS) is started once for the
module; each case snapshots its files before and compares after.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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
    # usage
    Case("a command that does not exist", lambda i, _: ["rotate"], 2, "No such command"),
    Case("plan without --pfx", lambda i, _: ["plan", *_installation(i)], 2, "--pfx"),
    Case("plan without an installation", lambda i, _: ["plan", *_pfx(i)], 4, "no installation"),
]


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
    result = _invoke(case.args(info, tmp_path), {**env, **case.env})
    _assert_one_clear_line(result, case)
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


def test_the_group_help_lists_the_commands_in_runbook_order() -> None:
    result = CliRunner().invoke(main, ["--help"])
    listed = [
        line.split()[0]
        for line in result.stdout.split("Commands:")[1].splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    runbook = ["inspect", "status", "plan", "apply", "verify", "rollback"]
    assert listed[: len(runbook)] == runbook
