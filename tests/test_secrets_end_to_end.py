"""No secret reaches output, logs, journals, reprs, argv or leftover files — a whole rotation.

Two runs of the whole product against the lab, searched for every secret it handles (the PFX
password, the WinRM password, every private key as PEM, DER, base64 and its private numbers,
and the connection-string passwords seeded in the lab's ``appsettings.json`` files):

- ``cosdoc-certs -vv demo --keep`` as a subprocess with a known ``$COSDOC_LAB_PFX_PASSWORD``:
  stdout, stderr, every file the run left (the kept lab, its own temp folder), and the
  command line of every process it spawned;
- the library (status, plan, apply, verify, rollback) with the caller's logging at DEBUG for
  every logger, ``pypsrp``/``psrpcore``/``asyncssh`` included: every log record, the texts,
  dicts and reprs of every result, the journals, the SvarUT host's command lines, the lab's
  files and the SvarUT host's sandbox, where only the target key file (0600) may hold the
  new key.

Base64 in what is searched is decoded first (PSRP messages and config files travel as
base64). Further: the repr and str of every object holding a secret; failed rotations (the
error, logs and journals; no staged or new key left on the host); openssl's command line;
and a wrong PFX or WinRM password refused without being echoed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cosdoc_certs import rotation, svarut
from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.certs.load import load_bundle_from_bytes
from cosdoc_certs.envfile import parse_env
from cosdoc_certs.errors import ApplyError, hide_passwords
from cosdoc_certs.lab.certs import to_rc2_40_pfx
from cosdoc_certs.lab.runner import ConnectionInfo, Lab
from cosdoc_certs.lab.scenarios import PFX_PASSWORD_ENV, make_lab_certificates
from cosdoc_certs.status import gather, status
from cosdoc_certs.windows.apply import CompiledPlan, compile_windows_plan
from cosdoc_certs.windows.apply_contract import SCHEMA_VERSION, ApplyDocument
from cosdoc_certs.windows.connection import ScriptError, WindowsHost
from cosdoc_certs.windows.planning import plan_windows

KNOWN_PFX_PASSWORD = "Pfx-Secret-4711-kjempehemmelig"
# Every logger a user might turn up, the remoting libraries' own children included.
DEBUG_LOGGERS = (
    "",
    "cosdoc_certs",
    "pypsrp",
    "pypsrp.messages",
    "pypsrp.wsman",
    "pypsrp.powershell",
    "pypsrp.serializer",
    "psrpcore",
    "psrpcore._base",
    "asyncssh",
)
_CONNECTION_STRING_PASSWORD = re.compile(r"(?i)(?:password|pwd)\s*=\s*([^;\"]+)")


@dataclass
class Secrets:
    """Named secret byte strings to search for."""

    values: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, value: str | bytes) -> None:
        """Remember ``value`` (text as UTF-8) under ``name``."""
        data = value.encode("utf-8") if isinstance(value, str) else value
        assert len(data) >= 8, f"{name} is too short to search for"
        self.values[name] = data

    def add_key(self, name: str, key: rsa.RSAPrivateKey) -> None:
        """Remember a private key in every form it could leak as."""
        for form in ("PKCS8", "TraditionalOpenSSL"):
            private_format = getattr(serialization.PrivateFormat, form)
            der = key.private_bytes(
                serialization.Encoding.DER, private_format, serialization.NoEncryption()
            )
            pem = key.private_bytes(
                serialization.Encoding.PEM, private_format, serialization.NoEncryption()
            )
            self.add(f"{name} DER {form}", der)
            self.add(f"{name} base64 DER {form}", base64.b64encode(der))
            # a line from the end of the PEM body: private numbers only, never the public key
            self.add(f"{name} PEM line {form}", pem.splitlines()[-3])
        numbers = key.private_numbers()
        for part in ("d", "p", "q"):
            value: int = getattr(numbers, part)
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            self.add(f"{name} {part} raw", raw)
            self.add(f"{name} {part} hex", raw.hex())
            self.add(f"{name} {part} HEX", raw.hex().upper())
            self.add(f"{name} {part} decimal", str(value))

    def found_in(self, data: bytes) -> list[str]:
        """The names of the secrets ``data`` holds, also inside base64 in it (two levels deep)."""
        data = _with_base64_decoded(data, depth=2)
        return [name for name, value in self.values.items() if value in data]

    def without(self, *prefixes: str) -> Secrets:
        """These secrets except those whose name starts with one of ``prefixes``."""
        return Secrets({n: v for n, v in self.values.items() if not n.startswith(prefixes)})


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}")


def _with_base64_decoded(data: bytes, depth: int) -> bytes:
    """``data`` followed by the decoding of every long base64 run in it (and in those)."""
    decoded = []
    for run in _BASE64_RUN.findall(data):
        try:
            decoded.append(base64.b64decode(run[: len(run) // 4 * 4]))
        except ValueError:
            continue
    inner = b"\n".join(decoded)
    if depth > 1 and inner:
        inner = _with_base64_decoded(inner, depth - 1)
    return data + b"\n" + inner


def _connection_string_passwords(server_root: Path) -> dict[str, str]:
    found = {}
    for path in server_root.rglob("appsettings.json"):
        for value in _CONNECTION_STRING_PASSWORD.findall(path.read_text("utf-8-sig")):
            found[f"connection-string password in {path.parent.name}"] = value.strip()
    return found


def _lab_secrets(lab: Lab, bundle_keys: Iterable[tuple[str, rsa.RSAPrivateKey]]) -> Secrets:
    info = lab.connection_info()
    secrets = Secrets()
    secrets.add("WinRM password", info.password)
    secrets.add("PFX password", info.pfx_password)
    for name, key in bundle_keys:
        secrets.add_key(f"new {name} key", key)
    certificates = lab.server.certificates
    current = {
        "signing": certificates.current.signing,
        "encryption": certificates.current.encryption,
        "ssl": certificates.current_ssl,
    }
    for name, issued in current.items():
        secrets.add_key(f"current {name} key", issued.private_key)
    for name, value in _connection_string_passwords(lab.server.files.root).items():
        secrets.add(name, value)
    assert lab.svarut is not None
    for name, value in _env_passwords(lab.svarut.sandbox).items():
        secrets.add(name, value)
    return secrets


def _env_passwords(sandbox: Path) -> dict[str, str]:
    """The passwords in the SvarUT host's prod.env (the plan shows a diff of that file)."""
    found = {}
    for path in sandbox.rglob("prod.env"):
        for key, value in parse_env(path.read_bytes()).values().items():
            if value and re.search(r"(?i)password|secret", key):
                found[f"prod.env password {key}"] = value
    return found


