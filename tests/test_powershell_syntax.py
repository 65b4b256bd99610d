"""Every PowerShell file of the project parses without syntax errors (tree-sitter-powershell)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

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
