"""The apply contract, checked on both sides: the lab twin's documents and apply.ps1's text.

The twin runs each action against a default lab installation (table-driven: action → ok,
message, ``before``), and every document it writes must parse with the one contract in
:mod:`cosdoc_certs.windows.apply_contract`. ``apply.ps1`` cannot run here, so its text is
checked against the same contract: parameters, action names and ``before`` keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import pkcs12

from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.certs.pkcs12 import parse_pfx
from cosdoc_certs.certs.providers import ENHANCED_RSA_AES
from cosdoc_certs.facts import WindowsFacts
from cosdoc_certs.lab.model import SimulatedWindowsError
from cosdoc_certs.lab.scenarios import (
    LabCertificates,
    LabServer,
    default_installation,
    make_lab_certificates,
)
from cosdoc_certs.lab.server.httpsys import DEFAULT_SETTINGS, IIS_APP_ID, parse_endpoint
from cosdoc_certs.lab.server.powershell import MAX_JSON_LENGTH
from cosdoc_certs.lab.twins.apply import apply as twin_apply
from cosdoc_certs.lab.twins.apply import http_sys_entry, new_before
from cosdoc_certs.lab.twins.gather import gather as twin_gather
from cosdoc_certs.lab.winrm import ScriptCall
from cosdoc_certs.windows.apply import legacy_pfx
from cosdoc_certs.windows.apply_contract import (
    ACTION_TYPES,
    BEFORE_KEYS,
    CONVERT_FROM_JSON_LIMIT,
    Action,
    ApplyContractError,
    ApplyDocument,
    GrantRead,
    ImportPfx,
    RecyclePool,
    RemoveAuthority,
    RestartService,
    RestoreFile,
    SetBinding,
    WriteFile,
    actions_from_json,
    actions_to_json,
    backup_path,
    file_contents,
)
from cosdoc_certs.windows.connection import load_script
from cosdoc_certs.windows.gather import GatherDocument, GatherFailedError

SCRIPT = (
    Path(__file__).resolve().parent.parent / "cosdoc_certs" / "windows" / "scripts" / "apply.ps1"
)
DIGIHELSE = "C:\\Program Files\\DIPS\\Digihelse.Adressering\\appsettings.json"
PASSWORD = "one-time-Pa55"


@pytest.fixture(scope="module")
def certificates() -> LabCertificates:
    return make_lab_certificates()


@pytest.fixture(scope="module")
def renewed(
    certificates: LabCertificates, tmp_path_factory: pytest.TempPathFactory
) -> CertificateBundle:
    files = certificates.write_files(tmp_path_factory.mktemp("pfx"))
    return load_bundle([files.pair_pfx, files.ssl_pfx], certificates.pfx_password.encode())


@pytest.fixture
def server(tmp_path: Path, certificates: LabCertificates) -> Iterator[LabServer]:
    built = default_installation(tmp_path / "server", certificates=certificates)
    yield built
    built.close()


@dataclass(frozen=True)
class Case:
    """Actions built from the server and bundle, and what the twin must answer."""

    build: Callable[[LabServer, CertificateBundle], list[Action]]
    ok: bool
    message: str
    before: dict[str, Any] | None = None


def _sha(server: LabServer, path: str) -> str:
    return hashlib.sha256(server.files.read(path)).hexdigest().upper()


def _ssl(bundle: CertificateBundle) -> str:
    assert bundle.ssl is not None
    return bundle.ssl.thumbprint


def _current_ssl(server: LabServer) -> str:
    return server.certificates.current_ssl.thumbprint


CASES = {
    "import": Case(lambda s, b: [ImportPfx(0, (_ssl(b),))], True, "imported", {"present": []}),
    "import-no-file": Case(lambda s, b: [ImportPfx(3, (_ssl(b),))], False, "no file number 3"),
    "write": Case(
        lambda s, b: [WriteFile(DIGIHELSE, base64.b64encode(b"{}").decode(), _sha(s, DIGIHELSE))],
        True,
        "wrote 2 bytes",
    ),
    "write-hash-changed": Case(
        lambda s, b: [RestartService("KPR.Innsending"), WriteFile(DIGIHELSE, "e30=", "AB" * 32)],
        False,
        "changed since planning",
        {"backup": None},
    ),
    "grant": Case(
        lambda s, b: [
            GrantRead(_current_ssl(s), "DOMENE\\someone", s.accounts.lookup("DOMENE\\someone"))
        ],
        True,
        "DOMENE\\someone may read",
    ),
    "grant-unknown-certificate": Case(
        lambda s, b: [GrantRead("AB" * 20, "DOMENE\\someone", "S-1-5-21-1-2-3-1001")],
        False,
        "Cannot find path",
    ),
    "bind-unknown-certificate": Case(
        lambda s, b: [SetBinding("CosDoc Drift", "*:443:cosdoc.testkommune.no", "AB" * 20)],
        False,
        "Cannot find path 'Cert:\\LocalMachine\\My\\ABAB",
    ),
    "bind-same": Case(
        lambda s, b: [SetBinding("CosDoc Drift", "*:443:cosdoc.testkommune.no", _current_ssl(s))],
        True,
        "serves",
    ),
    "restart": Case(
        lambda s, b: [RestartService("KPR.Innsending")], True, "Running", {"state": "Running"}
    ),
    "restart-unknown": Case(
        lambda s, b: [RestartService("Nope")], False, "Cannot find any service with service name"
    ),
    "recycle": Case(
        lambda s, b: [RecyclePool("Authentication Drift")], True, "recycled", {"state": "Started"}
    ),
    "restore-without-backup": Case(
        lambda s, b: [RestoreFile(DIGIHELSE, DIGIHELSE + ".bak", "AB" * 32)],
        True,
        "was not changed",
    ),
    "stops-at-first-failure": Case(
        lambda s, b: [
            RestartService("KPR.Innsending"),
            RestartService("Nope"),
            RestartService("KPR.Overvaker"),
        ],
        False,
        "Cannot find any service",
    ),
}


def _run(server: LabServer, actions: list[Action], pfx_files: list[bytes]) -> ApplyDocument:
    call = ScriptCall(
        "apply",
        {
            "Actions": actions_to_json(actions),
            "RunId": "test",
            "PfxFiles": [base64.b64encode(pfx).decode() for pfx in pfx_files],
            "FileContents": file_contents(actions),
            "PfxPassword": PASSWORD,
        },
    )
    result = twin_apply(server, call)
    assert result.terminating_error is None
    assert result.errors == []
    (text,) = result.output
    document = ApplyDocument.from_data(json.loads(text))
    assert ApplyDocument.from_data(json.loads(document.to_json())) == document
    return document


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_twin_answers_each_action_within_the_contract(
    server: LabServer, renewed: CertificateBundle, case: Case
) -> None:
    actions = case.build(server, renewed)
    ssl = renewed.ssl
    assert ssl is not None
    document = _run(server, actions, [legacy_pfx(ssl, renewed.chain_for(ssl), PASSWORD.encode())])
    last = document.results[-1]
    assert last.ok is case.ok
    assert case.message in last.message
    if case.before is not None:
        assert dict(last.before) == {**dict(last.before), **case.before}
    for result in document.results:
        assert set(result.before) == BEFORE_KEYS[result.action]
    assert document.completed == sum(r.ok for r in document.results)
    assert document.failed_index == (None if case.ok else last.index)


def test_a_changed_file_stops_the_run_before_the_first_action(server: LabServer) -> None:
    server.stop_service("KPR.Innsending")
    document = _run(
        server,
        [RestartService("KPR.Innsending"), WriteFile(DIGIHELSE, "e30=", "AB" * 32)],
        [],
    )
    assert (document.completed, document.failed_index) == (0, 1)
    assert server.service("KPR.Innsending").state == "Stopped"


def test_write_then_restore_round_trips_the_bytes_and_keeps_the_backup(server: LabServer) -> None:
    original = server.files.read(DIGIHELSE)
    new = base64.b64encode(b'{"x": 1}').decode()
    written = _run(server, [WriteFile(DIGIHELSE, new, _sha(server, DIGIHELSE))], [])
    backup = backup_path(DIGIHELSE, "test")
    assert written.results[0].before == {"sha256": _sha_of(original), "backup": backup}
    assert server.files.read(backup) == original
    refused = _run(server, [RestoreFile(DIGIHELSE, backup, "AB" * 32)], [])
    assert "changed after the run" in refused.results[0].message
    restored = _run(server, [RestoreFile(DIGIHELSE, backup, _sha(server, DIGIHELSE))], [])
    assert restored.results[0].before["restored"] is True
    assert server.files.read(DIGIHELSE) == original
    assert server.files.is_file(backup)


def _sha_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest().upper()


def test_a_grant_reports_whether_the_account_could_read_before(server: LabServer) -> None:
    thumbprint = server.certificates.current.signing.thumbprint
    grant = GrantRead(
        thumbprint, "DOMENE\\new-account", server.accounts.lookup("DOMENE\\new-account")
    )
    first = _run(server, [grant], [])
    again = _run(server, [grant], [])
    assert first.results[0].before["could_read"] is False
    assert again.results[0].before["could_read"] is True
    assert str(first.results[0].before["key_file"]).startswith("C:\\ProgramData\\Microsoft\\Crypto")


def test_a_stopped_pool_is_started_instead_of_recycled(server: LabServer) -> None:
    server.stop_app_pool("kodeverk Drift")
    document = _run(server, [RecyclePool("kodeverk Drift")], [])
    assert document.results[0].before == {"state": "Stopped"}
    assert "started" in document.results[0].message
    assert server.app_pool("kodeverk Drift").state == "Started"


def test_a_wrong_pfx_password_fails_like_windows(
    server: LabServer, renewed: CertificateBundle
) -> None:
    ssl = renewed.ssl
    assert ssl is not None
    pfx = legacy_pfx(ssl, renewed.chain_for(ssl), b"another password")
    document = _run(server, [ImportPfx(0, (ssl.thumbprint,))], [pfx])
    assert document.results[0].message == "The specified network password is not correct."
    assert server.store.find(ssl.thumbprint) is None
    assert server.files.list_folder("C:\\Windows\\Temp") == []


def _document_of(server: LabServer, parameters: dict[str, Any]) -> ApplyDocument:
    result = twin_apply(server, ScriptCall("apply", parameters))
    assert result.terminating_error is None
    (text,) = result.output
    return ApplyDocument.from_data(json.loads(text))


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        ({"RunId": "r"}, "-Actions is required"),
        ({"Actions": "[]"}, "-RunId is required"),
        ({"Actions": "not json", "RunId": "r"}, "Invalid JSON primitive"),
        ({"Actions": '[{"action": "format-disk"}]', "RunId": "r"}, "format-disk"),
        (
            {"Actions": '[{"action": "write-file", "path": "C:/a", "content_index": 0, '
             '"expected_sha256": "AB"}]', "RunId": "r"},
            "-FileContents has no file number 0",
        ),
        ({"Actions": "[" + " " * 2_097_152 + "]", "RunId": "r"}, "maxJsonLength"),
    ],
    ids=["no-actions", "no-run-id", "not-json", "unknown-action", "no-content", "over-2mb"],
)
def test_every_way_out_of_apply_writes_the_result_document(
    server: LabServer, parameters: dict[str, Any], error: str
) -> None:
    files = {path: server.files.read(path) for path in [DIGIHELSE]}
    document = _document_of(server, parameters)
    assert document.error is not None
    assert error in document.error
    assert (document.results, document.completed, document.failed_index) == ((), 0, None)
    assert document.stopped
    assert {path: server.files.read(path) for path in files} == files


def test_file_contents_travel_outside_actions_so_big_files_stay_under_the_json_limit(
    server: LabServer,
) -> None:
    big = base64.b64encode(b"{" + b" " * 1_700_000 + b"}").decode()
    actions: list[Action] = [WriteFile(DIGIHELSE, big, _sha(server, DIGIHELSE))]
    assert len(actions_to_json(actions)) < CONVERT_FROM_JSON_LIMIT < len(big)
    document = _run(server, actions, [])
    assert document.results[0].ok, document.results[0].message
    assert server.files.read(DIGIHELSE) == base64.b64decode(big)


def test_the_lab_and_the_contract_agree_on_the_json_limit() -> None:
    assert MAX_JSON_LENGTH == CONVERT_FROM_JSON_LIMIT == 2 * 1024 * 1024


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        "not json",
        '[{"action": "format-disk"}]',
        '[{"action": "restart-service"}]',
        '[{"action": "restart-service", "name": 3}]',
        '[{"action": "restart-service", "name": "x", "force": true}]',
        '[{"action": "import-pfx", "index": true, "thumbprints": []}]',
    ],
    ids=["object", "not-json", "unknown", "missing", "wrong-type", "extra-field", "bool-index"],
)
def test_malformed_actions_are_refused(text: str) -> None:
    with pytest.raises(ApplyContractError):
        actions_from_json(text)


def test_every_action_round_trips_through_json() -> None:
    actions: list[Action] = [
        ImportPfx(0, ("A" * 40,)),
        ImportPfx(1, ("A" * 40,), "Microsoft Software Key Storage Provider", ("MIIB",)),
        WriteFile("C:\\a.json", "e30=", "B" * 64),
        GrantRead("A" * 40, "IIS AppPool\\x", "S-1-5-82-1-2-3-4-5"),
        SetBinding("site", "*:443:h", "A" * 40),
        RestartService("s"),
        RecyclePool("p"),
        RestoreFile("C:\\a.json", "C:\\a.json.bak"),
        RemoveAuthority("C" * 40),
    ]
    assert {type(action) for action in actions} == set(ACTION_TYPES.values())
    assert actions_from_json(actions_to_json(actions), file_contents(actions)) == actions
    assert "e30=" not in repr(actions[1])
    assert "e30=" not in actions_to_json(actions)


@pytest.mark.parametrize(
    "document",
    [
        {"schema_version": 2, "results": [], "completed": 0, "failed_index": None},
        {"schema_version": 1, "results": {}, "completed": 0, "failed_index": None},
        {"schema_version": 1, "results": [], "completed": "0", "failed_index": None},
        {
            "schema_version": 1,
            "results": [
                {"index": 0, "action": "recycle-pool", "ok": True, "message": "", "before": {}}
            ],
            "completed": 1,
            "failed_index": None,
        },
    ],
    ids=["schema", "results-object", "completed-text", "before-keys"],
)
def test_malformed_result_documents_are_refused(document: dict[str, Any]) -> None:
    with pytest.raises(ApplyContractError):
        ApplyDocument.from_data(document)


# -- apply.ps1 against the same contract -----------------------------------------------------


def _script() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def test_apply_ps1_takes_the_contract_parameters() -> None:
    parameters = re.search(r"param\((.*?)\n\)", _script(), re.DOTALL)
    assert parameters is not None
    assert re.findall(r"\$([A-Z]\w+)", parameters.group(1)) == [
        "Actions",
        "RunId",
        "PfxFiles",
        "FileContents",
        "PfxPassword",
        "Check",
        "PostStateScript",
        "ServicePatterns",
        "ConfigFiles",
    ]
    assert "[switch] $Check" in parameters.group(1)
    assert "[System.Security.SecureString] $PfxPassword" in parameters.group(1)


def test_apply_ps1_knows_every_action_with_the_contract_before_keys() -> None:
    befores = dict(re.findall(r"'([a-z-]+)' \{ return \[ordered\]@\{ ([^}]*) \} \}", _script()))
    assert set(befores) == set(BEFORE_KEYS)
    for action, body in befores.items():
        assert set(re.findall(r"(\w+) =", body)) == BEFORE_KEYS[action], action
    dispatched = set(re.findall(r"'([a-z-]+)' \{ return Invoke-\w+ -Action", _script()))
    assert dispatched == set(ACTION_TYPES)


def test_apply_ps1_writes_the_document_keys_and_names_backups_like_the_contract() -> None:
    script = _script()
    for key in ("schema_version", "results", "completed", "failed_index", "error"):
        assert re.search(rf"^\s+{key}\s+=", script, re.MULTILINE), key
    assert "'{0}.cosdoc-certs-{1}.bak' -f $path, $RunId" in script
    assert backup_path("C:\\x", "R") == "C:\\x.cosdoc-certs-R.bak"
    assert "ConvertTo-Json -InputObject $document -Depth 10 -Compress" in script
    examples = [_example(kind) for kind in ACTION_TYPES.values()]
    field_names = {name for item in json.loads(actions_to_json(examples)) for name in item}
    for name in field_names - {"action"}:
        assert (
            f"$Action.{name}" in script or f"'{name}'" in script or f"$action.{name}" in script
        ), name


def _example(kind: type[Action]) -> Action:
    examples: dict[type, Action] = {
        ImportPfx: ImportPfx(0, ()),
        WriteFile: WriteFile("p", "c", "h"),
        GrantRead: GrantRead("t", "a", "S-1-5-18"),
        SetBinding: SetBinding("s", "b", "t"),
        RestartService: RestartService("n"),
        RecyclePool: RecyclePool("n"),
        RestoreFile: RestoreFile("p", "b"),
        RemoveAuthority: RemoveAuthority("t"),
    }
    return examples[kind]


# -- the PFX apply builds ---------------------------------------------------------------------


def test_the_pfx_is_3des_with_a_sha1_mac_and_imports_in_the_lab(
    server: LabServer, renewed: CertificateBundle
) -> None:
    info = renewed.signing
    assert info is not None
    data = legacy_pfx(info, (), PASSWORD.encode(), provider=ENHANCED_RSA_AES)
    parsed = parse_pfx(data)
    assert parsed.pfx["mac_data"]["mac"]["digest_algorithm"]["algorithm"].native == "sha1"
    algorithms = set()
    for content in parsed.authenticated_safe:
        if content["content_type"].native == "encrypted_data":
            encrypted = content["content"]["encrypted_content_info"]
            algorithms.add(encrypted["content_encryption_algorithm"]["algorithm"].native)
        else:
            for bag in pkcs12.SafeContents.load(bytes(content["content"].native)):
                algorithms.add(bag["bag_value"]["encryption_algorithm"]["algorithm"].native)
    assert algorithms == {"pkcs12_sha1_tripledes_3key"}
    assert server.store.import_pfx(data, PASSWORD) == [info.thumbprint]
    assert server.store.get(info.thumbprint).key_provider == ENHANCED_RSA_AES
    assert server.store.get(info.thumbprint).has_private_key


def test_a_service_that_hangs_while_stopping_fails_within_the_timeout_naming_its_process(
    server: LabServer,
) -> None:
    service = server.service("Digihelse.Adressering")
    service.hangs_on_stop = True
    document = _run(server, [RestartService(service.name)], [])
    (result,) = document.results
    process = f"Digihelse.Adressering (PID {service.process_id})"
    assert result.before == {"state": "Running", "stuck_process": process}
    assert "did not stop within 60 s (it is StopPending)" in result.message
    assert service.state == "StopPending"
    again = _run(server, [RestartService(service.name)], [])
    assert again.results[0].before["stuck_process"] == process


def test_a_service_that_fails_to_start_says_why_from_the_event_log(server: LabServer) -> None:
    thumbprint = server.certificates.current.signing.thumbprint
    server.store.revoke_read(thumbprint, server.service("KPR.Innsending").account)
    document = _run(server, [RestartService("KPR.Innsending")], [])
    message = document.results[0].message
    assert message.startswith("Service 'KPR.Innsending' did not start: Time out has expired")
    assert "(it is Stopped)" in message
    assert server.service("KPR.Innsending").state == "Stopped"


def test_a_write_that_fails_says_which_attributes_the_file_has(server: LabServer) -> None:
    server.files.set_attributes(DIGIHELSE, frozenset({"ReadOnly", "System"}))
    new = base64.b64encode(b"{}").decode()
    document = _run(server, [WriteFile(DIGIHELSE, new, _sha(server, DIGIHELSE))], [])
    message = document.results[0].message
    assert message == (
        f"Cannot write '{DIGIHELSE}' (attributes ReadOnly, System): "
        f"Access to the path '{DIGIHELSE}' is denied."
    )
    assert server.files.attributes(DIGIHELSE) == {"ReadOnly", "System"}


@pytest.mark.parametrize(
    ("binding", "sni", "argument", "subkey"),
    [
        ("*:443:", False, "ipport=0.0.0.0:443", "SslBindingInfo\\0.0.0.0:443"),
        (":443:", False, "ipport=0.0.0.0:443", "SslBindingInfo\\0.0.0.0:443"),
        ("[::]:443:", False, "ipport=[::]:443", "SslBindingInfo\\[::]:443"),
        ("[fe80::1]:443:h.no", False, "ipport=[fe80::1]:443", "SslBindingInfo\\[fe80::1]:443"),
        ("10.0.0.5:8443:", False, "ipport=10.0.0.5:8443", "SslBindingInfo\\10.0.0.5:8443"),
        ("*:443:h.no", True, "hostnameport=h.no:443", "SslSniBindingInfo\\h.no:443"),
    ],
)
def test_bindings_name_their_http_sys_entry_as_netsh_and_the_registry_do(
    binding: str, sni: bool, argument: str, subkey: str
) -> None:
    assert http_sys_entry(binding, sni=sni) == (argument, subkey)
    assert parse_endpoint(argument)[1] == argument.partition("=")[2]


def test_netsh_refuses_an_ipv6_address_in_double_brackets() -> None:
    with pytest.raises(SimulatedWindowsError, match="The parameter is incorrect"):
        parse_endpoint("ipport=[[fe80::1]]:443")


def test_netsh_update_resets_every_option_it_is_not_given(server: LabServer) -> None:
    entry = ("ipport", "0.0.0.0:443")
    server.http_sys_settings[entry] = {**DEFAULT_SETTINGS, "DefaultFlags": 0x402}
    thumbprint = _current_ssl(server)
    server.netsh_update_sslcert(
        ["ipport=0.0.0.0:443", f"certhash={thumbprint}", f"appid={IIS_APP_ID}"]
    )
    assert server.sslcert_settings(entry) == DEFAULT_SETTINGS


def test_a_setting_netsh_cannot_carry_over_stops_the_rebind_before_it(
    server: LabServer, renewed: CertificateBundle
) -> None:
    entry = ("ipport", "0.0.0.0:443")
    server.http_sys_settings[entry] = {**DEFAULT_SETTINGS, "DefaultFlags": 0x4}
    ssl = renewed.ssl
    assert ssl is not None
    pfx = legacy_pfx(ssl, renewed.chain_for(ssl), PASSWORD.encode())
    actions: list[Action] = [
        ImportPfx(0, (ssl.thumbprint,)),
        SetBinding("CosDoc Drift", "*:443:", ssl.thumbprint),
    ]
    document = _run(server, actions, [pfx])
    failed = document.results[-1]
    assert "settings netsh cannot carry over (DefaultFlags 0x4" in failed.message
    assert failed.before["settings"] is not None
    assert server.find_binding("CosDoc Drift", "*:443:").thumbprint == _current_ssl(server)
    assert server.sslcert_settings(entry) == {**DEFAULT_SETTINGS, "DefaultFlags": 0x4}


def test_settings_netsh_writes_differently_fail_the_rebind_and_name_them(
    server: LabServer,
) -> None:
    entry = ("hostnameport", "cosdoc.testkommune.no:443")
    odd = {**DEFAULT_SETTINGS, "DefaultSslRevocationFreshnessTime": 300}
    server.http_sys_settings[entry] = odd
    binding = "*:443:cosdoc.testkommune.no"
    document = _run(server, [SetBinding("CosDoc Drift", binding, _current_ssl(server))], [])
    message = document.results[0].message
    assert message == (
        "netsh http update sslcert changed the settings of hostnameport=cosdoc.testkommune.no:443"
        ": DefaultSslCertCheckMode 0 -> 4."
    )
    restore = SetBinding(
        "CosDoc Drift", binding, _current_ssl(server), tuple(document.results[0].before["settings"])
    )
    assert restore.settings is not None
    assert actions_from_json(actions_to_json([restore])) == [restore]


def _post_state_call(server: LabServer, script: str, actions: list[Action]) -> ApplyDocument:
    return _document_of(
        server,
        {
            "Actions": actions_to_json(actions),
            "RunId": "post",
            "FileContents": file_contents(actions),
            "PostStateScript": script,
            "ServicePatterns": ["Digihelse*"],
            "ConfigFiles": ["appsettings.json"],
        },
    )


def test_a_complete_run_ends_with_gather_ps1_over_the_state_it_reached(
    server: LabServer,
) -> None:
    content = base64.b64encode(b"{}").decode()
    actions: list[Action] = [WriteFile(DIGIHELSE, content, _sha(server, DIGIHELSE))]
    document = _post_state_call(server, load_script("gather"), actions)
    assert document.completed == 1
    assert document.post_state_error is None
    assert document.post_state is not None
    facts = WindowsFacts.from_document(GatherDocument.from_json(document.post_state))
    assert all(service.name.startswith("Digihelse") for service in facts.services)
    assert facts.services  # -ServicePatterns reached gather
    written = [f for f in facts.document.config_files if f.path == DIGIHELSE]
    assert [f.content for f in written] == [b"{}"]  # the state after the write


def test_apply_reads_no_post_state_with_another_script_or_after_a_failure(
    server: LabServer,
) -> None:
    refused = _post_state_call(server, load_script("apply"), [RestartService("KPR.Innsending")])
    assert refused.completed == 1
    assert refused.post_state is None
    assert refused.post_state_error is not None
    assert "not gather.ps1" in refused.post_state_error
    failed = _post_state_call(server, load_script("gather"), [RestartService("Nope")])
    assert failed.stopped
    assert failed.post_state is None
    assert failed.post_state_error == "not read: the run did not complete"


def test_a_failed_post_state_read_is_gather_ps1s_failure_document(server: LabServer) -> None:
    server.faults.fail_gather()
    document = _post_state_call(server, load_script("gather"), [RestartService("KPR.Innsending")])
    assert document.completed == 1
    assert not document.stopped
    assert document.post_state is not None
    with pytest.raises(GatherFailedError, match="OperationTimeout"):
        GatherDocument.from_json(document.post_state)


def test_a_post_state_only_gather_failure_spares_a_gather_of_its_own(server: LabServer) -> None:
    server.faults.fail_gather(post_state_only=True)
    on_its_own = twin_gather(server, ScriptCall("gather", {"ConfigFiles": ["appsettings.json"]}))
    (text,) = on_its_own.output
    assert GatherDocument.from_json(text).computer_name  # not due: it is no post-state read
    document = _post_state_call(server, load_script("gather"), [RestartService("KPR.Innsending")])
    assert document.post_state is not None
    with pytest.raises(GatherFailedError, match="OperationTimeout"):
        GatherDocument.from_json(document.post_state)
    again = _post_state_call(server, load_script("gather"), [RestartService("KPR.Innsending")])
    assert again.post_state is not None
    assert GatherDocument.from_json(again.post_state).computer_name  # times=1: spent


def test_an_injected_action_failure_is_a_document_apply_ps1_could_write(
    server: LabServer,
) -> None:
    """fail_action's result carries New-Before's defaults, as the script's catch does: the
    client reads it as that action failing, not as a document off the contract."""
    assert {kind: set(new_before(kind)) for kind in BEFORE_KEYS} == {
        kind: set(keys) for kind, keys in BEFORE_KEYS.items()
    }
    server.faults.fail_action(2)
    actions: list[Action] = [RestartService("KPR.Innsending"), RestartService("KPR.Innsending")]
    document = _document_of(
        server, {"Actions": actions_to_json(actions), "RunId": "r", "FileContents": []}
    )
    assert document.completed == 1
    assert document.failed is not None
    assert document.failed.index == 1
    assert "Injected failure of action 2" in document.failed.message
    assert document.failed.before == {"state": None, "stuck_process": None}
