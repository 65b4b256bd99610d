"""Static checks of the project's PowerShell, on the parse tree of tree-sitter-powershell.

There is no PowerShell here, so the scripts are parsed, and the rules they must follow on a
Windows Server 2016–2022 (Windows PowerShell 5.1) are checked on the tree:

- no syntax errors, and none of PowerShell 7's syntax (``??``, ``?.``, ``a ? b : c``,
  ``&&``/``||`` pipeline chains, ``ForEach-Object -Parallel``, ``clean {}`` blocks);
- every cmdlet, and every parameter given to it, is one Windows PowerShell 5.1 has
  (:data:`CMDLETS_5_1`, written down from the 5.1 reference);
- every cmdlet inside a ``try`` block carries ``-ErrorAction Stop`` (else a non-terminating
  error skips the ``catch``);
- native programs run only through ``Invoke-Native``, which bounds them with a timeout, and
  every ``Invoke-Native`` result's ``ExitCode`` is read in the same function; CIM queries
  carry ``-OperationTimeoutSec``; ``WaitForStatus`` gets a timeout;
- a script another one runs through ``ScriptBlock.Invoke`` (gather.ps1, inside apply.ps1)
  reaches nothing of its caller's: no ``$script:``/``$global:``/``-Scope``, ``exit``, loose
  ``break``/``continue``, ``$PSCmdlet``/``$MyInvocation``/``$PSScriptRoot``/``$PSCommandPath``,
  ``$input``/``$args``, named blocks or ``Mandatory`` parameters.

Each check returns a list of problems (``"line: what"``); the tests in
``test_powershell_syntax.py`` assert the scripts have none and that each check does catch
what it is for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter
import tree_sitter_powershell

_COMMON = frozenset(
    {
        "-ErrorAction",
        "-ErrorVariable",
        "-WarningAction",
        "-WarningVariable",
        "-InformationAction",
        "-Verbose",
        "-Debug",
        "-OutVariable",
    }
)

CMDLETS_5_1: dict[str, frozenset[str]] = {
    name: frozenset(parameters) | _COMMON
    for name, parameters in {
        # Microsoft.PowerShell.Utility 3.1 (Windows PowerShell 5.1)
        "ConvertFrom-Json": {"-InputObject"},  # -AsHashtable, -Depth, -NoEnumerate: 6+/7
        "ConvertTo-Json": {"-InputObject", "-Depth", "-Compress"},  # -AsArray, -EnumsAsStrings: 6+
        "Get-Date": {"-Date", "-Format", "-UFormat"},
        "Write-Verbose": {"-Message"},
        "New-Object": {"-TypeName", "-ArgumentList", "-Property", "-ComObject"},
        "Get-FileHash": {"-Path", "-LiteralPath", "-Algorithm", "-InputStream"},
        # Microsoft.PowerShell.Core
        "ForEach-Object": {"-Process", "-Begin", "-End", "-MemberName"},  # -Parallel: 7
        "Where-Object": {"-FilterScript", "-Property", "-Value", "-EQ"},
        "Get-Module": {"-Name", "-ListAvailable"},
        "Import-Module": {"-Name", "-Force", "-PassThru"},
        "Set-StrictMode": {"-Version", "-Off"},
        # Microsoft.PowerShell.Management 3.1.0.0
        "Copy-Item": {"-Path", "-LiteralPath", "-Destination", "-Force", "-Recurse"},
        "Get-ChildItem": {"-Path", "-LiteralPath", "-Filter", "-Recurse", "-Force"},
        "Get-Item": {"-Path", "-LiteralPath", "-Force"},
        "Get-ItemProperty": {"-Path", "-LiteralPath", "-Name"},
        "Get-Process": {"-Id", "-Name"},
        "Get-Service": {"-Name", "-DisplayName"},
        "Join-Path": {"-Path", "-ChildPath", "-Resolve"},  # -AdditionalChildPath: 6+
        # -DeleteKey: the Certificate provider's dynamic parameter (PowerShell 3+)
        "Remove-Item": {"-Path", "-LiteralPath", "-Force", "-Recurse", "-DeleteKey"},
        "Test-Path": {"-Path", "-LiteralPath", "-PathType", "-IsValid"},
        "Start-Sleep": {"-Seconds", "-Milliseconds"},
        # Microsoft.PowerShell.Security 3.0.0.0
        "Get-Acl": {"-Path", "-LiteralPath", "-Audit"},
        "Set-Acl": {"-Path", "-LiteralPath", "-AclObject"},
        # CimCmdlets 1.0.0.0
        "Get-CimInstance": {
            "-ClassName",
            "-Filter",
            "-Namespace",
            "-Query",
            "-OperationTimeoutSec",
        },
        # Microsoft.PowerShell.Diagnostics 3.0.0.0
        "Get-WinEvent": {"-FilterHashtable", "-MaxEvents", "-LogName"},
        # PKI 1.0.0.0 (Server 2012+)
        "Import-PfxCertificate": {"-FilePath", "-CertStoreLocation", "-Password", "-Exportable"},
        # WebAdministration 1.0.0.0 (IIS Management Scripts and Tools)
        "Get-WebAppPoolState": {"-Name"},
        "Get-WebApplication": {"-Site", "-Name"},
        "Get-WebBinding": {"-Name", "-Protocol", "-Port", "-IPAddress", "-HostHeader"},
        "Restart-WebAppPool": {"-Name"},
        "Start-WebAppPool": {"-Name"},
    }.items()
}
"""Cmdlets the scripts may use → their parameters, as Windows PowerShell 5.1 documents them
(learn.microsoft.com/powershell/module/<module>/<cmdlet>?view=powershell-5.1)."""

NATIVE_PROGRAMS = frozenset({"netsh", "icacls", "sc", "certutil", "reg", "cmd", "powershell"})
_CIM_QUERIES = frozenset({"Get-CimInstance", "Get-WmiObject"})
_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


@dataclass(frozen=True)
class Command:
    """One command of a script: its name, parameters and where it stands."""

    node: tree_sitter.Node
    name: str
    parameters: tuple[str, ...]
    function: str | None

    @property
    def line(self) -> int:
        return self.node.start_point[0] + 1


def parse(source: bytes) -> tree_sitter.Node:
    """The root node of ``source``."""
    return _PARSER.parse(source).root_node


def _walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def function_names(root: tree_sitter.Node) -> set[str]:
    """The functions the script defines."""
    return {
        _text(child)
        for node in _walk(root)
        if node.type == "function_statement"
        for child in node.children
        if child.type == "function_name"
    }


def _enclosing_function(node: tree_sitter.Node) -> tree_sitter.Node | None:
    current = node.parent
    while current is not None and current.type != "function_statement":
        current = current.parent
    return current


def _function_name(function: tree_sitter.Node | None) -> str | None:
    if function is None:
        return None
    return next((_text(c) for c in function.children if c.type == "function_name"), None)


def commands(root: tree_sitter.Node) -> list[Command]:
    """Every command invocation, with its parameters (``-Name``, without ``:value``)."""
    found = []
    for node in _walk(root):
        if node.type != "command":
            continue
        names = [c for c in node.children if c.type in ("command_name", "command_name_expr")]
        name = _text(names[0]) if names else ""
        parameters = tuple(
            _text(element).split(":", 1)[0]
            for child in node.children
            if child.type == "command_elements"
            for element in child.children
            if element.type == "command_parameter"
        )
        found.append(Command(node, name, parameters, _function_name(_enclosing_function(node))))
    return found


def syntax_problems(root: tree_sitter.Node) -> list[str]:
    """Parse errors, PowerShell 7 operators named as such."""
    problems = []
    for node in _walk(root):
        if node.type == "ERROR" or node.is_missing:
            line = node.start_point[0] + 1
            text = _text(node).strip()
            if text.startswith("?") or "??" in text or "?." in text:
                problems.append(f"{line}: PowerShell 7 operator {text[:20]!r} (??, ?., a ? b : c)")
            elif node.is_missing:
                problems.append(f"{line}: missing {node.type!r}")
            else:
                problems.append(f"{line}: unexpected {text[:30]!r}")
    return problems


def powershell_7_problems(root: tree_sitter.Node) -> list[str]:
    """Syntax Windows PowerShell 5.1 does not have (beyond what fails to parse at all)."""
    problems = []
    for node in _walk(root):
        line = node.start_point[0] + 1
        if node.type in ("&&", "||"):
            problems.append(f"{line}: pipeline chain operator {node.type} (PowerShell 7)")
        elif node.type == "command_parameter" and _text(node).casefold() == "-parallel":
            problems.append(f"{line}: ForEach-Object -Parallel (PowerShell 7)")
        elif node.type == "simple_name" and _text(node).strip().casefold() == "clean":
            problems.append(f"{line}: clean {{}} block (PowerShell 7.3)")
    return problems


def cmdlet_problems(root: tree_sitter.Node) -> list[str]:
    """Cmdlets or parameters not in :data:`CMDLETS_5_1` (functions of the script excepted)."""
    own = function_names(root)
    problems = []
    for command in commands(root):
        if command.name in own or _is_native(command.name) or command.name.startswith("$"):
            continue
        known = CMDLETS_5_1.get(command.name)
        if known is None:
            problems.append(
                f"{command.line}: {command.name} is not in the allow-list of 5.1 cmdlets "
                "(CMDLETS_5_1)"
            )
            continue
        for parameter in command.parameters:
            if parameter not in known:
                problems.append(f"{command.line}: {command.name} {parameter} is not in 5.1")
    return problems


def _is_native(name: str) -> bool:
    bare = name.rsplit("\\", 1)[-1].casefold()
    return bare.endswith(".exe") or bare in NATIVE_PROGRAMS


def try_problems(root: tree_sitter.Node) -> list[str]:
    """Cmdlets inside a ``try`` block without ``-ErrorAction Stop``."""
    own = function_names(root)
    problems = []
    for node in _walk(root):
        if node.type != "try_statement":
            continue
        body = next(c for c in node.children if c.type == "statement_block")
        for command in commands(body):
            if command.name in own or command.name not in CMDLETS_5_1:
                continue
            if not re.search(r"-ErrorAction(\s+|:)'?Stop", _text(command.node), re.IGNORECASE):
                problems.append(f"{command.line}: {command.name} in try without -ErrorAction Stop")
    return problems


def native_problems(root: tree_sitter.Node) -> list[str]:
    """Native calls outside ``Invoke-Native``, unchecked exit codes, waits without a timeout."""
    problems = []
    for node in _walk(root):
        line = node.start_point[0] + 1
        if node.type == "command_invokation_operator":
            problems.append(f"{line}: '&' call: run programs through Invoke-Native (timeout)")
    for command in commands(root):
        if _is_native(command.name):
            problems.append(f"{command.line}: {command.name} called directly: use Invoke-Native")
        elif command.name in _CIM_QUERIES and "-OperationTimeoutSec" not in command.parameters:
            problems.append(f"{command.line}: {command.name} without -OperationTimeoutSec")
        elif command.name == "Invoke-Native":
            problems += _exit_code_problems(command)
    for node in _walk(root):
        text = _text(node)
        if node.type == "invokation_expression" and (
            text.split("(")[0].endswith(".WaitForStatus") and "," not in text
        ):
            problems.append(f"{node.start_point[0] + 1}: WaitForStatus without a timeout")
    definition = next(
        (n for n in _walk(root) if n.type == "function_statement"
         and _function_name(n) == "Invoke-Native"),
        None,
    )
    waits = definition is not None and re.search(r"\.WaitForExit\(\s*\$\w+", _text(definition))
    if any(c.name == "Invoke-Native" for c in commands(root)) and not waits:
        problems.append("Invoke-Native does not wait with a timeout (WaitForExit($ms))")
    return problems


def _exit_code_problems(command: Command) -> list[str]:
    """An ``Invoke-Native`` result must be assigned and its ExitCode read in the function."""
    assignment = command.node.parent
    while assignment is not None and assignment.type not in (
        "assignment_expression",
        "function_statement",
        "program",
    ):
        assignment = assignment.parent
    if assignment is None or assignment.type != "assignment_expression":
        return [f"{command.line}: Invoke-Native result not kept: its ExitCode is never checked"]
    variable = _text(assignment.children[0]).strip()
    scope = _enclosing_function(command.node)
    text = _text(scope) if scope is not None else ""
    if f"{variable}.ExitCode" not in text:
        return [f"{command.line}: {variable}.ExitCode of Invoke-Native is never checked"]
    return []


def switch_labels(root: tree_sitter.Node, function: str) -> set[str]:
    """The string labels of the ``switch`` statements in ``function``."""
    labels = set()
    for node in _walk(root):
        if node.type == "function_statement" and _function_name(node) == function:
            for inner in _walk(node):
                if inner.type == "switch_clause_condition":
                    labels.add(_text(inner).strip("'\""))
    return labels


def hash_keys(root: tree_sitter.Node, function: str | None = None) -> set[str]:
    """Keys of the hash literals (``@{ key = ... }``), in ``function`` or in the whole script."""
    scope = root
    if function is not None:
        scope = next(
            n for n in _walk(root) if n.type == "function_statement"
            and _function_name(n) == function
        )
    return {
        _text(node).strip()
        for node in _walk(scope)
        if node.type == "key_expression"
    }


def member_names(root: tree_sitter.Node, variable: str) -> set[str]:
    """Members read from ``variable`` (``$Action.path`` → ``path``) and names passed to
    ``Get-OptionalProperty -InputObject variable -Name 'x'``."""
    names = set()
    for node in _walk(root):
        if node.type == "member_access":
            text = _text(node)
            if text.casefold().startswith(variable.casefold() + "."):
                names.add(text[len(variable) + 1 :].split(".")[0])
    for command in commands(root):
        if command.name == "Get-OptionalProperty":
            text = _text(command.node)
            found = re.search(r"-InputObject\s+(\S+).*-Name\s+'(\w+)'", text)
            if found and found.group(1).casefold() == variable.casefold():
                names.add(found.group(2))
    return names


def script_parameters(root: tree_sitter.Node) -> list[str]:
    """The names of the script's own parameters (its top-level ``param`` block), in order."""
    block = next(
        (node for node in root.children if node.type == "param_block"),
        next((node for node in _walk(root) if node.type == "param_block"), None),
    )
    if block is None or _enclosing_function(block) is not None:
        return []
    return [
        _text(variable)[1:]
        for parameter in _walk(block)
        if parameter.type == "script_parameter"
        for variable in parameter.children
        if variable.type == "variable"
    ]


