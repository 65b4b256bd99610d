"""Applying and rolling back a Windows rotation against the lab over the real pypsrp client.

Each test gets its own default lab installation (certificates made once per module), plans
the rotation to the renewed certificates with :func:`plan_windows`, and applies it with
:func:`apply_windows` through the lab's WinRM endpoint. Files are compared byte for byte under
the lab server's root; services, pools and bindings are read from the lab's model; bindings
are proven by real TLS handshakes (verify).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.consumers import COSDOC_CATALOG
from cosdoc_certs.errors import ApplyError, InputError
from cosdoc_certs.facts import WindowsFacts, diagnose
from cosdoc_certs.journal import Journal, Outcome, StepStatus
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import (
    SCENARIOS,
    SSLCERT_OPTIONS,
    LabCertificates,
    LabServer,
    default_installation,
    make_lab_certificates,
)
from cosdoc_certs.plan import Change, ChangeKind, Plan
from cosdoc_certs.status import gather
from cosdoc_certs.windows.apply import (
    PROTOCOL_LOGGERS,
    SignalReceived,
    WindowsApplyResult,
    apply_windows,
    rollback_windows,
)
from cosdoc_certs.windows.apply_contract import ApplyDocument
from cosdoc_certs.windows.connection import WindowsHost
from cosdoc_certs.windows.planning import plan_windows
from cosdoc_certs.windows.verify import endpoint_map, verify_windows

HOST = "cosdoc-app01.testkommune.no"
TEST_SITE_HOST = "cosdoc-test.testkommune.no"


@pytest.fixture(scope="module")
def certificates() -> LabCertificates:
    """Current, previous and renewed lab certificates, made once for this module."""
    return make_lab_certificates()


@dataclasses.dataclass
class World:
    """A running lab, the renewed certificates, the facts and plan, and a journal folder."""

    lab: Lab
    server: LabServer
    bundle: CertificateBundle
    facts: WindowsFacts
    plan: Plan
    journal_dir: Path

    def host(self) -> WindowsHost:
        return WindowsHost(self.lab.connection_info().options(https=False))

    def apply(self, plan: Plan | None = None, **options: Any) -> WindowsApplyResult:
        with self.host() as host:
            return apply_windows(
                host,
                plan or self.plan,
                self.bundle,
                self.facts,
                journal_dir=self.journal_dir,
                **options,
            )

    def journal(self) -> Journal:
        (path,) = sorted(self.journal_dir.glob("*.json"))
        return Journal.load(path)

    def config_files(self) -> dict[Path, bytes]:
        """Every appsettings.json of the server (real files under its root), bytes."""
        return {p: p.read_bytes() for p in sorted(self.server.files.root.rglob("appsettings.json"))}

    def state(self) -> dict[str, str]:
        """Service states, pool states and the certificate of every binding."""
        found = {s.name: s.state for s in self.server.services.values()}
        found.update({p.name: p.state for p in self.server.app_pools.values()})
        found.update(
            {
                f"{site.name} {b.binding_information}": str(b.thumbprint)
                for site, b in self.server.bindings()
            }
        )
        return found

    def windows_temp(self) -> list[str]:
        folder = "C:\\Windows\\Temp"
        return self.server.files.list_folder(folder) if self.server.files.exists(folder) else []

    @property
    def recorder(self) -> Any:
        return self.lab.http.recorder


@pytest.fixture
def world(tmp_path: Path, certificates: LabCertificates) -> Iterator[World]:
    server = default_installation(tmp_path / "server", certificates=certificates)
    with _world(tmp_path, certificates, server) as built:
        yield built


@contextmanager
def _world(tmp_path: Path, certificates: LabCertificates, server: LabServer) -> Iterator[World]:
    """A running lab around ``server``, with the rotation to the renewed certificates planned."""
    with Lab(server=server, root=tmp_path / "lab", svarut=False) as lab:
        files = certificates.write_files(tmp_path / "pfx")
        bundle = load_bundle([files.pair_pfx, files.ssl_pfx], certificates.pfx_password.encode())
        with WindowsHost(lab.connection_info().options(https=False)) as host:
            facts = gather(host)
        plan = plan_windows(facts, bundle, host=HOST)
        lab.http.recorder.reset()
        yield World(lab, server, bundle, facts, plan, tmp_path / "journals")


def _without(plan: Plan, keep: Callable[[Change], bool]) -> Plan:
    return Plan(tuple(c for c in plan.changes if keep(c)), plan.created, plan.title)


def _assert_restored(world: World, files: dict[Path, bytes], state: dict[str, str]) -> None:
    assert world.config_files() == files
    assert world.state() == state
    assert world.windows_temp() == []


# -- a full rotation -------------------------------------------------------------------------


def test_a_full_rotation_applies_in_one_pipeline_and_verifies(world: World) -> None:
    before = world.config_files()
    result = world.apply()
    assert result.outcome is Outcome.APPLIED
    assert [run.call.name for run in world.recorder.scripts] == ["apply"]
    assert len(world.recorder.pipelines) == 1
    assert all(r.ok for r in result.results)
    assert len(result.results) == len(world.plan.actions) - 1  # the manual step is not run
    assert "E-meldinger" in " ".join(result.manual_steps)
    assert set(world.state().values()) >= {"Running", "Started"}
    assert "Stopped" not in world.state().values()
    # every edited file changed, and its original is kept beside it
    changed = [path for path, data in world.config_files().items() if before[path] != data]
    assert len(changed) == len(result.backups) == 6
    for backup in result.backups:
        original = world.server.files.read(backup)
        assert (
            original == before[world.server.files.real_path(backup.rsplit(".cosdoc-certs-", 1)[0])]
        )
    endpoints = endpoint_map(world.lab.connection_info().tls_endpoints)
    with world.host() as host:
        report = verify_windows(host, world.plan, tls_address=endpoints)
    assert report.ok, report.to_text()
    ssl = world.bundle.ssl
    assert ssl is not None
    https = [b for _, b in world.server.bindings() if b.protocol == "https"]
    assert {b.thumbprint for b in https} == {ssl.thumbprint}
    journal = world.journal()
    assert journal.kind == "windows"
    assert journal.outcome is Outcome.APPLIED
    assert {step["status"] for step in journal.steps} == {"done"}


def test_gather_apply_verify_is_three_round_trips(world: World) -> None:
    endpoints = endpoint_map(world.lab.connection_info().tls_endpoints)
    with world.host() as host:
        facts = gather(host)
        plan = plan_windows(facts, world.bundle, host=HOST)
        apply_windows(host, plan, world.bundle, facts, journal_dir=world.journal_dir)
        assert verify_windows(host, plan, tls_address=endpoints).ok
    assert [run.call.name for run in world.recorder.scripts] == ["gather", "apply", "gather"]
    assert len(world.recorder.pipelines) == 3


def test_a_plan_without_windows_changes_does_nothing(world: World) -> None:
    result = world.apply(_without(world.plan, lambda change: change.is_noop))
    assert result.outcome is Outcome.NOTHING_TO_DO
    assert world.recorder.scripts == []
    assert world.journal().outcome is Outcome.NOTHING_TO_DO


# -- failures roll back ----------------------------------------------------------------------


def test_a_service_that_will_not_start_is_rolled_back(world: World) -> None:
    files, state = world.config_files(), world.state()
    plan = _without(
        world.plan,
        lambda c: (
            not (c.kind is ChangeKind.GRANT_KEY_READ and c.details["account"] == "DOMENE\\svc-kpr")
        ),
    )
    with pytest.raises(ApplyError) as raised:
        world.apply(plan)
    error = raised.value
    assert error.rolled_back
    assert error.exit_code == 5
    assert "restart-service KPR.Innsending" in error.problem
    assert "Keyset does not exist" in error.problem
    assert "rolled back" in error.problem
    _assert_restored(world, files, state)
    # the undo call ends by reading the state it reached: the check needs no gather of its own
    assert [run.call.name for run in world.recorder.scripts] == ["apply", "apply"]
    journal = world.journal()
    assert journal.outcome is Outcome.ROLLED_BACK
    assert {step["status"] for step in journal.steps} == {"undone"}


def test_a_binding_that_vanished_fails_in_the_middle_and_is_rolled_back(world: World) -> None:
    site = world.server.site("CosDoc Test")
    site.bindings = [b for b in site.bindings if "cosdoc-test" not in b.host]
    files, state = world.config_files(), world.state()
    with pytest.raises(ApplyError, match="has no binding") as raised:
        world.apply()
    assert raised.value.rolled_back
    _assert_restored(world, files, state)


def test_a_file_changed_by_hand_after_planning_is_refused_before_anything_changes(
    world: World,
) -> None:
    (path,) = [p for p in world.config_files() if "Innsending" in str(p)]
    path.write_bytes(path.read_bytes().replace(b"KPR", b"KPR ", 1))
    files, state = world.config_files(), world.state()
    certificates = set(world.server.store.entries)
    with pytest.raises(ApplyError, match="changed since planning") as raised:
        world.apply()
    assert "nothing was changed" in raised.value.problem
    _assert_restored(world, files, state)
    assert set(world.server.store.entries) == certificates
    assert [run.call.name for run in world.recorder.scripts] == ["apply"]
    assert world.journal().outcome is Outcome.ROLLED_BACK


@pytest.mark.parametrize("before", [True, False], ids=["before-processing", "after-processing"])
def test_a_dropped_connection_during_apply_is_rolled_back(world: World, before: bool) -> None:
    files, state = world.config_files(), world.state()
    world.lab.faults.drop_connection_at(1, before=before, action="Command")
    with pytest.raises(ApplyError) as raised:
        world.apply()
    assert raised.value.rolled_back
    assert "closed the connection" in raised.value.problem
    _assert_restored(world, files, state)
    assert world.journal().outcome is Outcome.ROLLED_BACK


def test_when_every_apply_pipeline_fails_the_journal_says_what_is_left_and_rollback_retries(
    world: World,
) -> None:
    files = world.config_files()
    world.lab.faults.fail_pipeline("apply", "Remoting session broken")
    with pytest.raises(ApplyError) as raised:
        world.apply()
    error = raised.value
    assert not error.rolled_back
    assert error.exit_code == 6
    assert "Remoting session broken" in error.problem
    journal = world.journal()
    assert journal.outcome is Outcome.ROLLBACK_FAILED
    assert str(journal.path) in str(error)
    assert len(journal.steps_to_undo()) == len(journal.steps)  # nothing known to be undone
    assert world.config_files() == files  # the pipeline never ran
    world.lab.faults.clear()
    with world.host() as host:
        rolled = rollback_windows(host, Journal.load(journal.path))
    assert rolled.outcome is Outcome.ROLLED_BACK
    assert world.config_files() == files
    assert "Stopped" not in world.state().values()


def test_ctrl_c_during_apply_rolls_back_then_stops(world: World) -> None:
    files, state = world.config_files(), world.state()

    def interrupt_when_done(message: str) -> None:
        if message.startswith("all "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        world.apply(progress=interrupt_when_done)
    _assert_restored(world, files, state)
    assert world.journal().outcome is Outcome.ROLLED_BACK


def test_sigterm_during_apply_rolls_back_like_ctrl_c(world: World) -> None:
    files, state = world.config_files(), world.state()
    handler = signal.getsignal(signal.SIGTERM)

    def terminate_when_done(message: str) -> None:
        if message.startswith("all "):
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(SignalReceived, match="SIGTERM"):
        world.apply(progress=terminate_when_done)
    _assert_restored(world, files, state)
    assert world.journal().outcome is Outcome.ROLLED_BACK
    assert signal.getsignal(signal.SIGTERM) == handler


def test_wrong_pfx_password_fails_the_import_and_changes_nothing(world: World) -> None:
    renewed = world.bundle.signing
    assert renewed is not None
    pfx = world.lab.connection_info().pfx_files["signing"].read_bytes()
    entries = set(world.server.store.entries)
    actions = [{"action": "import-pfx", "index": 0, "thumbprints": [renewed.thumbprint]}]
    with world.host() as host:
        document = host.run_script(
            "apply",
            Actions=json.dumps(actions),
            RunId="test",
            PfxFiles=[base64.b64encode(pfx).decode()],
            PfxPassword=host.secure_string("not-the-password"),
        )
    assert document["failed_index"] == 0
    assert document["completed"] == 0
    assert document["results"][0]["message"] == "The specified network password is not correct."
    assert set(world.server.store.entries) == entries
    assert world.windows_temp() == []


# -- rollback of a finished run --------------------------------------------------------------


def test_rollback_of_a_finished_run_restores_the_exact_original_bytes(world: World) -> None:
    files, state = world.config_files(), world.state()
    result = world.apply()
    assert world.config_files() != files
    world.recorder.reset()
    with world.host() as host:
        rolled = rollback_windows(host, Journal.load(result.journal_path))
    assert rolled.outcome is Outcome.ROLLED_BACK
    assert rolled.backups == result.backups
    _assert_restored(world, files, state)
    # the hand-edit check, then the undo, checked over the state it read at its end
    assert [run.call.name for run in world.recorder.scripts] == ["gather", "apply"]
    assert len(world.recorder.pipelines) == 2
    assert rolled.post_state is not None
    journal = Journal.load(result.journal_path)
    assert journal.outcome is Outcome.ROLLED_BACK
    with world.host() as host, pytest.raises(InputError, match="nothing to roll back"):
        rollback_windows(host, journal)


def test_rollback_refuses_when_a_file_was_changed_by_hand_after_the_run(world: World) -> None:
    result = world.apply()
    (path,) = [p for p in world.config_files() if "Adressering" in str(p)]
    path.write_bytes(path.read_bytes() + b"\n")
    files = world.config_files()
    world.recorder.reset()
    with world.host() as host, pytest.raises(InputError, match="changed after the run") as raised:
        rollback_windows(host, Journal.load(result.journal_path))
    assert ".bak" in raised.value.hint
    assert world.config_files() == files
    assert [run.call.name for run in world.recorder.scripts] == ["gather"]
    assert Journal.load(result.journal_path).outcome is Outcome.APPLIED


def test_rollback_refuses_a_journal_of_another_kind(world: World, tmp_path: Path) -> None:
    journal = Journal.start(
        kind="svarut", host="x", old_thumbprint=None, new_thumbprint=None, directory=tmp_path
    )
    with world.host() as host, pytest.raises(InputError, match="not a Windows one"):
        rollback_windows(host, journal)


# -- input errors before anything is touched -------------------------------------------------


def _replace_details(plan: Plan, kind: ChangeKind, **details: Any) -> Plan:
    changes = []
    for change in plan.changes:
        if change.kind is kind:
            change = dataclasses.replace(change, details={**change.details, **details})
        changes.append(change)
    return Plan(tuple(changes), plan.created, plan.title)


@pytest.mark.parametrize(
    ("kind", "details", "message"),
    [
        (ChangeKind.IMPORT_CERT, {"thumbprint": "AB" * 20}, "not in the loaded certificates"),
        (ChangeKind.EDIT_CONFIG_KEY, {"sha256_before": "00" * 32}, "not the file the plan"),
        (ChangeKind.EDIT_CONFIG_KEY, {"sha256_after": "00" * 32}, "does not give the planned"),
        (ChangeKind.EDIT_CONFIG_KEY, {"file": "C:\\nowhere\\appsettings.json"}, "no content"),
    ],
    ids=["unknown-certificate", "other-facts", "other-edit", "file-not-gathered"],
)
def test_a_plan_that_does_not_fit_the_facts_is_refused_before_anything_runs(
    world: World, kind: ChangeKind, details: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        world.apply(_replace_details(world.plan, kind, **details))
    assert world.recorder.scripts == []
    assert not world.journal_dir.exists() or not list(world.journal_dir.glob("*.json"))


# -- secrets ---------------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def debug_records() -> Iterator[list[logging.LogRecord]]:
    """Every log record at DEBUG, the protocol libraries' loggers included (as left unset)."""
    root = logging.getLogger()
    handler, level = _Records(), root.level
    protocol = {name: logging.getLogger(name).level for name in PROTOCOL_LOGGERS}
    for name in PROTOCOL_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.records
    root.removeHandler(handler)
    root.setLevel(level)
    for name, saved in protocol.items():
        logging.getLogger(name).setLevel(saved)


