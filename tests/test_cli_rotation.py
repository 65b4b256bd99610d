"""``cosdoc-certs plan|apply|verify|rollback`` and ``inventory`` against the lab (real pypsrp,
real asyncssh, real TLS), and the fast, lazily loaded ``cosdoc-certs --help``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from cosdoc_certs import rotation
from cosdoc_certs.cli import COMMANDS, main
from cosdoc_certs.inventory import load_inventory
from cosdoc_certs.lab.runner import Lab

pytestmark = pytest.mark.timeout(120)

WINRM_PASSWORD_ENV = "LAB_WINRM_PASSWORD"
PFX_PASSWORD_ENV = "LAB_PFX_PASSWORD"


@pytest.fixture
def runner(lab: Lab) -> CliRunner:
    info = lab.connection_info()
    return CliRunner(env={WINRM_PASSWORD_ENV: info.password, PFX_PASSWORD_ENV: info.pfx_password})


def _installation(lab: Lab) -> list[str]:
    info = lab.connection_info()
    assert info.svarut is not None
    endpoints = [f"--tls-endpoint={key}={value}" for key, value in info.tls_endpoints.items()]
    return [
        *("--name", "testkommune", "--host", info.host, "--port", str(info.https_port)),
        *("--user", info.username, "--auth", "basic", "--ca-bundle", str(info.ca_file)),
        *("--winrm-password-env", WINRM_PASSWORD_ENV, *endpoints),
        *("--svarut-host", info.svarut.host, "--svarut-port", str(info.svarut.ssh_port)),
        *("--svarut-user", info.svarut.username, "--svarut-host-key", info.svarut.host_key),
        *("--svarut-identity", str(info.svarut.client_key), "--svarut-layout", "single"),
        *("--svarut-tls-port", str(info.svarut.tls_port)),
    ]


def _pfx(lab: Lab) -> list[str]:
    files = lab.connection_info().pfx_files
    return [
        "--pfx",
        str(files["pair"]),
        "--pfx",
        str(files["ssl"]),
        "--password-env",
        PFX_PASSWORD_ENV,
    ]


def _run(runner: CliRunner, *arguments: str) -> Result:
    return runner.invoke(main, list(arguments), catch_exceptions=False)


def _state(lab: Lab) -> rotation.InstallationStatus:
    return rotation.installation_status(rotation.lab_target(lab.connection_info()))


def test_plan_json_spans_both_hosts(lab: Lab, runner: CliRunner) -> None:
    done = _run(runner, "plan", *_installation(lab), *_pfx(lab), "--json")
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert document["target"] == "testkommune"
    actions = {change["action"] for change in document["changes"]}
    assert {"import-cert", "edit-config-key", "rebind-https", "upload-files", "set-env"} <= actions
    assert lab.connection_info().pfx_password not in done.output


def test_apply_refuses_without_a_terminal_and_without_yes(lab: Lab, runner: CliRunner) -> None:
    before = _state(lab)
    done = _run(runner, "apply", *_installation(lab), *_pfx(lab))
    assert done.exit_code == 4
    assert "no terminal to confirm on" in done.stderr
    assert before.differences(_state(lab)) == []


def test_apply_verify_rollback_and_exit_codes(lab: Lab, runner: CliRunner, tmp_path: Path) -> None:
    journals = ["--journal-dir", str(tmp_path / "journals")]
    before = _state(lab)
    applied = _run(runner, "apply", *_installation(lab), *_pfx(lab), "--yes", *journals, "--json")
    assert applied.exit_code == 0, applied.output
    document = json.loads(applied.stdout)
    assert document["result"]["outcome"] == "applied"
    assert document["verify"]["ok"] is True
    verified = _run(runner, "verify", *_installation(lab), *journals)
    assert verified.exit_code == 0, verified.output
    assert "testkommune: verified" in verified.stdout
    undone = _run(runner, "rollback", *_installation(lab), "--yes", *journals)
    assert undone.exit_code == 0, undone.output
    assert "rolled-back" in undone.stdout
    assert before.differences(_state(lab)) == []
    again = _run(runner, "verify", *_installation(lab), *journals, "--json")
    assert again.exit_code == 3  # the run's certificates are no longer in use
    assert json.loads(again.stdout)["ok"] is False


def test_a_svarut_failure_rolls_back_both_hosts_with_exit_5(
    lab: Lab, runner: CliRunner, tmp_path: Path
) -> None:
    before = _state(lab)
    assert lab.svarut is not None
    lab.svarut.faults.container_exits = True
    done = _run(
        runner, "apply", *_installation(lab), *_pfx(lab), "--yes", "--journal-dir", str(tmp_path)
    )
    assert done.exit_code == 5, done.output
    assert "both hosts were rolled back" in done.stderr
    assert "Traceback" not in done.output
    assert before.differences(_state(lab)) == []


def _lab_inventory(lab: Lab, folder: Path) -> Path:
    info = lab.connection_info()
    assert info.svarut is not None
    path = folder / "inventory.toml"
    path.write_text(
        f"""