# What acts differently in a script that another script runs through ScriptBlock.Invoke
# (apply.ps1 runs gather.ps1 so, as -PostStateScript): a new scope under the caller's, no
# command processor. Checked against PowerShell's source (docs/windows.md).
_CALLER_VARIABLES = frozenset({"pscmdlet", "myinvocation", "psscriptroot", "pscommandpath"})
_INPUT_VARIABLES = frozenset({"input", "args"})
_LOOPS = frozenset(
    {"foreach_statement", "for_statement", "while_statement", "do_statement", "switch_statement"}
)
_NAMED_BLOCKS = frozenset({"begin", "process", "end", "dynamicparam", "clean"})


def invoked_script_problems(root: tree_sitter.Node) -> list[str]:
    """Constructs whose meaning changes when the script runs inside another one (Invoke).

    ``$script:``/``$global:`` and ``-Scope`` reach the caller's variables; ``exit`` and a
    ``break``/``continue`` outside a loop leave the caller too (flow control passes through
    Invoke and through the caller's catch); ``$PSCmdlet`` and the invocation variables are
    not set by Invoke (a lookup finds the caller's); ``$input``/``$args`` get nothing; named
    blocks make Invoke refuse to run; ``Mandatory`` is not enforced.
    """
    problems = []
    for node in _walk(root):
        line = node.start_point[0] + 1
        text = _text(node)
        if node.type == "variable":
            problems += _variable_problem(line, text)
        elif node.type == "command_parameter" and text.casefold().startswith("-scope"):
            problems.append(f"{line}: {text} reaches the caller's scopes")
        elif node.type == "flow_control_statement":
            problems += _flow_problem(node, line, text)
        elif node.type == "command" and _enclosing_function(node) is None:
            name = next((c for c in node.children if c.type == "command_name"), None)
            if name is not None and _text(name).casefold() in _NAMED_BLOCKS:
                problems.append(f"{line}: a {_text(name)} block: Invoke runs one clause only")
        elif node.type == "attribute" and re.match(r"\[Parameter\(.*Mandatory", text, re.I | re.S):
            problems.append(f"{line}: Mandatory is not enforced when arguments are positional")
    return problems


def _variable_problem(line: int, text: str) -> list[str]:
    name = text.lstrip("$").strip("{}").casefold()
    scope, _, bare = name.rpartition(":")
    if scope in ("script", "global"):
        return [f"{line}: {text} is the caller's variable under Invoke"]
    if bare in _CALLER_VARIABLES and not scope:
        return [f"{line}: {text} is not set by Invoke (a lookup finds the caller's)"]
    if bare in _INPUT_VARIABLES and not scope:
        return [f"{line}: {text} is empty under Invoke"]
    return []


def _flow_problem(node: tree_sitter.Node, line: int, text: str) -> list[str]:
    keyword = text.split(None, 1)[0].casefold() if text.strip() else ""
    if keyword == "exit":
        return [f"{line}: exit ends the calling script too"]
    if keyword not in ("break", "continue"):
        return []
    current = node.parent
    while current is not None:
        if current.type in _LOOPS:
            return []
        if current.type in ("function_statement", "script_block_expression"):
            break
        current = current.parent
    return [f"{line}: {keyword} outside a loop leaves the calling script's statement"]