def test_no_secret_reaches_a_log_journal_message_or_leftover_file(
    world: World, debug_records: list[logging.LogRecord]
) -> None:
    plan = _without(
        world.plan,
        lambda c: (
            not (c.kind is ChangeKind.GRANT_KEY_READ and c.details["account"] == "DOMENE\\svc-kpr")
        ),
    )
    marks = logging.getLogger("test.progress")
    with pytest.raises(ApplyError) as raised:
        world.apply(plan, progress=marks.info)
    world.apply()
    first_apply = next(run.call for run in world.recorder.scripts if run.call.name == "apply")
    password = first_apply.parameters["PfxPassword"]
    pfx_base64 = first_apply.parameters["PfxFiles"][0]
    assert password
    assert pfx_base64
    secrets = [password, pfx_base64[:64], pfx_base64[-64:]]
    for info in world.bundle:
        key = info.private_key
        assert key is not None
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        secrets.append(pem.splitlines()[1])
    texts = [record.getMessage() for record in debug_records]
    texts += [str(raised.value), repr(raised.value)]
    texts += [path.read_text() for path in world.journal_dir.glob("*.json")]
    texts += [
        path.read_bytes().decode("latin-1")
        for folder in (world.server.files.root, world.lab.client_folder.parent / "lab")
        if folder.exists()
        for path in folder.rglob("*")
        if path.is_file()
    ]
    for secret in secrets:
        assert not any(secret in text for text in texts)
    assert not list(world.server.files.root.rglob("*.pfx"))
    # while apply.ps1 ran, pypsrp (which logs whole messages at DEBUG) was held at INFO
    names = [(r.name, r.levelno, r.getMessage()) for r in debug_records]
    start = next(
        i for i, (n, _, m) in enumerate(names) if n == "test.progress" and m.startswith("applying")
    )
    end = next(
        i for i, (n, _, m) in enumerate(names) if n == "test.progress" and m.startswith("failed")
    )
    assert any(name.startswith("pypsrp") and level == logging.DEBUG for name, level, _ in names)
    assert not [
        n
        for n, level, _ in names[start:end]
        if n.split(".")[0] in PROTOCOL_LOGGERS and level < logging.INFO
    ]
    assert all(logging.getLogger(n).level == logging.NOTSET for n in PROTOCOL_LOGGERS)


