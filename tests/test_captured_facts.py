"""Captured facts: ``status --save-facts`` against the lab, scrubbing, anonymizing, bad files."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cosdoc_certs.appsettings import AppSettings
from cosdoc_certs.captured import (
    FACTS_SCHEMA_VERSION,
    capture,
    json_path_at,
    load_facts,
    save_facts,
    scrub_config,
)
from cosdoc_certs.cli import main
from cosdoc_certs.errors import InputError
from cosdoc_certs.facts import WindowsFacts
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.status import gather
from cosdoc_certs.windows.connection import WindowsHost

SECRETS = ("Password=", "Passord", "lab-secret", "User ID=")


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> WindowsFacts:
    with (
        Lab(root=tmp_path_factory.mktemp("lab"), svarut=False) as lab,
        WindowsHost(lab.connection_info().options(https=False)) as host,
    ):
        return gather(host)


def _contents(document: dict[str, Any]) -> list[bytes]:
    return [
        base64.b64decode(item["content"])
        for item in document["windows"]["configFiles"]
        if item["content"]
    ]


def test_the_facts_file_holds_no_password_and_keeps_each_file_s_layout(
    facts: WindowsFacts, tmp_path: Path
) -> None:
    original = [f.content for f in facts.document.config_files if f.content]
    assert any(b"Password=" in data for data in original)  # the lab's files do hold some
    path = save_facts(tmp_path / "facts.json", facts)
    text = path.read_text("utf-8")
    document = json.loads(text)
    assert document["schemaVersion"] == FACTS_SCHEMA_VERSION
    assert document["toolVersion"]
    scrubbed = _contents(document)
    for data in scrubbed:
        assert not any(secret.encode() in data for secret in SECRETS)
    # same length, same line endings and BOM, and the thumbprints the tool reads are kept
    assert [len(d) for d in scrubbed] == [len(d) for d in original]
    assert [d.count(b"\r\n") for d in scrubbed] == [d.count(b"\r\n") for d in original]
    assert [d.startswith(b"\xef\xbb\xbf") for d in scrubbed] == [
        d.startswith(b"\xef\xbb\xbf") for d in original
    ]
    loaded = load_facts(path)
    pairs = zip(facts.document.config_files, loaded.document.config_files, strict=True)
    for before, after in pairs:
        if before.content is None:
            continue
        kept = AppSettings.parse(before.content)
        read = AppSettings.parse(after.content or b"")
        for value in kept.strings():
            if value.path.endswith(("Thumbprint", "SertifikatAvtrykk")):
                assert read.get(value.path) == value.value
    assert loaded.facts.computer_name == facts.computer_name


def test_scrubbing_fills_strings_and_comments_but_not_the_kept_keys() -> None:
    data = (
        b'{ // admin password is hunter2\r\n  "Cs": "Server=x;Password=hunter2",'
        b' /* old: hunter1 */ "T": "AB", "N": 5 }'
    )
    scrubbed = scrub_config(data, frozenset({"$.t"}))
    assert b"hunter" not in scrubbed
    assert len(scrubbed) == len(data)
    assert b'"T": "AB"' in scrubbed
    assert b'"N": 5' in scrubbed
    assert b"\r\n" in scrubbed


def test_anonymize_replaces_names_and_accounts_consistently(facts: WindowsFacts) -> None:
    text = json.dumps(capture(facts, anonymize=True))
    for name in ("COSDOC-APP01", "svc-digihelse", "svc-kpr", "testkommune"):
        assert name not in text  # also not in the identities' names nor in netsh's text
    assert '"computerName": "SERVER"' in text
    assert "DOMAIN\\\\account-1" in text
    assert "host-1.example" in text
    kept = json.dumps(capture(facts))
    assert "svc-digihelse" in kept


def test_status_save_facts_on_the_command_line(tmp_path: Path) -> None:
    with Lab(root=tmp_path / "lab", svarut=False) as lab:
        info = lab.connection_info()
        path = tmp_path / "facts.json"
        result = CliRunner(env={"LAB_WINRM": info.password}).invoke(
            main,
            [
                *("status", "--host", info.host, "--port", str(info.https_port)),
                *("--user", info.username, "--auth", "basic", "--ca-bundle", str(info.ca_file)),
                *("--winrm-password-env", "LAB_WINRM", "--json"),
                *("--save-facts", str(path), "--anonymize"),
            ],
        )
    assert result.exit_code != 4, result.output  # the status' own exit code, facts saved
    saved = load_facts(path)
    assert saved.anonymized
    assert saved.document.computer_name == "SERVER"
    assert "COSDOC-APP01" in result.stdout  # the report itself is not anonymized
    assert "facts saved to" in result.stderr


def _saved(facts: WindowsFacts, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = save_facts(tmp_path / "facts.json", facts)
    return path, json.loads(path.read_text("utf-8"))


def test_a_file_of_another_schema_names_both_versions(facts: WindowsFacts, tmp_path: Path) -> None:
    path, document = _saved(facts, tmp_path)
    document["schemaVersion"] = 7
    document["toolVersion"] = "9.9.9"
    path.write_text(json.dumps(document))
    with pytest.raises(InputError) as raised:
        load_facts(path)
    assert "schema version 7 (written by cosdoc-certs 9.9.9)" in raised.value.problem
    assert f"reads schema version {FACTS_SCHEMA_VERSION}" in raised.value.problem


def test_a_truncated_file_names_the_json_path_where_it_stops(
    facts: WindowsFacts, tmp_path: Path
) -> None:
    path, _ = _saved(facts, tmp_path)
    text = path.read_text("utf-8")
    cut = text.index('"certificates"') + 300
    path.write_text(text[:cut])
    with pytest.raises(InputError) as raised:
        load_facts(path)
    assert "$.windows.certificates[0]" in raised.value.problem
    assert "truncated" in raised.value.problem


def test_an_edited_file_names_the_json_path_of_the_bad_value(
    facts: WindowsFacts, tmp_path: Path
) -> None:
    path, document = _saved(facts, tmp_path)
    document["windows"]["services"][1]["state"] = 3
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match=r"\$\.windows\.services\[1\]\.state must be str"):
        load_facts(path)
    document["windows"]["services"][1]["state"] = "Running"
    document["format"] = "something else"
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match="not a cosdoc-certs facts file"):
        load_facts(path)


def test_json_path_at_follows_objects_and_arrays() -> None:
    text = '{"a": {"b": [1, {"c": "xx'
    assert json_path_at(text, len(text)) == "$.a.b[1].c"
    assert json_path_at('{"a": 1, "b": [1, 2, ', 20) == "$.b[2]"
