"""``cosdoc-certs inspect``: the table, JSON, exit codes, password handling and load errors."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from terminal import Terminal

from cosdoc_certs.cli import main
from cosdoc_certs.lab import certs as lab

PASSWORD = "Sv@rt-Hemmelig-2031"
ENV = "COSDOC_TEST_PFX_PASSWORD"
NOW = datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture
def pair_pfx(tmp_path: Path, pair: lab.EnterprisePair) -> Path:
    path = tmp_path / "virksomhet.p12"
    path.write_bytes(lab.two_key_pfx(pair, PASSWORD.encode()))
    return path


def _inspect(*args: str | Path, password: str | None = PASSWORD) -> Result:
    env = {ENV: password} if password is not None else {}
    options = ["--password-env", ENV] if password is not None else []
    return CliRunner().invoke(main, ["inspect", *options, *map(str, args)], env=env)


def test_two_key_pfx_shows_both_roles_and_both_keys(
    pair_pfx: Path, pair: lab.EnterprisePair
) -> None:
    result = _inspect(pair_pfx)
    assert result.exit_code == 0, result.output
    assert "signing (Non-Repudiation)" in result.output
    assert "encryption / authentication" in result.output
    private_key_row = next(line for line in result.output.splitlines() if "Private key" in line)
    assert private_key_row.count("yes") == 2
    for issued in (pair.signing, pair.encryption):
        assert issued.thumbprint in result.output
        assert format(issued.certificate.serial_number, "X") in result.output
    for shown in (
        "Utstedt til",
        "Testkommune",
        "123456789",
        "Valid from",
        "Valid to",
        "E-meldinger",
    ):
        assert shown in result.output
    assert PASSWORD not in result.output


@pytest.mark.skipif(shutil.which("openssl") is None, reason="compares with openssl's fingerprint")
def test_json_thumbprints_equal_openssl(tmp_path: Path, pair_pfx: Path) -> None:
    result = _inspect(pair_pfx, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    certificates = document["certificates"]
    assert [c["role"] for c in certificates] == ["signing", "encryption"]
    assert all(c["has_private_key"] for c in certificates)
    pems = subprocess.run(
        ["openssl", "pkcs12", "-nokeys", "-clcerts", "-passin", f"env:{ENV}", "-in", str(pair_pfx)],
        capture_output=True,
        check=True,
        env={**os.environ, ENV: PASSWORD},
    ).stdout
    fingerprints = set()
    for block in pems.split(b"-----END CERTIFICATE-----")[:-1]:
        pem = block[block.index(b"-----BEGIN") :] + b"-----END CERTIFICATE-----\n"
        out = subprocess.run(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha1"],
            input=pem,
            capture_output=True,
            check=True,
        ).stdout.decode()
        fingerprints.add(out.strip().split("=", 1)[1].replace(":", ""))
    assert fingerprints == {c["thumbprint"] for c in certificates}


EXIT_CODES: list[tuple[str, Callable[[lab.TestCA], lab.Issued], int]] = [
    ("valid", lambda ca: lab.make_ssl_certificate(ca), 0),
    (
        "expires soon",
        lambda ca: lab.make_ssl_certificate(ca, not_after=NOW + datetime.timedelta(days=5)),
        1,
    ),
    ("expired", lambda ca: lab.make_ssl_certificate(ca, **lab.expired_window(NOW)), 3),
    ("wrong usage", lambda ca: lab.make_wrong_usage_certificate(ca), 1),
]


@pytest.mark.parametrize(
    ("make", "exit_code"), [c[1:] for c in EXIT_CODES], ids=[c[0] for c in EXIT_CODES]
)
def test_exit_code_follows_worst_finding(
    tmp_path: Path, ca: lab.TestCA, make: Callable[[lab.TestCA], lab.Issued], exit_code: int
) -> None:
    issued = make(ca)
    path = tmp_path / "cert.pem"
    path.write_bytes(issued.cert_pem() + issued.key_pem() + issued.chain_pem())
    result = _inspect(path, password=None)
    assert result.exit_code == exit_code, result.output


def test_no_password_asked_for_files_without_one(tmp_path: Path, ca: lab.TestCA) -> None:
    issued = lab.make_ssl_certificate(ca)
    pem, pfx = tmp_path / "ssl.pem", tmp_path / "open.pfx"
    pem.write_bytes(issued.cert_pem() + issued.key_pem() + issued.chain_pem())
    pfx.write_bytes(lab.to_pfx(issued, b""))
    result = _inspect(pem, pfx, password=None)  # no terminal: asking would fail
    assert result.exit_code == 0, result.output
    assert "PFX password" not in result.output


ERRORS: list[tuple[str, Callable[[Path, Path], list[str]], dict[str, str], str]] = [
    (
        "wrong password",
        lambda d, p: ["--password-env", ENV, str(p)],
        {ENV: "feil"},
        "wrong password for",
    ),
    (
        "corrupt pfx",
        lambda d, p: ["--password-env", ENV, _write(d / "half.p12", p.read_bytes()[:900])],
        {ENV: PASSWORD},
        "half.p12 looks like a PFX file but is damaged",
    ),
    (
        "no certificate",
        lambda d, p: [
            _write(
                d / "req.pem",
                b"-----BEGIN CERTIFICATE REQUEST-----\nQQ==\n-----END CERTIFICATE REQUEST-----\n",
            )
        ],
        {},
        "req.pem holds no certificate",
    ),
    (
        "unknown format",
        lambda d, p: [_write(d / "readme.txt", b"not a certificate")],
        {},
        "readme.txt is not a certificate file",
    ),
    ("missing file", lambda d, p: [str(d / "nope.pfx")], {}, "nope.pfx does not exist"),
    (
        "password needed, no terminal",
        lambda d, p: [str(p)],
        {},
        "a password is needed and there is no terminal",
    ),
    (
        "env var not set",
        lambda d, p: ["--password-env", "COSDOC_UNSET_VARIABLE", str(p)],
        {},
        "COSDOC_UNSET_VARIABLE is not set",
    ),
]


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("args", "env", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_errors_are_one_line_without_traceback_or_password(
    tmp_path: Path,
    pair_pfx: Path,
    args: Callable[[Path, Path], list[str]],
    env: dict[str, str],
    message: str,
) -> None:
    result = CliRunner().invoke(main, ["inspect", *args(tmp_path, pair_pfx)], env=env)
    assert result.exit_code == 4, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert PASSWORD not in result.output
    assert "feil" not in result.stdout


def test_wrong_password_in_a_real_process(pair_pfx: Path) -> None:
    environment = {**os.environ, ENV: "Feil-Passord-123"}
    result = subprocess.run(
        [sys.executable, "-m", "cosdoc_certs", "inspect", "--password-env", ENV, str(pair_pfx)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    assert result.returncode == 4
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"wrong password for {pair_pfx}" in result.stderr
    assert "Feil-Passord-123" not in result.stderr
    assert "Traceback" not in result.stderr


def test_hidden_prompt_on_a_terminal(pair_pfx: Path) -> None:
    """The password is asked on the terminal, not echoed, asked again when wrong."""
    terminal = Terminal(["inspect", str(pair_pfx)])
    terminal.read_until(b"PFX password")
    terminal.type(b"Feil-Passord\n")
    terminal.read_until(b"try again")
    terminal.read_until(b"PFX password")
    terminal.type(PASSWORD.encode() + b"\n")
    exit_code = terminal.finish()
    text = re.sub(r"\x1b\[[0-9;]*m", "", terminal.transcript.decode(errors="replace"))
    assert exit_code == 0, text
    assert "signing (Non-Repudiation)" in text
    assert "wrong password for" in text
    assert PASSWORD not in text
    assert "Feil-Passord" not in text
