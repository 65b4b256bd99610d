"""The docs' examples run, as a reader would run them against the lab; their links resolve.

Every ```python block of README.md and docs/*.md is listed in :data:`DOCS` (a new block fails
:func:`test_every_python_block_is_listed` until it is). A doc's blocks run in order in one
namespace, like cells of a notebook, in a folder holding the files the examples name (the
lab's PFX files under those names) and with the environment variables they read. Where an
example names a customer's server, the lab's values are substituted, as the docs tell the
reader to do; each substitution must still match the doc's text. A block is skipped only
when it is a fragment that cannot run by itself, with the reason given.

The runbook's command lines (inspect, plan, apply, verify, rollback) run in bash against a
``cosdoc-certs lab --json`` subprocess, with the placeholders of its lab section filled in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lab_process import running_lab

from cosdoc_certs.cli import main
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.windows.verify import endpoint_map

REPO = Path(__file__).resolve().parent.parent
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_LAB_HOST = "info.host"
_LAB_OPTIONS = "info.options()"
_LAB_SVARUT = "info.svarut.target()"
# The lab's HTTPS bindings listen on other ports than 443: verify is told where (docs/windows.md).
_LAB_TLS = "verify_windows(host, {plan}, tls_address=endpoint_map(info.tls_endpoints))"


@dataclass(frozen=True)
class DocRun:
    """How a doc's examples run against the lab: substitutions, fragments skipped, a check."""

    substitutions: tuple[tuple[str, str], ...] = ()
    skip: dict[int, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] = lambda namespace: None
    blocks: int = 0
    order: tuple[int, ...] = ()  # when the sections are not in the order a reader runs them
    # the names a reader has before the first block (None: every name of the reader's folder)
    given: tuple[str, ...] | None = None


def _check_api(namespace: dict[str, Any]) -> None:
    assert namespace["result"].outcome.value == "applied"  # the lab block's own rotation
    assert namespace["lab"].https.recorder.script_names
    assert namespace["checked"].ok  # verify_rotation of the common path, later
    assert namespace["before"].windows is not None  # the rollback check compared real reads
    assert namespace["one"].svarut is not None
    assert "[customers.lab.windows]" in namespace["info"].inventory_entry("lab")


def _check_status(namespace: dict[str, Any]) -> None:
    assert "thumbprint-invisible-char" in namespace["report"].codes()


def _check_windows(namespace: dict[str, Any]) -> None:
    assert namespace["found"].ok, namespace["found"].to_text()
    assert namespace["report"].ok, namespace["report"].to_text()
    assert namespace["result"].outcome.value == "rolled-back"


def _check_svarut(namespace: dict[str, Any]) -> None:
    assert namespace["report"].ok
    assert "serves" in namespace["plan"].to_text() or namespace["plan"].plan.changes


