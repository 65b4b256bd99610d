"""The project's PowerShell, parsed (tree-sitter-powershell): syntax, Windows PowerShell 5.1
rules and the script <-> Python contract (see tests/powershell_static.py)."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import powershell_static as static
import pytest
import tree_sitter
import tree_sitter_powershell

from cosdoc_certs.consumers import COSDOC_CATALOG
from cosdoc_certs.lab.twins.apply import _EXECUTORS as TWIN_EXECUTORS
from cosdoc_certs.windows.apply import GatherScope, run_apply_script
from cosdoc_certs.windows.apply_contract import (
    ACTION_TYPES,
    BEFORE_KEYS,
    ApplyDocument,
    GrantRead,
    ImportPfx,
    RecyclePool,
    RemoveAuthority,
    RestartService,
    RestoreFile,
    SetBinding,
    WriteFile,
    actions_to_json,
)
from cosdoc_certs.windows.gather import GatherDocument

ROOT = Path(__file__).resolve().parent.parent
POWERSHELL_FILES = sorted(
    path for folder in ("cosdoc_certs", "tests") for path in (ROOT / folder).rglob("*.ps1")
)


def _syntax_problems(source: bytes) -> list[str]:
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    problems: list[str] = []
    stack = [parser.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            line, column = node.start_point
            kind = "missing" if node.is_missing else "unexpected"
            problems.append(f"{kind} {node.type!r} at {line + 1}:{column + 1}")
        stack.extend(node.children)
    return problems


def test_there_are_scripts_to_check() -> None:
    names = {path.name for path in POWERSHELL_FILES}
    assert {"gather.ps1", "gather.Tests.ps1"} <= names


@pytest.mark.parametrize("path", POWERSHELL_FILES, ids=lambda path: path.name)
def test_parses_without_errors(path: Path) -> None:
    assert _syntax_problems(path.read_bytes()) == []


@pytest.mark.parametrize(
    "source",
    [b"if ($x { Write-Output 1 }", b"function f { param([string] $a ", b"$h = @{ a = 1"],
)
def test_the_check_catches_broken_powershell(source: bytes) -> None:
    assert _syntax_problems(source) != []


@pytest.mark.parametrize(
    "path",
    [path for path in POWERSHELL_FILES if path.parent.name == "scripts"],
    ids=lambda path: path.name,
)
def test_package_scripts_carry_their_marker(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == f"# cosdoc-certs-script: {path.stem}"


# -- Windows PowerShell 5.1 rules (tests/powershell_static.py) --------------------------------

PACKAGE_SCRIPTS = [path for path in POWERSHELL_FILES if path.parent.name == "scripts"]
CHECKS = {
    "syntax": static.syntax_problems,
    "powershell-7": static.powershell_7_problems,
    "cmdlets-5.1": static.cmdlet_problems,
    "try-error-action": static.try_problems,
    "native-calls": static.native_problems,
}


@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
@pytest.mark.parametrize("path", PACKAGE_SCRIPTS, ids=lambda path: path.name)
def test_package_scripts_follow_the_windows_powershell_5_1_rules(
    path: Path, check: Callable[[tree_sitter.Node], list[str]]
) -> None:
    assert check(static.parse(path.read_bytes())) == []


@pytest.mark.parametrize(
    ("check", "source", "problem"),
    [
        ("syntax", b"$a = $b ?? 'x'", "PowerShell 7 operator"),
        ("syntax", b"$a = $b?.Name", "PowerShell 7 operator"),
        ("syntax", b"$a = $x ? 1 : 2", "PowerShell 7 operator"),
        ("powershell-7", b"Get-Item -Path C:\\ && Write-Output ok", "pipeline chain"),
        ("powershell-7", b"Get-Item -Path C:\\ || Write-Output no", "pipeline chain"),
        ("powershell-7", b"1, 2 | ForEach-Object -Parallel { $_ }", "-Parallel"),
        ("powershell-7", b"function f { process { 1 } clean { 2 } }", "clean {} block"),
        ("cmdlets-5.1", b"$x = ConvertFrom-Json -InputObject $t -AsHashtable", "-AsHashtable"),
        ("cmdlets-5.1", b"Join-Path -Path a -ChildPath b -AdditionalChildPath c", "not in 5.1"),
        ("cmdlets-5.1", b"Get-Secret -Name x", "not in the allow-list of 5.1 cmdlets"),
        ("try-error-action", b"try { Get-Item -LiteralPath C:\\x } catch { }", "Get-Item in try"),
        ("native-calls", b"netsh.exe http show sslcert", "called directly"),
        ("native-calls", b"& $tool /grant x", "'&' call"),
        ("native-calls", b"Get-CimInstance -ClassName Win32_Service", "OperationTimeoutSec"),
        ("native-calls", b"$service.WaitForStatus('Stopped')", "WaitForStatus without a timeout"),
        (
            "native-calls",
            b"function Invoke-Native { & x }\nfunction f { $r = Invoke-Native -FilePath a }",
            "ExitCode of Invoke-Native is never checked",
        ),
        (
            "native-calls",
            b"function Invoke-Native { $p.WaitForExit() }\n"
            b"function f { $r = Invoke-Native -FilePath a; $r.ExitCode }",
            "does not wait with a timeout",
        ),
    ],
)
def test_each_static_check_catches_what_it_is_for(check: str, source: bytes, problem: str) -> None:
    problems = CHECKS[check](static.parse(source))
    assert any(problem in found for found in problems), problems


def test_correct_5_1_code_passes_the_checks() -> None:
    source = (
        b"function Invoke-Native { $p.WaitForExit($Seconds * 1000) }\n"
        b"function f {\n  try { $i = Get-Item -LiteralPath C:\\x -ErrorAction Stop } catch { }\n"
        b"  $r = Invoke-Native -FilePath netsh.exe\n  if ($r.ExitCode -ne 0) { throw 'x' }\n"
        b"  $s.WaitForStatus('Stopped', $timeout)\n}\n"
    )
    root = static.parse(source)
    assert [problem for check in CHECKS.values() for problem in check(root)] == []


# -- the script <-> Python contract, from the parse -------------------------------------------


def _script(name: str) -> tree_sitter.Node:
    return static.parse((ROOT / "cosdoc_certs" / "windows" / "scripts" / name).read_bytes())


def _emitted_by_python() -> set[str]:
    """Actions cosdoc_certs.windows.apply constructs (the plan's steps and the undo's)."""
    source = (ROOT / "cosdoc_certs" / "windows" / "apply.py").read_text(encoding="utf-8")
    return {
        kind.action
        for kind in ACTION_TYPES.values()
        if re.search(rf"\b{kind.__name__}\(", source)
    }


def test_every_action_apply_ps1_dispatches_is_emitted_by_python_and_run_by_the_twin() -> None:
    root = _script("apply.ps1")
    dispatched = static.switch_labels(root, "Invoke-Action")
    assert dispatched == static.switch_labels(root, "New-Before")
    assert dispatched == set(ACTION_TYPES)
    assert dispatched == _emitted_by_python()
    assert dispatched == {kind.action for kind in TWIN_EXECUTORS}


def test_apply_ps1_reads_exactly_the_fields_of_the_contract() -> None:
    actions = [
        ImportPfx(0, ("A" * 40,), "Microsoft Software Key Storage Provider", ("AAAA",)),
        WriteFile("C:\\a.json", "e30=", "B" * 64),
        GrantRead("A" * 40, "IIS AppPool\\x", "S-1-5-82-1-2-3-4-5"),
        SetBinding("site", "*:443:h", "A" * 40, ("DefaultFlags=0",)),
        RestartService("s"),
        RecyclePool("p"),
        RestoreFile("C:\\a.json", "C:\\a.json.bak", "B" * 64),
        RemoveAuthority("C" * 40),
    ]
    assert {action.action for action in actions} == set(ACTION_TYPES)
    examples = json.loads(actions_to_json(actions))
    wire = {name for item in examples for name in item}
    assert static.member_names(_script("apply.ps1"), "$Action") | {"action"} >= wire - {"action"}
    assert static.member_names(_script("apply.ps1"), "$Action") <= wire


def test_apply_ps1_before_objects_have_the_contract_keys() -> None:
    root = _script("apply.ps1")
    for action in ACTION_TYPES:
        assert static.hash_keys(root, "New-Before") >= BEFORE_KEYS[action], action
    every = set().union(*BEFORE_KEYS.values())
    assert static.hash_keys(root, "New-Before") == every


def _gather_fields(kind: Any) -> set[str]:
    """camelCase names of every field of the gather contract, nested documents included
    (not the fields Python derives after parsing, such as the http.sys bindings from netsh)."""
    names: set[str] = set()
    hints = typing.get_type_hints(kind)
    for field in dataclasses.fields(kind):
        if field.metadata.get("derived"):
            continue
        hint = hints[field.name]
        names.add(_camel(field.name))
        for inner in (hint, *typing.get_args(hint)):
            for nested in (inner, *typing.get_args(inner)):
                if dataclasses.is_dataclass(nested) and isinstance(nested, type):
                    names |= _gather_fields(nested)
    return names


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_every_field_gather_ps1_writes_is_one_the_contract_reads() -> None:
    written = static.hash_keys(_script("gather.ps1"))
    # "error" is also the failure document's one field ({"schemaVersion", "error"})
    assert written == _gather_fields(GatherDocument) | {"error"}


def test_apply_ps1_runs_gather_ps1_with_gathers_own_parameters_in_their_order() -> None:
    """The post-state read passes gather.ps1's parameters positionally (ScriptBlock.Invoke)."""
    apply_root, gather_root = _script("apply.ps1"), _script("gather.ps1")
    gather_parameters = static.script_parameters(gather_root)
    assert gather_parameters == ["ServicePatterns", "ConfigFiles"]
    assert set(gather_parameters) | {"PostStateScript"} <= set(
        static.script_parameters(apply_root)
    )
    source = (ROOT / "cosdoc_certs/windows/scripts/apply.ps1").read_text()
    arguments = ", ".join(f"${name}" for name in gather_parameters)
    assert f"$reader.Invoke({arguments})" in source