def test_the_journal_records_hashes_and_old_and_new_values(world: World) -> None:
    world.apply()
    journal = world.journal()
    writes = [step for step in journal.steps if step["name"] == "write-file"]
    assert len(writes) == 6
    for step in writes:
        details = step["details"]
        assert len(details["sha256_before"]) == len(details["sha256_after"]) == 64
        assert details["backup"].endswith(".bak")
        assert details["before"]["backup"] == details["backup"]
        assert all(edit["new"] and edit["old"] for edit in details["edits"])
        assert details["restart"]
    assert "content_base64" not in json.dumps(journal.to_dict())
    assert all(s["status"] == str(StepStatus.DONE) for s in journal.steps)


# -- Windows behaviour the scripts must survive ----------------------------------------------


@pytest.fixture
def scenario_world(
    request: pytest.FixtureRequest, tmp_path: Path, certificates: LabCertificates
) -> Iterator[World]:
    """The world of the lab scenario named by the test's ``scenario`` parameter."""
    server = SCENARIOS[request.param](tmp_path / "server", certificates=certificates)
    with _world(tmp_path, certificates, server) as built:
        yield built


@pytest.mark.parametrize("scenario_world", ["large-config"], indirect=True)
def test_a_config_file_over_the_5_1_json_limit_is_rotated(scenario_world: World) -> None:
    result = scenario_world.apply()
    assert result.outcome is Outcome.APPLIED, result.message
    written = [r for r in result.results if r.action == "write-file"]
    assert written
    assert all(r.ok for r in written)