DOCS: dict[str, DocRun] = {
    "docs/api.md": DocRun(
        blocks=6,
        given=("info", "endpoint_map"),  # no password or options the page does not define
        substitutions=(
            (
                'target = Target.from_inventory("kunder.toml", "testkommune")',
                'target = Target.from_inventory("kunder.toml", "testkommune")\n'
                "from cosdoc_certs import lab_target\ntarget = lab_target(info)",
            ),
            (
                "target                      # its hosts and consumers",
                "target\ntarget = lab_target(info)",
            ),
            ("report = status(options)", f"options = {_LAB_OPTIONS}\nreport = status(options)"),
            (
                'svarut.SvarutTarget(svarut.SshOptions("svarut01.kommune.no", username="drift"))',
                _LAB_SVARUT,
            ),
            ("verify_windows(host, wplan)", _LAB_TLS.format(plan="wplan")),
        ),
        check=_check_api,
    ),
    "docs/appsettings.md": DocRun(blocks=1),
    "docs/certificates.md": DocRun(blocks=1),
    "docs/lab.md": DocRun(blocks=1),
    "docs/lab-protocol.md": DocRun(
        blocks=2,
        skip={1: "a fragment: how the previous block's endpoint gets TLS (Ellipsis placeholders)"},
    ),
    "docs/status.md": DocRun(
        blocks=1,
        substitutions=(
            (
                r'ConnectionOptions("cosdoc-app01", username="KOMMUNE\\drift-admin", password=pw)',
                _LAB_OPTIONS,
            ),
        ),
        check=_check_status,
    ),
    "docs/svarut.md": DocRun(
        blocks=2,
        substitutions=(
            (
                'svarut.SvarutTarget(svarut.SshOptions("svarut01.kommune.no", username="drift"))',
                _LAB_SVARUT,
            ),
            ('Path("/tmp/svarut-lab")', 'Path("svarut-lab")'),
        ),
        check=_check_svarut,
    ),
    "docs/windows.md": DocRun(
        blocks=6,
        order=(0, 1, 4, 3, 2, 5),  # the page describes verify before apply, check after it
        substitutions=(
            (
                r'ConnectionOptions("cosdoc-app01", username="KOMMUNE\\adm", password=pw)',
                _LAB_OPTIONS,
            ),
            ('"cosdoc-app01"', _LAB_HOST),
            ("verify_windows(host, plan)", _LAB_TLS.format(plan="plan")),
        ),
        check=_check_windows,
    ),
}


def _python_blocks(doc: str) -> list[str]:
    return _PYTHON_BLOCK.findall((REPO / doc).read_text(encoding="utf-8"))


def test_every_python_block_is_listed() -> None:
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = {
        str(path.relative_to(REPO)): len(blocks)
        for path in docs
        if (blocks := _python_blocks(str(path.relative_to(REPO))))
    }
    assert found == {doc: run.blocks for doc, run in DOCS.items()}


@pytest.fixture
def reader_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A running lab and a folder with the files and variables the examples name."""
    with Lab(root=tmp_path / "lab") as lab:
        info = lab.connection_info()
        folder = tmp_path / "reader"
        folder.mkdir()
        names = {
            "pair": ("pair.pfx", "buypass-pair.pfx"),
            "ssl": ("ssl.pfx", "ssl-2026.pfx"),
            "signing": ("signering.p12",),
            "encryption": ("kryptering.p12",),
        }
        for role, copies in names.items():
            for name in copies:
                shutil.copy(info.pfx_files[role], folder / name)
        shutil.copy(REPO / "docs" / "inventory.example.toml", folder / "kunder.toml")
        shutil.copy(REPO / "docs" / "deviations.example.toml", folder)
        (folder / "ca").mkdir()
        for name in ("tk-root.pem", "ca/testkommune-root.pem"):  # the customer's CA file
            shutil.copy(info.ca_file, folder / name)
        (folder / "tests").symlink_to(REPO / "tests")
        monkeypatch.chdir(folder)
        monkeypatch.setenv("PFX_PW", info.pfx_password)
        monkeypatch.setenv("WINRM_PW", info.password)
        monkeypatch.setenv("TESTKOMMUNE_WINRM_PASSWORD", info.password)
        monkeypatch.setenv("COSDOC_CERTS_JOURNAL_DIR", str(tmp_path / "journals"))
        current_ssl = lab.server.certificates.current_ssl
        yield {
            "endpoint_map": endpoint_map,
            "info": info,
            "password": info.pfx_password,
            "options": info.options(),
            "old_cert_pem": current_ssl.cert_pem() + current_ssl.chain_pem(),
            "old_key_pem": current_ssl.key_pem(),
        }


def _substituted(doc: str, block: str, run: DocRun) -> str:
    for old, new in run.substitutions:
        block = block.replace(old, new)
    return block


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_python_examples_run_against_the_lab(doc: str, reader_folder: dict[str, Any]) -> None:
    run = DOCS[doc]
    blocks = _python_blocks(doc)
    text = "\n".join(blocks)
    unmatched = [old for old, _ in run.substitutions if old not in text]
    assert unmatched == [], "the doc changed: update the substitutions"
    namespace = {
        name: value
        for name, value in reader_folder.items()
        if run.given is None or name in run.given
    }
    for index in run.order or range(len(blocks)):
        code = compile(_substituted(doc, blocks[index], run), f"{doc} block {index}", "exec")
        if index in run.skip:
            continue
        exec(code, namespace)  # noqa: S102 -- the docs' own examples
    run.check(namespace)


def _links(doc: Path) -> Iterator[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    for target in _LINK.findall(text):
        if not re.match(r"[a-z]+:", target):
            yield target


def test_links_between_docs_resolve() -> None:
    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in _links(doc):
            path, _, anchor = target.partition("#")
            resolved = (doc.parent / path).resolve() if path else doc
            if not resolved.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and resolved.suffix == ".md":
                headings = {
                    _anchor(line.lstrip("#").strip())
                    for line in resolved.read_text(encoding="utf-8").splitlines()
                    if line.startswith("#")
                }
                if anchor not in headings:
                    broken.append(f"{doc.name}: {target} (no such heading)")
    assert broken == []


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = re.sub(r"[^\w\- ]", "", heading.lower())
    return kept.replace(" ", "-")


def test_link_extraction_finds_the_readme_links() -> None:
    assert {"docs/runbook.md", "docs/api.md", "docs/lab.md"} <= set(_links(REPO / "README.md"))


# --- the runbook's command lines, against `cosdoc-certs lab --json` -----------------------------

_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
RUNBOOK_STEPS = ("inspect", "plan", "apply", "verify", "rollback")
_ASKS_FIRST = ("apply", "rollback")  # without a terminal these need --yes, as the runbook says


@pytest.fixture
def lab_process(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`cosdoc-certs lab --json` running as a subprocess; its JSON document."""
    with running_lab("--root", str(tmp_path / "lab")) as document:
        yield document