def test_gather_ps1_means_the_same_run_inside_apply_ps1() -> None:
    """apply.ps1 runs gather.ps1 through ScriptBlock.Invoke: nothing in it may reach out."""
    assert static.invoked_script_problems(_script("gather.ps1")) == []


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (b"$script:SchemaVersion = 2", "caller's variable"),
        (b"${global:cache} = @{}", "caller's variable"),
        (b"Set-Variable -Name x -Value 1 -Scope Script", "-Scope"),
        (b"if ($bad) { exit 1 }", "exit ends the calling script"),
        (b"function f { break }", "break outside a loop"),
        (b"1, 2 | ForEach-Object { if ($_) { continue } }", "continue outside a loop"),
        (b"if ($PSCmdlet.ShouldProcess('x')) { }", "not set by Invoke"),
        (b"$here = Split-Path -Path $MyInvocation.MyCommand.Path", "not set by Invoke"),
        (b"$root = $PSScriptRoot", "not set by Invoke"),
        (b"foreach ($item in $input) { }", "empty under Invoke"),
        (b"param([string] $a)\nbegin { }\nend { $a }", "one clause only"),
        (b"param([Parameter(Mandatory = $true)][string[]] $Patterns)", "Mandatory"),
    ],
)
def test_the_invoked_script_check_catches_what_reaches_the_caller(
    source: bytes, problem: str
) -> None:
    problems = static.invoked_script_problems(static.parse(source))
    assert any(problem in found for found in problems), problems