def test_a_script_failure_outside_the_actions_still_returns_the_document(world: World) -> None:
    with world.host() as host:
        data = host.run_script("apply", Actions='[{"action":"format-disk"}]', RunId="r")
    document = ApplyDocument.from_data(data)
    assert document.error is not None
    assert "'format-disk'" in document.error
    assert document.results == ()


def _apply_within(world: World, seconds: float) -> BaseException | WindowsApplyResult | None:
    """Apply on a thread; its result or error, or None if it still runs after ``seconds``."""
    outcome: list[BaseException | WindowsApplyResult] = []

    def run() -> None:
        try:
            outcome.append(world.apply())
        except BaseException as error:  # handed to the test thread
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome[0] if outcome else None


@pytest.mark.parametrize("scenario_world", ["stuck-service"], indirect=True)
def test_a_service_stuck_stopping_times_out_and_is_rolled_back(scenario_world: World) -> None:
    files, state = scenario_world.config_files(), scenario_world.state()
    outcome = _apply_within(scenario_world, 90)
    assert outcome is not None, "apply still waits for a service stuck in StopPending"
    assert isinstance(outcome, ApplyError), outcome
    service = scenario_world.server.service("Digihelse.Adressering")
    process = f"Digihelse.Adressering (PID {service.process_id})"
    assert "did not stop within 60 s (it is StopPending)" in outcome.problem
    assert process in outcome.problem
    assert "Digihelse.Adressering was not restarted: it is still stopping" in str(outcome)
    assert scenario_world.config_files() == files
    assert scenario_world.journal().outcome is Outcome.ROLLED_BACK
    state["Digihelse.Adressering"] = "StopPending"
    assert scenario_world.state() == state