def _lab_placeholders(lab: dict[str, Any]) -> dict[str, str]:
    svarut = lab["svarut"]
    return {
        "<password>": lab["password"],
        "<pfx password>": lab["pfx_password"],
        "<https port>": str(lab["https_port"]),
        "<CA file>": lab["ca_file"],
        "<real port>": lab["tls_endpoints"]["*:443"].rpartition(":")[2],
        "<ssh port>": str(svarut["ssh_port"]),
        "<client key>": svarut["client_key"],
        "<host key>": svarut["host_key"],
        "<TLS port>": str(svarut["tls_port"]),
        "<pair PFX>": lab["pfx_files"]["pair"],
        "<ssl PFX>": lab["pfx_files"]["ssl"],
    }


def _runbook_commands() -> tuple[str, dict[str, str]]:
    """The lab block (defines ``I``) and each step's command line, by subcommand."""
    blocks = _SH_BLOCK.findall((REPO / "docs" / "runbook.md").read_text(encoding="utf-8"))
    (lab_block,) = [block for block in blocks if "<pfx password>" in block]
    steps = {}
    for block in blocks:
        words = block.split()
        if words[:1] == ["cosdoc-certs"] and words[1] in RUNBOOK_STEPS and "${I[@]}" in block:
            steps[words[1]] = block.strip()
        elif words[:2] == ["cosdoc-certs", "inspect"]:
            steps["inspect"] = block.strip()
    return lab_block, steps