def test_the_invoked_script_check_passes_loops_locals_and_returns() -> None:
    source = (
        b"param([string[]] $ServicePatterns = @())\n"
        b"if ($x) { ConvertTo-Json -InputObject @{} -Compress; return }\n"
        b"$ScriptText = 1; $scriptRoot = 2; $arguments = 3\n"
        b"function f { foreach ($p in $ServicePatterns) { if ($p) { continue } }\n"
        b"  while ($true) { break }; switch ($a) { 1 { break } }; do { continue } until ($true) }\n"
    )
    assert static.invoked_script_problems(static.parse(source)) == []


def test_apply_ps1_takes_every_parameter_python_sends() -> None:
    sent = run_apply_parameters()
    assert sent <= set(static.script_parameters(_script("apply.ps1")))
    assert {"PostStateScript", "ServicePatterns", "ConfigFiles", "Check"} <= sent


def test_the_apply_document_fields_apply_ps1_adds_are_the_contracts() -> None:
    added = static.member_names(_script("apply.ps1"), "$document")
    document = ApplyDocument((), 0, None, check=True, post_state="{}", post_state_error="x")
    assert added == set(json.loads(document.to_json())) - set(
        json.loads(ApplyDocument((), 0, None).to_json())
    )


class _RecordingHost:
    """Stands in for the session: records the parameter names each script call is given."""

    def __init__(self) -> None:
        self.sent: set[str] = set()

    def secure_string(self, value: str) -> str:
        return value

    def run_script(self, name: str, **parameters: Any) -> Any:
        self.sent |= set(parameters)
        return json.loads(ApplyDocument((), 0, None).to_json())


def run_apply_parameters() -> set[str]:
    """Every parameter name run_apply_script sends: with PFX files, the post-state, -Check."""
    host = _RecordingHost()
    actions = [RestartService("s")]
    scope = GatherScope.of(COSDOC_CATALOG)
    run_apply_script(host, actions, "run", [b"pfx"], "pw", post_state=scope)  # type: ignore[arg-type]
    run_apply_script(host, actions, "run", check=True)  # type: ignore[arg-type]
    return host.sent