def _attributes(world: World) -> dict[str, frozenset[str]]:
    files = world.server.files
    return {s.name: files.attributes(s.settings_file) for s in world.server.services.values()}


@pytest.mark.parametrize("scenario_world", ["readonly-config"], indirect=True)
def test_read_only_and_hidden_config_files_are_rotated_and_rolled_back_keeping_attributes(
    scenario_world: World,
) -> None:
    files, attributes = scenario_world.config_files(), _attributes(scenario_world)
    assert attributes["KPR.Innsending"] == {"ReadOnly", "Hidden"}
    result = scenario_world.apply()
    assert result.outcome is Outcome.APPLIED, result.message
    assert _attributes(scenario_world) == attributes
    assert scenario_world.config_files() != files
    with scenario_world.host() as host:
        rollback_windows(host, scenario_world.journal())
    assert scenario_world.config_files() == files
    assert _attributes(scenario_world) == attributes


@pytest.mark.parametrize("scenario_world", ["central-store"], indirect=True)
def test_a_central_certificate_store_binding_is_a_manual_step_never_rebound(
    scenario_world: World,
) -> None:
    binding = f"*:443:{TEST_SITE_HOST}"
    rebinds = [c for c in scenario_world.plan.changes if c.kind is ChangeKind.REBIND_HTTPS]
    assert binding not in {c.details["binding"] for c in rebinds}
    (step,) = [
        c
        for c in scenario_world.plan.changes
        if c.kind is ChangeKind.MANUAL_STEP and c.details.get("binding") == binding
    ]
    assert f"replace {TEST_SITE_HOST}.pfx in the central store's share" in step.summary
    statuses = diagnose(scenario_world.facts, COSDOC_CATALOG, now=scenario_world.plan.created)
    findings = {(f.code, f.subject) for status in statuses for f in status.findings}
    assert ("binding-central-store", f"https {binding} (CosDoc Test)") in findings
    result = scenario_world.apply()
    assert result.outcome is Outcome.APPLIED, result.message
    assert step.summary in result.manual_steps
    served = scenario_world.server.find_binding("CosDoc Test", binding)
    assert (served.ssl_flags, served.thumbprint) == (3, None)
    endpoints = endpoint_map(scenario_world.lab.connection_info().tls_endpoints)
    with scenario_world.host() as host:
        report = verify_windows(host, scenario_world.plan, tls_address=endpoints)
    assert report.ok, report.to_text()
    (check,) = [c for c in report.checks if c.subject == f"https {binding} (CosDoc Test)"]
    assert "from the Central Certificate Store — not compared" in check.message