[customers.lab.windows]
host = "{info.host}"
port = {info.https_port}
user = "{info.username}"
auth = "basic"
password_env = "{WINRM_PASSWORD_ENV}"
ca_bundle = "{info.ca_file}"

[customers.lab.svarut]
host = "{info.svarut.host}"
port = {info.svarut.ssh_port}
user = "{info.svarut.username}"
host_key = "{info.svarut.host_key}"
identities = ["{info.svarut.client_key}"]
tls_port = {info.svarut.tls_port}

[customers.svarut-only.svarut]
host = "{info.svarut.host}"
port = {info.svarut.ssh_port}
user = "{info.svarut.username}"
host_key = "{info.svarut.host_key}"
identities = ["{info.svarut.client_key}"]
tls_port = {info.svarut.tls_port}
""",
        encoding="utf-8",
    )
    return path


def test_plan_for_an_inventory_customer(lab: Lab, runner: CliRunner, tmp_path: Path) -> None:
    inventory = str(_lab_inventory(lab, tmp_path))
    done = _run(runner, "plan", "--inventory", inventory, "--customer", "lab", *_pfx(lab))
    assert done.exit_code == 0, done.output
    assert "Rotation of lab" in done.stdout
    mixed = _run(
        runner, "plan", "--inventory", inventory, "--customer", "lab", "--host", "x", *_pfx(lab)
    )
    assert mixed.exit_code == 2  # wrong usage, as the runbook's table says
    assert "--host cannot be combined with --inventory" in mixed.stderr


def test_inventory_status_reads_every_customer(lab: Lab, runner: CliRunner, tmp_path: Path) -> None:
    inventory = str(_lab_inventory(lab, tmp_path))
    done = _run(runner, "inventory", "status", inventory)
    assert done.exit_code == 3  # the seeded invisible character is an error
    lines = done.stdout.splitlines()
    assert lines[0].startswith("lab: error;")
    assert lines[1].startswith("svarut-only: ok;")
    checked = _run(runner, "inventory", "check", inventory, "--json")
    assert checked.exit_code == 0
    assert [row["customer"] for row in json.loads(checked.stdout)["customers"]] == [
        "lab",
        "svarut-only",
    ]


def test_an_inventory_customer_says_where_its_tls_endpoints_are(
    lab: Lab, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = lab.connection_info()
    path = _lab_inventory(lab, tmp_path)
    pairs = "".join(f'"{binding}" = "{real}"\n' for binding, real in info.tls_endpoints.items())
    path.write_text(f"{path.read_text()}\n[customers.lab.tls_endpoints]\n{pairs}")
    monkeypatch.setenv(WINRM_PASSWORD_ENV, info.password)
    customer = load_inventory(path).customer("lab")
    served = rotation.installation_status(rotation.Target.from_customer(customer)).served
    assert served == rotation.installation_status(rotation.lab_target(info)).served
    assert served
    assert all(len(thumbprint) == 40 for thumbprint in served.values()), served
    mixed = _run(
        runner, "plan", "--inventory", str(path), "--customer", "lab", *_pfx(lab),
        "--tls-endpoint", "*:443=127.0.0.1:1",
    )  # fmt: skip
    assert mixed.exit_code == 2
    assert "tls_endpoints" in mixed.stderr


@pytest.mark.parametrize(
    ("arguments", "exit_code", "message"),
    [
        (["plan", "--pfx", "README.md"], 2, "no installation given"),
        (["verify", "--customer", "x"], 2, "--inventory and --customer go together"),
        (["verify", "--inventory", "README.md"], 2, "add --customer"),
        (["status", "--inventory", "README.md", "--customer", "x", "--host", "h"], 2, "--host"),
        (["status"], 2, "give --host, or --inventory FILE --customer NAME"),
        (["plan", "--host", "h", "--tls-endpoint", "nonsense", "--pfx", "README.md"], 2, "IP:PORT"),
        (["plan", "--host", "h", "--auth", "basic", "--pfx", "README.md"], 4, "needs --user"),
    ],
)
def test_bad_options_give_one_line(arguments: list[str], exit_code: int, message: str) -> None:
    done = CliRunner().invoke(main, arguments)
    assert done.exit_code == exit_code, done.output
    assert message in done.stderr
    assert "Traceback" not in done.output


def test_help_lists_every_command_without_importing_them() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from cosdoc_certs.cli import main; "
        "out = CliRunner().invoke(main, ['--help']).output; "
        "print(sorted(m for m in sys.modules if m.startswith(('cosdoc_certs.lab', 'pypsrp', "
        "'asyncssh', 'cosdoc_certs.cli.')))); print(out)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    imported, _, text = done.stdout.partition("\n")
    assert imported == "['cosdoc_certs.cli._common']"
    for name in COMMANDS:
        assert f"  {name} " in text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_loads_under_its_name(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert command.help


@pytest.fixture
def logger_levels() -> Iterator[None]:
    names = ("cosdoc_certs", "pypsrp", "psrpcore", "asyncssh")
    saved = {name: logging.getLogger(name).level for name in names}
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for name, value in saved.items():
        logging.getLogger(name).setLevel(value)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("logger_levels")
def test_verbose_logs_ours_but_the_remoting_libraries_never_at_debug() -> None:
    logging.getLogger().setLevel(logging.DEBUG)  # even when the whole process logs DEBUG
    CliRunner().invoke(main, ["-vv", "inventory", "--help"])
    assert logging.getLogger("cosdoc_certs").getEffectiveLevel() == logging.DEBUG
    for name in ("pypsrp", "psrpcore"):
        assert logging.getLogger(name).getEffectiveLevel() > logging.DEBUG


def test_an_unreachable_server_is_one_line_and_changes_nothing(
    lab: Lab, runner: CliRunner, tmp_path: Path
) -> None:
    done = _run(
        runner,
        "apply",
        *("--host", "127.0.0.1", "--port", "1", "--auth", "basic", "--insecure-http"),
        *("--user", "lab-admin", "--winrm-password-env", WINRM_PASSWORD_ENV),
        *_pfx(lab),
        *("--yes", "--journal-dir", str(tmp_path)),
    )
    assert done.exit_code == 4, done.output
    assert len(done.stderr.strip().splitlines()) == 1
    assert "127.0.0.1:1" in done.stderr
    assert not list(tmp_path.glob("*.json"))


def test_status_of_an_inventory_customer_shows_every_consumer_binding_and_svarut(
    lab: Lab, runner: CliRunner, tmp_path: Path
) -> None:
    inventory = str(_lab_inventory(lab, tmp_path))
    done = _run(runner, "status", "--inventory", inventory, "--customer", "lab")
    assert done.exit_code == 3, done.output  # the seeded invisible character
    for consumer in ("Digihelse", "KPR", "Authentication", "SkatteIntegrasjonApi"):
        assert consumer in done.stdout
    assert "binding " in done.stdout
    assert "SvarUT " in done.stdout
    chosen = _run(runner, "inventory", "status", inventory, "--customer", "lab")
    assert chosen.exit_code == 3
    assert "Digihelse" in chosen.stdout
    assert "binding " in chosen.stdout