def test_runbook_commands_run_against_the_lab(lab_process: dict[str, Any], tmp_path: Path) -> None:
    lab_block, steps = _runbook_commands()
    assert sorted(steps) == sorted(RUNBOOK_STEPS)
    for placeholder, value in _lab_placeholders(lab_process).items():
        assert placeholder in lab_block
        lab_block = lab_block.replace(placeholder, value)
    folder = tmp_path / "consultant"
    folder.mkdir()
    shutil.copy(lab_process["pfx_files"]["pair"], folder / "signing+encryption.pfx")
    shutil.copy(lab_process["pfx_files"]["ssl"], folder / "ssl.pfx")
    environment = {
        **os.environ,
        "PFX_PW": lab_process["pfx_password"],
        "COSDOC_CERTS_JOURNAL_DIR": str(tmp_path / "journals"),
    }
    for step in ("lab", *RUNBOOK_STEPS):
        command = steps.get(step, "")
        if step in _ASKS_FIRST:
            command = command.replace('${I[@]}"', '${I[@]}" --yes', 1)
        script = f"set -e\n{lab_block}\n{command}\n" if step != "lab" else lab_block
        completed = subprocess.run(
            ["bash", "-c", script],
            cwd=folder,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert completed.returncode == 0, f"{step}: {completed.stdout[-1500:]}{completed.stderr}"


# --- every option the docs name exists ----------------------------------------------------------

_NOT_OURS = {
    "--strict": "mypy",
    "--rounds": "a benchmark script",
    "--runs": "a benchmark script",
    "--env-file": "docker compose",
    "--format": "docker compose ps",
    "--config-settings": "pip (editable install mode)",
    "--rm": "docker compose run (the nginx -t pre-flight)",
    "--no-deps": "docker compose run (the nginx -t pre-flight)",
}
_COMMANDS = (
    (),
    ("demo",),
    ("lab",),
    ("status",),
    ("plan",),
    ("apply",),
    ("verify",),
    ("rollback",),
    ("inspect",),
    ("export-public",),
    ("make-test-certs",),
    ("inventory", "check"),
    ("inventory", "status"),
    *(("svarut", name) for name in ("status", "plan", "apply", "verify", "rollback")),
)


def test_every_option_the_docs_name_exists() -> None:
    runner = CliRunner()
    helps = "".join(runner.invoke(main, [*command, "--help"]).output for command in _COMMANDS)
    known = set(re.findall(r"--[a-z][a-z0-9-]+", helps))
    assert len(known) > 40
    named = {
        str(doc.relative_to(REPO)): set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", doc.read_text()))
        for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    }
    unknown = {doc: sorted(options - known - set(_NOT_OURS)) for doc, options in named.items()}
    assert {doc: options for doc, options in unknown.items() if options} == {}


def test_svarut_lab_commands_run_against_the_lab(lab_process: dict[str, Any]) -> None:
    blocks = _SH_BLOCK.findall((REPO / "docs" / "svarut.md").read_text(encoding="utf-8"))
    (block,) = [block for block in blocks if "<ssh port>" in block]
    for placeholder, value in _lab_placeholders(lab_process).items():
        block = block.replace(placeholder, value)
    assert "<" not in block
    completed = subprocess.run(
        ["bash", "-c", f"set -e\n{block}"],
        env={**os.environ, "COSDOC_LAB_PFX_PASSWORD": lab_process["pfx_password"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "[restart-compose]" in completed.stdout


def test_status_kerberos_line_without_a_ticket_says_what_to_fix(
    lab_process: dict[str, Any], tmp_path: Path
) -> None:
    blocks = _SH_BLOCK.findall((REPO / "docs" / "status.md").read_text(encoding="utf-8"))
    (line,) = [line for block in blocks for line in block.splitlines() if "kerberos" in line]
    line = line.replace(
        "cosdoc-app01.kommune.local", f"127.0.0.1 --port {lab_process['http_port']}"
    )
    no_tickets = {**os.environ, "KRB5CCNAME": f"FILE:{tmp_path / 'no-tickets'}"}
    completed = subprocess.run(
        ["bash", "-c", line],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=no_tickets,
    )
    assert completed.returncode == 4
    assert completed.stderr.startswith("error: 127.0.0.1:")
    assert "no Kerberos ticket for the logged-on user" in completed.stderr
    assert "kinit" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert "None" not in completed.stderr