def _files(root: Path) -> Iterator[Path]:
    return (path for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink())


# --- the library, with the caller's logging at DEBUG ------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.name}: {self.format(record)}")


@pytest.fixture
def debug_everywhere() -> Iterator[_Capture]:
    """The caller set every logger to DEBUG (protocol libraries too) and captures them all."""
    capture = _Capture()
    capture.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in DEBUG_LOGGERS]
    saved = [(each, each.level) for each in loggers]
    root = logging.getLogger()
    root.addHandler(capture)
    for each in loggers:
        each.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for each, level in saved:
            each.setLevel(level)


@pytest.fixture
def private_tempdir(tmp_path: Path) -> Iterator[Path]:
    """Temp files made during the test go to a folder of their own (to find leftovers)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved


def test_library_rotation_at_debug_leaks_no_secret(
    debug_everywhere: _Capture, private_tempdir: Path, tmp_path: Path
) -> None:
    outputs: dict[str, str] = {}
    journals = tmp_path / "journals"
    with Lab(root=tmp_path / "lab") as lab:
        info = lab.connection_info()
        target = rotation.lab_target(info, name="secrets-lab")
        bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
        keys = [(c.role.value, c.private_key) for c in bundle.certificates if c.private_key]
        assert len(keys) == 3
        secrets = _lab_secrets(lab, keys)
        before = rotation.installation_status(target)
        rplan = rotation.plan(target, bundle)
        applied = rotation.apply(rplan, journal_dir=journals, progress=outputs.setdefault)
        report = rotation.verify(target, rplan)
        assert report.ok, report.to_text()
        assert lab.svarut is not None
        sandbox_after_apply = _sandbox_files(lab.svarut.sandbox)
        rolled_back = rotation.rollback(target, applied.journal_path, journal_dir=journals)
        after = rotation.installation_status(target)
        assert before.differences(after) == []
        for name, value in {
            "info": info,
            "bundle": bundle,
            "target": target,
            "status": before,
            "plan": rplan,
            "applied": applied,
            "verify": report,
            "rolled back": rolled_back,
        }.items():
            outputs[f"repr {name}"] = repr(value)
            outputs[f"str {name}"] = str(value)
            if hasattr(value, "to_dict"):
                outputs[f"json {name}"] = json.dumps(value.to_dict(), default=str)
            if hasattr(value, "_repr_html_"):
                outputs[f"html {name}"] = value._repr_html_()
        outputs["certificates"] = "\n".join(repr(c) for c in bundle.certificates)
        outputs["plan text"] = rplan.to_text()
        assert lab.svarut is not None
        assert lab.svarut.commands  # every command line the SvarUT host ran (its argv)
        outputs["SvarUT command lines"] = "\n".join(map(str, lab.svarut.commands))
        server_root = lab.server.files.root
        sandbox_root = lab.svarut.sandbox
    outputs["logs"] = "\n".join(debug_everywhere.texts)
    assert "Packing PSRP message" in outputs["logs"]  # the caller's DEBUG reached pypsrp...
    assert ">PfxFiles<" not in outputs["logs"]  # ...but not while apply.ps1 had the PFX files

    leaks = {
        where: found
        for where, text in outputs.items()
        if (found := secrets.found_in(str(text).encode("utf-8")))
    }
    assert leaks == {}

    # The WinRM/PFX passwords and the keys are in no file; the connection-string passwords only
    # in the server's own config files and the backups kept beside them.
    no_config_passwords = secrets.without("connection-string")
    file_leaks = {
        str(path): found
        for path in _files(tmp_path)
        if not path.is_relative_to(sandbox_root)
        and (
            found := (
                no_config_passwords if path.is_relative_to(server_root) else secrets
            ).found_in(path.read_bytes())
        )
    }
    assert file_leaks == {}
    assert list(private_tempdir.iterdir()) == []
    # The SvarUT host: the new key only in its target key file (0600), the old one only in its.
    assert _key_holders(sandbox_after_apply, secrets) == {
        _new_key_path(rplan): (0o600, "new ssl key"),
        _ORIGINAL_KEY: (0o600, "current ssl key"),
    }
    assert _key_holders(_sandbox_files(sandbox_root), secrets) == {
        _ORIGINAL_KEY: (0o600, "current ssl key")
    }


_ORIGINAL_KEY = "usr/containers/svarut/persistent/cert.rsa"


def _new_key_path(rplan: rotation.RotationPlan) -> str:
    assert rplan.svarut is not None
    (key,) = [upload.path for upload in rplan.svarut.uploads if upload.mode == 0o600]
    return key.lstrip("/")


def _key_holders(
    files: dict[str, tuple[int, bytes]], secrets: Secrets
) -> dict[str, tuple[int, str]]:
    """Which files hold which key (the secret's name up to "key"), and their modes."""
    holders = {}
    for path, (mode, data) in files.items():
        own = secrets.without("prod.env") if "prod.env" in path else secrets  # its own values
        found = {name.split(" key")[0] + " key" for name in own.found_in(data)}
        assert not any("password" in name for name in found), (path, found)
        if found:
            (key,) = found
            holders[path] = (mode, key)
    return holders


def _sandbox_files(sandbox: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(path.relative_to(sandbox)): (path.stat().st_mode & 0o777, path.read_bytes())
        for path in _files(sandbox)
    }


# --- the CLI demo as a subprocess --------------------------------------------------------------


def _descendants(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        for child in map(int, text.split()):
            children |= {child, *_descendants(child)}
    return children


def _watch_command_lines(pid: int, seen: dict[int, bytes], stop: threading.Event) -> None:
    while not stop.wait(0.005):
        for child in _descendants(pid):
            try:
                seen.setdefault(child, Path(f"/proc/{child}/cmdline").read_bytes())
            except OSError:
                continue


def test_demo_subprocess_leaks_no_secret(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    environment = {**os.environ, PFX_PASSWORD_ENV: KNOWN_PFX_PASSWORD, "TMPDIR": str(temp)}
    command = [sys.executable, "-m", "cosdoc_certs", "-vv", "demo", "--keep"]
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    seen: dict[int, bytes] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_command_lines, args=(process.pid, seen, stop))
    watcher.start()
    try:
        stdout, stderr = process.communicate(timeout=120)
    finally:
        stop.set()
        watcher.join()
    assert process.returncode == 0, stderr.decode()[-2000:]
    kept = [folder for folder in temp.iterdir() if folder.name.startswith("cosdoc-demo-")]
    assert len(kept) == 1, list(temp.iterdir())
    lab_root = kept[0]
    assert sorted(p.name for p in temp.iterdir()) == [lab_root.name]  # no other temp leftovers

    secrets = Secrets()
    secrets.add("PFX password", KNOWN_PFX_PASSWORD)
    bundle = load_bundle(
        [lab_root / "client" / "renewed-pair.pfx", lab_root / "client" / "renewed-ssl.pfx"],
        KNOWN_PFX_PASSWORD,
    )
    for certificate in bundle.certificates:
        if certificate.private_key is not None:
            secrets.add_key(f"new {certificate.role.value} key", certificate.private_key)
    config_passwords = {
        **_connection_string_passwords(lab_root / "server"),
        **_env_passwords(lab_root / "svarut" / "host"),
    }
    for name, value in config_passwords.items():
        secrets.add(name, value)
    assert any(name.startswith("connection-string") for name in secrets.values)
    assert any(name.startswith("prod.env") for name in secrets.values)

    assert secrets.found_in(stdout) == []
    assert secrets.found_in(stderr) == []
    assert [line for line in seen.values() if secrets.found_in(line)] == []
    # Config passwords stay in the hosts' own config files (and the backups beside them).
    no_config_passwords = secrets.without("connection-string", "prod.env")
    hosts = (lab_root / "server", lab_root / "svarut" / "host")
    file_leaks = {
        str(path): found
        for path in _files(lab_root)
        if (
            found := (
                no_config_passwords if any(map(path.is_relative_to, hosts)) else secrets
            ).found_in(path.read_bytes())
        )
    }
    # After the rollback the SvarUT host holds its old key again: the new keys are nowhere.
    assert file_leaks == {}


# --- reprs of everything that holds a secret ---------------------------------------------------


def test_objects_holding_secrets_hide_them_in_repr_and_str() -> None:
    with Lab() as lab:
        info = lab.connection_info()
        bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
        keys = [(c.role.value, c.private_key) for c in bundle.certificates if c.private_key]
        secrets = _lab_secrets(lab, keys)
        target = rotation.lab_target(info)
        rplan = rotation.plan(target, bundle)
        assert rplan.svarut is not None
        assert info.svarut is not None
        holders = {
            "ConnectionOptions": info.options(),
            "WindowsHost": WindowsHost(info.options()),
            "SshOptions": info.svarut.target().ssh,
            "SvarutTarget": info.svarut.target(),
            "Target": target,
            "CertificateBundle": bundle,
            "CertificateInfo": bundle.certificates,
            "NewCertificate": svarut.load_new_certificate(
                [info.pfx_files["ssl"]], info.pfx_password
            ),
            "SvarutPlan": rplan.svarut,
            "Upload": rplan.svarut.uploads,
            "Issued": lab.server.certificates.renewed_ssl,
            "LabCertificates": lab.server.certificates,
            "Lab": lab,
            "CompiledPlan": _compiled_windows_plan(info, bundle),
        }
        shown = {name: f"{value!r}\n{value}" for name, value in holders.items()}
    assert {
        name: found for name, text in shown.items() if (found := secrets.found_in(text.encode()))
    } == {}
    # The lab's ConnectionInfo hides its passwords in the repr; as_dict() shows them on purpose.
    assert secrets.found_in(repr(info).encode()) == []
    assert info.password in json.dumps(info.as_dict(), default=str)


def _compiled_windows_plan(info: ConnectionInfo, bundle: CertificateBundle) -> CompiledPlan:
    """What apply sends: the actions (config files as base64) and the PFX files."""
    with WindowsHost(info.options()) as host:
        facts = gather(host)
    wplan = plan_windows(facts, bundle, host=info.host)
    compiled = compile_windows_plan(wplan, bundle, facts, run_id="r", pfx_password=b"pfx-pw-42")
    assert any(step.action.action == "write-file" for step in compiled.steps)
    return compiled


# --- failures: no secret in the error, no key left behind ---------------------------------------


def _svarut_container_exits(lab: Lab, rplan: rotation.RotationPlan) -> None:
    """The SvarUT container exits after the restart: SvarUT, then Windows, are rolled back."""
    assert lab.svarut is not None
    lab.svarut.faults.container_exits = True


def _new_key_file_blocked(lab: Lab, rplan: rotation.RotationPlan) -> None:
    """A folder where the new key goes: `install` fails with the key staged, the undo too."""
    assert lab.svarut is not None
    (lab.svarut.sandbox / _new_key_path(rplan)).mkdir()


def _windows_apply_refused(lab: Lab, rplan: rotation.RotationPlan) -> None:
    """Every apply.ps1 call ends with a terminating error: the undo call too."""
    lab.faults.fail_pipeline("apply", "Access is denied.")


@pytest.mark.parametrize(
    ("fault", "restored"),
    [
        (_svarut_container_exits, True),
        (_new_key_file_blocked, False),
        (_windows_apply_refused, False),
    ],
)
def test_failed_rotation_leaks_no_secret_and_leaves_no_key(
    fault: Callable[[Lab, rotation.RotationPlan], None],
    restored: bool,
    debug_everywhere: _Capture,
    private_tempdir: Path,
    tmp_path: Path,
) -> None:
    with Lab(root=tmp_path / "lab") as lab:
        info = lab.connection_info()
        target = rotation.lab_target(info)
        bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
        keys = [(c.role.value, c.private_key) for c in bundle.certificates if c.private_key]
        secrets = _lab_secrets(lab, keys)
        rplan = rotation.plan(target, bundle)
        fault(lab, rplan)
        with pytest.raises(ApplyError) as failure:
            rotation.apply(rplan, journal_dir=tmp_path / "journals")
        assert failure.value.rolled_back is restored
        assert lab.svarut is not None
        sandbox = lab.svarut.sandbox
        staged = [path for path in (sandbox / "tmp").rglob("*")]
    shown = f"{failure.value}\n{failure.value.hint}\n" + "\n".join(debug_everywhere.texts)
    assert secrets.found_in(shown.encode()) == []
    journals = {
        path.name: secrets.found_in(path.read_bytes()) for path in _files(tmp_path / "journals")
    }
    assert journals
    assert all(found == [] for found in journals.values())
    assert staged == []  # the private staging folder went, key and all, even if the undo failed
    new_key = secrets.values["new ssl key PEM line PKCS8"]
    assert not any(new_key in path.read_bytes() for path in _files(sandbox / "tmp"))
    if restored:
        assert not any(new_key in path.read_bytes() for path in _files(sandbox))
    assert list(private_tempdir.iterdir()) == []


# --- argv of the processes we spawn --------------------------------------------------------------


def test_openssl_gets_the_key_and_password_only_on_stdin_and_in_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real openssl, behind a wrapper on PATH that records its command line first."""
    real = shutil.which("openssl")
    if real is None:
        pytest.skip("openssl is not installed (the RC2-40 PFX needs it)")
    wrapper = tmp_path / "bin" / "openssl"
    wrapper.parent.mkdir()
    argv_log = tmp_path / "argv"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0" "$@" > {argv_log}\nexec {real} "$@"\n')
    wrapper.chmod(0o700)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    issued = make_lab_certificates().renewed_ssl
    password = b"Rc2-Pfx-Secret-0815"
    pfx = to_rc2_40_pfx(issued, password)
    bundle = load_bundle_from_bytes([("ssl.pfx", pfx)], password)
    assert bundle.ssl.thumbprint == issued.thumbprint  # openssl really made the PFX
    secrets = Secrets()
    secrets.add("PFX password", password)
    secrets.add_key("ssl key", issued.private_key)
    command_line = argv_log.read_bytes()
    assert command_line.startswith(str(wrapper).encode())
    assert secrets.found_in(command_line) == []


# --- a wrong password is never echoed ------------------------------------------------------------

WRONG_PASSWORD = "Wrong-But-Secret-Passw0rd-77"
_PFX_PASSWORD_FROM_ENV = ("--password-env", "WRONG")


def _windows_options(info: ConnectionInfo, password_env: str) -> list[str]:
    return [
        *("--host", info.host, "--port", str(info.https_port), "--user", info.username),
        *("--auth", "basic", "--ca-bundle", str(info.ca_file)),
        *("--winrm-password-env", password_env),
    ]


WRONG_PASSWORD_CASES: dict[str, Callable[[ConnectionInfo], list[str]]] = {
    "inspect, wrong PFX password": lambda info: [
        *("inspect", str(info.pfx_files["ssl"]), *_PFX_PASSWORD_FROM_ENV)
    ],
    "plan, wrong PFX password": lambda info: [
        *("plan", *_windows_options(info, "GOOD"), "--pfx", str(info.pfx_files["pair"])),
        *_PFX_PASSWORD_FROM_ENV,
    ],
    "status, wrong WinRM password": lambda info: ["status", *_windows_options(info, "WRONG")],
}


@pytest.mark.parametrize("case", sorted(WRONG_PASSWORD_CASES))
def test_a_wrong_password_is_refused_without_echoing_it(case: str) -> None:
    with Lab() as lab:
        info = lab.connection_info()
        completed = subprocess.run(
            [sys.executable, "-m", "cosdoc_certs", "-vv", *WRONG_PASSWORD_CASES[case](info)],
            env={**os.environ, "WRONG": WRONG_PASSWORD, "GOOD": info.password},
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert completed.returncode == 4, completed.stderr
    assert b"Traceback" not in completed.stderr
    assert WRONG_PASSWORD.encode() not in completed.stdout + completed.stderr
    expected = b"refused the credentials" if "WinRM" in case else b"wrong password for"
    assert expected in completed.stderr


# --- remote output in messages: a password it quotes is hidden ----------------------------------

HIDDEN_PASSWORDS = [
    ("Server=db;User Id=sa;Password=Hemmelig-42;Encrypt=true", "Hemmelig-42"),
    ("Login failed. Data Source=db01;pwd = Hemmelig 42", "Hemmelig 42"),
    ('{"ConnectionString": "x", "Password": "Hemmelig-42"}', "Hemmelig-42"),
    ("DB_PASSWORD='Hemmelig # 42' is not valid", "Hemmelig # 42"),
    ("invalid interpolation: PASSWORD=Hemmelig-42,port=5432", "Hemmelig-42"),
]


@pytest.mark.parametrize(("text", "secret"), HIDDEN_PASSWORDS)
def test_hide_passwords_hides_the_value_and_keeps_the_rest(text: str, secret: str) -> None:
    shown = hide_passwords(text)
    assert secret not in shown
    assert "<hidden>" in shown
    assert shown.split("<hidden>")[0] == text.split(secret)[0].rstrip("'\"")


def test_hide_passwords_leaves_ordinary_messages_alone() -> None:
    for text in ("The specified network password is not correct.", "Keyset does not exist"):
        assert hide_passwords(text) == text


def test_a_powershell_error_quoting_a_connection_string_hides_its_password() -> None:
    with Lab() as lab:
        secrets = _lab_secrets(lab, [])
        password = next(v for n, v in secrets.values.items() if n.startswith("connection"))
        quoted = f"Format of the initialization string: Server=db;Password={password.decode()};"
        lab.faults.fail_pipeline("gather", quoted)
        with pytest.raises(ScriptError) as failure:
            status(lab.connection_info().options())
    assert "initialization string: Server=db;Password=<hidden>;" in str(failure.value)
    assert secrets.found_in(str(failure.value).encode()) == []


def test_an_apply_result_quoting_a_password_hides_it() -> None:
    before = {"state": "Running", "stuck_process": None}
    result = {"index": 0, "action": "restart-service", "ok": False, "before": before}
    document = ApplyDocument.from_data(
        {
            "schema_version": SCHEMA_VERSION,
            "results": [{**result, "message": "Service 'X' stopped. Password=Hemmelig-42;"}],
            "completed": 0,
            "failed_index": 0,
            "error": "ConvertFrom-Json: Server=SQL01;Password=Hemmelig-42;",
        }
    )
    assert document.results[0].message == "Service 'X' stopped. Password=<hidden>;"
    assert document.error == "ConvertFrom-Json: Server=SQL01;Password=<hidden>;"