def _http_sys(world: World) -> dict[tuple[str, str], Any]:
    """Every http.sys entry of the lab server → its registry values."""
    server = world.server
    entries = {binding.http_sys_entry for _, binding in server.bindings() if binding.thumbprint}
    return {entry: server.sslcert_settings(entry) for entry in sorted(entries)}


@pytest.mark.parametrize("scenario_world", ["sslcert-options"], indirect=True)
def test_http_sys_settings_survive_the_rotation_and_the_rollback(scenario_world: World) -> None:
    settings = _http_sys(scenario_world)
    for entry, values in SSLCERT_OPTIONS.items():
        assert settings[entry] == {**settings[entry], **values}
    result = scenario_world.apply()
    assert result.outcome is Outcome.APPLIED, result.message
    assert _http_sys(scenario_world) == settings
    new = scenario_world.bundle.ssl
    assert new is not None
    assert {b.thumbprint for _, b in scenario_world.server.bindings() if b.thumbprint} == {
        new.thumbprint
    }
    with scenario_world.host() as host:
        rollback_windows(host, scenario_world.journal())
    assert _http_sys(scenario_world) == settings


@pytest.mark.parametrize("scenario_world", ["ipv6-binding"], indirect=True)
def test_ipv6_and_wildcard_bindings_are_each_rebound_on_their_own_entry(
    scenario_world: World,
) -> None:
    rebinds = {
        c.details["binding"]
        for c in scenario_world.plan.changes
        if c.kind is ChangeKind.REBIND_HTTPS
    }
    assert {"*:443:", "[::]:443:", "[fe80::1]:443:cosdoc.testkommune.no"} <= rebinds
    files, state = scenario_world.config_files(), scenario_world.state()
    result = scenario_world.apply()
    assert result.outcome is Outcome.APPLIED, result.message
    new = scenario_world.bundle.ssl
    assert new is not None
    served = {b.thumbprint for _, b in scenario_world.server.bindings() if b.protocol == "https"}
    assert served == {new.thumbprint}
    with scenario_world.host() as host:
        rollback_windows(host, scenario_world.journal())
    _assert_restored(scenario_world, files, state)
