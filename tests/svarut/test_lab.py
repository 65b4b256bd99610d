"""SvarUT rotation against the in-process lab host: plans, rollbacks, faults and clear errors.

The lab host is a real asyncssh server with SFTP and a docker stand-in that serves real TLS
with the files prod.env names; it runs as the test's user (the real sshd tests cover root
ownership and real sudo).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import asyncssh
import pytest
from click.testing import CliRunner
from cryptography import x509

from cosdoc_certs import svarut
from cosdoc_certs.cli import main
from cosdoc_certs.errors import ApplyError, InputError, RemoteError
from cosdoc_certs.journal import Journal, Outcome
from cosdoc_certs.lab.certs import Issued
from cosdoc_certs.lab.svarut_host import DEFAULT_ENV, LabFaults, LabSvarutHost
from cosdoc_certs.plan import ChangeKind
from cosdoc_certs.svarut import SAMDRIFT, SINGLE, Layout, NewCertificate

from .conftest import (
    LOST_CONNECTION_POINTS,
    PFX_PASSWORD,
    Certs,
    Trigger,
    faulty_connector,
    find_secrets,
    secret_needles,
)

TODAY = date(2026, 11, 29)


@pytest.fixture
def lab(tmp_path: Path, certs: Certs) -> Iterator[LabSvarutHost]:
    with LabSvarutHost(tmp_path / "lab") as host:
        host.seed(SINGLE, cert_pem=certs.old.cert_pem(), key_pem=certs.old.key_pem())
        yield host


def _new(issued: Issued, *, with_chain: bool = True) -> NewCertificate:
    chain = issued.chain if with_chain else ()
    return NewCertificate(issued.certificate, issued.private_key, chain)


def _env(lab: LabSvarutHost, layout: Layout = SINGLE) -> bytes:
    return lab.path(layout.env_path).read_bytes()


@pytest.mark.parametrize(
    ("layout", "env_path"),
    [
        (SINGLE, "/usr/containers/svarut/prod.env"),
        (SAMDRIFT, "/usr/containers/nginx/persistent/prod.env"),
    ],
)
def test_layout_is_detected_and_rotation_verifies(
    tmp_path: Path, certs: Certs, journal_dir: Path, layout: Layout, env_path: str
) -> None:
    with LabSvarutHost(tmp_path / "lab") as lab:
        lab.seed(layout, cert_pem=certs.old.cert_pem(), key_pem=certs.old.key_pem())
        target = lab.target()
        facts = svarut.status(target)
        assert (facts.layout.name, facts.layout.env_path) == (layout.name, env_path)
        assert facts.served_thumbprint == certs.old.thumbprint
        splan = svarut.plan(target, _new(certs.new), today=TODAY)
        assert [c.kind for c in splan.plan.changes] == [
            ChangeKind.UPLOAD_FILES,
            ChangeKind.SET_ENV,
            ChangeKind.RESTART_COMPOSE,
        ]
        result = svarut.apply(target, splan, journal_dir=journal_dir)
        assert result.outcome is Outcome.APPLIED
        assert result.served_thumbprint == certs.new.thumbprint
        report = svarut.verify(target, certs.new.thumbprint)
        assert report.ok, report.to_text()
        env = lab.path(env_path).read_text()
        assert "SSL_CERT_FILENAME = cert-20261129.crt\n" in env
        assert "SSL_CERT_KEY_FILENAME = cert-20261129.rsa\n" in env
        key = lab.path(layout.file_path("cert-20261129.rsa"))
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert lab.path(layout.file_path("cert.crt")).exists()  # the old files stay
        assert list(lab.path("/tmp").iterdir()) == []


def test_plan_text_shows_only_the_changed_env_lines(lab: LabSvarutHost, certs: Certs) -> None:
    splan = svarut.plan(lab.target(), _new(certs.new), today=TODAY)
    text = splan.to_text()
    assert "-SSL_CERT_FILENAME = cert.crt" in text
    assert "+SSL_CERT_KEY_FILENAME = cert-20261129.rsa" in text
    assert "s3cret" not in text
    assert "s3cret" not in json.dumps(splan.to_dict())
    assert "PRIVATE KEY" not in repr(splan) + json.dumps(splan.to_dict())


def test_already_served_is_a_noop_with_its_reason(lab: LabSvarutHost, certs: Certs) -> None:
    splan = svarut.plan(lab.target(), _new(certs.old))
    assert splan.is_empty
    assert (
        splan.plan.noops[0].noop_reason
        == f"{splan.facts.endpoint} already serves {certs.old.thumbprint}"
    )


def test_env_naming_new_files_but_old_served_plans_only_a_restart(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    files = lab.path(SINGLE.files_path)
    (files / "cert.crt").write_bytes(certs.new.cert_pem())
    (files / "cert.rsa").write_bytes(certs.new.key_pem())
    splan = svarut.plan(lab.target(), _new(certs.new))
    assert [c.kind for c in splan.plan.changes] == [ChangeKind.RESTART_COMPOSE]
    assert "already names cert.crt" in splan.plan.changes[0].summary
    result = svarut.apply(lab.target(), splan, journal_dir=journal_dir)
    assert result.served_thumbprint == certs.new.thumbprint


def test_failed_restart_only_run_brings_the_containers_back(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    files = lab.path(SINGLE.files_path)
    (files / "cert.crt").write_bytes(certs.new.cert_pem())
    (files / "cert.rsa").write_bytes(certs.new.key_pem())
    splan = svarut.plan(lab.target(), _new(certs.new))
    lab.faults.container_exits = True
    with pytest.raises(ApplyError, match="exited") as failure:
        svarut.apply(lab.target(), splan, journal_dir=journal_dir)
    assert certs.new.thumbprint in failure.value.hint  # what prod.env names runs again
    assert svarut.status(lab.target()).all_running


def test_versioned_names_do_not_overwrite_files_of_the_same_day(
    lab: LabSvarutHost, certs: Certs
) -> None:
    lab.path(SINGLE.file_path("cert-20261129.crt")).write_bytes(b"kept")
    splan = svarut.plan(lab.target(), _new(certs.new), today=TODAY)
    assert [u.path.rsplit("/", 1)[-1] for u in splan.uploads] == [
        "cert-20261129-2.crt",
        "cert-20261129-2.rsa",
    ]


def test_new_issuer_without_intermediates_stops_with_a_clear_message(
    lab: LabSvarutHost, certs: Certs
) -> None:
    with pytest.raises(InputError, match="the chain must change too, and no intermediate"):
        svarut.plan(lab.target(), _new(certs.other_issuer, with_chain=False))


def test_new_issuer_with_intermediates_replaces_the_chain(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    new = _new(certs.other_issuer)
    splan = svarut.plan(lab.target(), new, today=TODAY)
    assert "issuer changed: chain replaced" in splan.plan.changes[0].summary
    svarut.apply(lab.target(), splan, journal_dir=journal_dir)
    served_file = x509.load_pem_x509_certificates(
        lab.path(SINGLE.file_path("cert-20261129.crt")).read_bytes()
    )
    assert served_file == [certs.other_issuer.certificate, *new.intermediates]
    assert served_file[1].subject == certs.other_issuer.certificate.issuer


def test_same_issuer_without_intermediates_keeps_the_served_chain(
    lab: LabSvarutHost, certs: Certs
) -> None:
    lab.path(SINGLE.file_path("cert.crt")).write_bytes(certs.old.cert_pem() + certs.old.chain_pem())
    splan = svarut.plan(lab.target(), _new(certs.new, with_chain=False), today=TODAY)
    chain = x509.load_pem_x509_certificates(splan.uploads[0].data)
    assert chain == [certs.new.certificate, *certs.old.chain]  # as served today


def test_a_key_that_does_not_match_is_refused_before_anything_is_touched(
    lab: LabSvarutHost, certs: Certs
) -> None:
    before = _env(lab)
    with pytest.raises(InputError, match="the private key does not belong to the certificate"):
        NewCertificate(certs.new.certificate, certs.old.private_key)
    assert _env(lab) == before


def test_container_that_exits_after_up_is_rolled_back(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    before = _env(lab)
    splan = svarut.plan(lab.target(), _new(certs.new), today=TODAY)
    lab.faults.container_exits = True
    with pytest.raises(ApplyError, match="container svarut-nginx-1 exited") as failure:
        svarut.apply(lab.target(), splan, journal_dir=journal_dir)
    assert failure.value.rolled_back
    assert certs.old.thumbprint in failure.value.hint
    _assert_restored(lab, certs, before)
    journal = Journal.load(next(journal_dir.glob("*.json")))
    assert journal.outcome is Outcome.ROLLED_BACK
    assert all(step["status"] == "undone" for step in journal.steps)


def _assert_restored(lab: LabSvarutHost, certs: Certs, env_before: bytes) -> None:
    assert _env(lab) == env_before
    assert svarut.verify(lab.target(), certs.old.thumbprint).ok
    assert sorted(p.name for p in lab.path(SINGLE.files_path).iterdir()) == ["cert.crt", "cert.rsa"]
    assert list(lab.path("/tmp").iterdir()) == []


@pytest.mark.parametrize(
    "trigger", LOST_CONNECTION_POINTS.values(), ids=LOST_CONNECTION_POINTS.keys()
)
def test_lost_connection_mid_apply_is_restored(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path, trigger: Trigger
) -> None:
    before = _env(lab)
    splan = svarut.plan(lab.target(), _new(certs.new), today=TODAY)
    target = lab.target(connector=faulty_connector(lab.ssh_options(), trigger))
    with pytest.raises(ApplyError, match=r"SSH connection to .* broke") as failure:
        svarut.apply(target, splan, journal_dir=journal_dir)
    assert failure.value.rolled_back
    _assert_restored(lab, certs, before)


def test_rollback_from_the_journal_after_success(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    before = _env(lab)
    svarut.apply(lab.target(), svarut.plan(lab.target(), _new(certs.new)), journal_dir=journal_dir)
    result = svarut.rollback(lab.target(), journal_dir=journal_dir)
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.served_thumbprint == certs.old.thumbprint
    _assert_restored(lab, certs, before)
    with pytest.raises(InputError, match="no run to roll back"):  # undone already
        svarut.rollback(lab.target(), journal_dir=journal_dir)


def test_rollback_refuses_to_overwrite_a_later_hand_edit(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    svarut.apply(lab.target(), svarut.plan(lab.target(), _new(certs.new)), journal_dir=journal_dir)
    env = lab.path(SINGLE.env_path)
    env.write_bytes(env.read_bytes() + b"EXTRA=1\n")
    with pytest.raises(RemoteError, match="was changed since the rotation; not overwriting"):
        svarut.rollback(lab.target(), journal_dir=journal_dir)
    assert env.read_bytes().endswith(b"EXTRA=1\n")


def test_env_edited_between_plan_and_apply_is_not_overwritten(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    splan = svarut.plan(lab.target(), _new(certs.new))
    env = lab.path(SINGLE.env_path)
    env.write_bytes(env.read_bytes() + b"# edited by hand\n")
    edited = env.read_bytes()
    with pytest.raises(ApplyError, match=r"changed on 127\.0\.0\.1 since the plan"):
        svarut.apply(lab.target(), splan, journal_dir=journal_dir)
    assert env.read_bytes() == edited
    assert svarut.verify(lab.target(), certs.old.thumbprint).ok


ENV_STYLES = {
    "export, quotes, comments": (
        "# SvarUT\nexport SSL_CERT_FILENAME='{cert}'  # current\n"
        'SSL_CERT_KEY_FILENAME: "{key}"\nDB_PASSWORD="a # b"\n'
    ),
    "guide style, CRLF": "SSL_CERT_FILENAME = {cert}\r\nSSL_CERT_KEY_FILENAME = {key}\r\n",
    "repeated key": (
        "SSL_CERT_FILENAME=old.crt\nSSL_CERT_FILENAME={cert}\nSSL_CERT_KEY_FILENAME={key}"
    ),
}


@pytest.mark.parametrize("template", ENV_STYLES.values(), ids=ENV_STYLES.keys())
def test_env_styles_keep_every_other_byte(
    tmp_path: Path, certs: Certs, journal_dir: Path, template: str
) -> None:
    with LabSvarutHost(tmp_path / "lab") as lab:
        lab.seed(cert_pem=certs.old.cert_pem(), key_pem=certs.old.key_pem(), env_template=template)
        before = _env(lab)
        svarut.apply(
            lab.target(),
            svarut.plan(lab.target(), _new(certs.new), today=TODAY),
            journal_dir=journal_dir,
        )
        after = _env(lab)
        expected = before.replace(b"cert.crt", b"cert-20261129.crt").replace(
            b"cert.rsa", b"cert-20261129.rsa"
        )
        assert after == expected
        assert svarut.verify(lab.target(), certs.new.thumbprint).ok


def test_journal_is_private_and_holds_no_secrets(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    result = svarut.apply(
        lab.target(), svarut.plan(lab.target(), _new(certs.new)), journal_dir=journal_dir
    )
    text = result.journal_path.read_text()
    assert stat.S_IMODE(result.journal_path.stat().st_mode) == 0o600
    data = json.loads(text)
    assert (data["old_thumbprint"], data["new_thumbprint"]) == (
        certs.old.thumbprint,
        certs.new.thumbprint,
    )
    key_hash = hashlib.sha256(certs.new.key_pem()).hexdigest()
    assert key_hash in text
    assert [s["name"] for s in data["steps"]] == [
        "stage",
        "install",
        "install",
        "backup-env",
        "edit-env",
        "restart",
        "verify",
    ]
    assert "PRIVATE KEY" not in text
    assert "s3cret" not in text


def test_no_secret_is_left_on_the_host(lab: LabSvarutHost, certs: Certs, journal_dir: Path) -> None:
    svarut.apply(
        lab.target(),
        svarut.plan(lab.target(), _new(certs.new), today=TODAY),
        journal_dir=journal_dir,
    )
    key_file = lab.path(SINGLE.file_path("cert-20261129.rsa"))
    leaks = find_secrets([lab.sandbox], secret_needles(certs, certs.new), allowed=[key_file])
    assert leaks == []


# -- one clear line for each way in which the host refuses ------------------------------------
def test_sudo_needing_a_password(tmp_path: Path) -> None:
    faults = LabFaults(sudo_needs_password=True)
    with (
        LabSvarutHost(tmp_path / "lab", faults=faults) as lab,
        pytest.raises(RemoteError, match=r"^sudo on 127\.0\.0\.1 needs a password for svarut"),
    ):
        svarut.status(lab.target())


def test_missing_layout(tmp_path: Path) -> None:
    expected = (
        "no SvarUT installation on 127.0.0.1: no /usr/containers/svarut/prod.env or "
        "/usr/containers/nginx/persistent/prod.env"
    )
    with (
        LabSvarutHost(tmp_path / "lab") as lab,
        pytest.raises(RemoteError, match=re.escape(expected)),
    ):
        svarut.status(lab.target())


def test_both_layouts_present_asks_which(lab: LabSvarutHost, certs: Certs) -> None:
    lab.seed(SAMDRIFT, cert_pem=certs.old.cert_pem(), key_pem=certs.old.key_pem())
    with pytest.raises(RemoteError, match="has both"):
        svarut.status(lab.target())
    samdrift = svarut.status(lab.target(layout="samdrift", tls_port=lab.tls_port_of(SAMDRIFT)))
    assert samdrift.layout.name == "samdrift"
    assert samdrift.served_thumbprint == certs.old.thumbprint


def test_root_override(tmp_path: Path, certs: Certs) -> None:
    custom = dataclasses.replace(SINGLE, root="/srv/svarut-a")
    with LabSvarutHost(tmp_path / "lab") as lab:
        lab.seed(custom, cert_pem=certs.old.cert_pem(), key_pem=certs.old.key_pem())
        facts = svarut.status(lab.target(root="/srv/svarut-a"))
        assert (facts.layout.name, facts.layout.env_path) == ("single", "/srv/svarut-a/prod.env")


def test_wrong_host_key(lab: LabSvarutHost) -> None:
    other = LabSvarutHost(lab.workdir / "other")
    target = lab.target(ssh=lab.ssh_options(pinned_host_key=other.host_key))
    with pytest.raises(
        RemoteError, match=r"^the host key of 127.0.0.1:\d+ does not match the pinned key"
    ):
        svarut.status(target)


def test_unknown_host_with_known_hosts_file(lab: LabSvarutHost, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    target = lab.target(ssh=lab.ssh_options(pinned_host_key=None, known_hosts=str(known)))
    with pytest.raises(RemoteError, match=f"is not in {known} or does not match the key there"):
        svarut.status(target)


def test_no_known_hosts_file_is_said_so_not_a_mismatch(
    lab: LabSvarutHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh/known_hosts
    target = lab.target(ssh=lab.ssh_options(pinned_host_key=None))
    with pytest.raises(RemoteError) as raised:
        svarut.status(target)
    assert "does not match" not in raised.value.problem
    assert "no known_hosts file" in raised.value.problem
    assert "ssh-keyscan" in raised.value.hint


def test_refused_login(lab: LabSvarutHost, tmp_path: Path) -> None:
    other = LabSvarutHost(tmp_path / "other")
    other.workdir.mkdir()
    other.client_key_path.write_bytes(other._client_key.export_private_key())
    target = lab.target(ssh=lab.ssh_options(client_keys=(str(other.client_key_path),)))
    with pytest.raises(RemoteError, match=r"refused the SSH login of svarut"):
        svarut.status(target)


# -- the command line --------------------------------------------------------------------------
def _cli_args(lab: LabSvarutHost) -> list[str]:
    options = lab.ssh_options()
    return [
        "--host",
        "127.0.0.1",
        "--port",
        str(options.port),
        "--user",
        "svarut",
        "--host-key",
        lab.host_key,
        "--identity",
        str(lab.client_key_path),
        "--tls-port",
        str(lab.tls_port),
    ]


def test_cli_status_plan_apply_verify_rollback(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    runner = CliRunner()
    env = {"PFX_PW": PFX_PASSWORD}
    base = _cli_args(lab)
    status = runner.invoke(main, ["svarut", "status", *base, "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["served_thumbprint"] == certs.old.thumbprint
    pfx = ["--pfx", str(certs.pfx), "--password-env", "PFX_PW"]
    planned = runner.invoke(main, ["svarut", "plan", *base, *pfx], env=env)
    assert planned.exit_code == 0, planned.output
    assert "3 change(s)" in planned.output
    refused = runner.invoke(
        main, ["svarut", "apply", *base, *pfx, "--journal-dir", str(journal_dir)], env=env
    )
    assert refused.exit_code == 4
    assert "no terminal to confirm on" in refused.output
    assert _env(lab).count(b"cert.crt") == 1
    applied = runner.invoke(
        main,
        ["svarut", "apply", *base, *pfx, "--yes", "--json", "--journal-dir", str(journal_dir)],
        env=env,
    )
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.output)["result"]["served_thumbprint"] == certs.new.thumbprint
    verified = runner.invoke(main, ["svarut", "verify", *base, *pfx], env=env)
    assert verified.exit_code == 0, verified.output
    wrong = runner.invoke(main, ["svarut", "verify", *base, "--thumbprint", certs.old.thumbprint])
    assert wrong.exit_code == 3
    assert "wrong-certificate" in wrong.output or "expected" in wrong.output
    undone = runner.invoke(
        main, ["svarut", "rollback", *base, "--yes", "--journal-dir", str(journal_dir)]
    )
    assert undone.exit_code == 0, undone.output
    assert certs.old.thumbprint in undone.output
    assert PFX_PASSWORD not in planned.output + applied.output + undone.output


def test_cli_failure_is_one_line_with_exit_code(tmp_path: Path) -> None:
    with LabSvarutHost(tmp_path / "lab") as lab:
        result = CliRunner().invoke(main, ["svarut", "status", *_cli_args(lab)])
    assert result.exit_code == 4
    assert result.output.count("\n") == 1
    assert result.output.startswith("error: no SvarUT installation on 127.0.0.1")


def test_default_env_template_is_what_the_lab_seeds(lab: LabSvarutHost) -> None:
    assert _env(lab).decode() == DEFAULT_ENV.format(cert="cert.crt", key="cert.rsa")


def test_unreachable_host_fails_before_any_journal(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    splan = svarut.plan(lab.target(), _new(certs.new))
    lab.close()
    with pytest.raises(RemoteError, match=r"^cannot connect to svarut@127\.0\.0\.1:\d+"):
        svarut.apply(lab.target(), splan, journal_dir=journal_dir)
    assert not journal_dir.exists()


@pytest.mark.parametrize(
    ("command", "status", "message"),
    [
        (
            "sudo -n -- install -m 600 -- /usr/containers/svarut/prod.env /usr/containers/svarut",
            1,
            "install: /usr/containers/svarut: Is a directory",
        ),
        ("cat /usr/containers/svarut/prod.env; ls /", 2, "sh: ';' is not supported"),
        ("ls / && ls /usr", 2, "sh: '&&' is not supported"),
        ("ls / | cat", 2, "sh: '|' is not supported"),
        ("cat '/usr/containers", 2, "sh: Syntax error: Unterminated quoted string"),
        ("cat /usr/containers/svarut/prod.env /etc/hosts", 2, "cat: unsupported operands"),
        ("frobnicate --now", 127, "sh: frobnicate: not found"),
    ],
)
def test_unsupported_commands_get_an_error_and_the_connection_stays(
    lab: LabSvarutHost, command: str, status: int, message: str
) -> None:
    async def run_both() -> tuple[asyncssh.SSHCompletedProcess, asyncssh.SSHCompletedProcess]:
        async with asyncssh.connect(
            "127.0.0.1",
            lab.ssh_port,
            username=lab.ssh_options().username,
            client_keys=[str(lab.client_key_path)],
            known_hosts=asyncssh.import_known_hosts(f"[127.0.0.1]:{lab.ssh_port} {lab.host_key}"),
        ) as connection:
            refused = await connection.run(command, check=False, timeout=10)
            after = await connection.run("ls /", check=False, timeout=10)
            return refused, after

    refused, after = asyncio.run(run_both())
    assert refused.exit_status == status
    assert message in str(refused.stderr)
    assert after.exit_status == 0  # the same connection still answers


def test_a_pair_nginx_refuses_fails_nginx_t_and_nginx_is_never_restarted(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    before = _env(lab)
    splan = svarut.plan(lab.target(), _new(certs.new), today=TODAY)
    connector = faulty_connector(
        lab.ssh_options(), lambda op, args: False, corrupt=certs.other_issuer.key_pem()
    )
    lab.commands.clear()
    with pytest.raises(ApplyError, match=r"nginx -t refuses the new files.*mismatch") as failure:
        svarut.apply(lab.target(connector=connector), splan, journal_dir=journal_dir)
    assert failure.value.rolled_back
    assert not [c for c in lab.commands if "down" in c or "up" in c]  # nginx kept running
    _assert_restored(lab, certs, before)


def test_the_next_apply_removes_the_staging_folder_of_a_crashed_run(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    staging = "/tmp/cosdoc-certs-0123456789abcdef"  # the host's staging folder
    lab.path(staging).mkdir(mode=0o700)
    lab.path(staging).joinpath("cert-20261129.rsa").write_bytes(certs.new.key_pem())
    crashed = (  # a run whose process is gone: it started its journal and staged, then died
        "from pathlib import Path; from cosdoc_certs.journal import Journal; "
        f"j = Journal.start(kind='svarut', host='127.0.0.1', old_thumbprint=None, "
        f"new_thumbprint=None, directory=Path({str(journal_dir)!r})); "
        f"j.register('stage', path={staging!r})"
    )
    subprocess.run([sys.executable, "-c", crashed], check=True, timeout=60)
    (journal,) = (Journal.load(path) for path in journal_dir.glob("*.json"))
    assert journal.crashed
    splan = svarut.plan(lab.target(), _new(certs.new), today=TODAY)
    progress: list[str] = []
    svarut.apply(lab.target(), splan, journal_dir=journal_dir, progress=progress.append)
    assert not lab.path(staging).exists()
    assert any(staging in line and "crashed run" in line for line in progress)
    assert Journal.load(journal.path).steps[0]["status"] == "undone"


# -- check mode ------------------------------------------------------------------------------


def _tree(lab: LabSvarutHost) -> dict[str, bytes]:
    files = sorted(path for path in lab.sandbox.rglob("*") if path.is_file())
    return {str(path.relative_to(lab.sandbox)): path.read_bytes() for path in files}


def test_check_passes_changes_nothing_and_apply_then_succeeds(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    splan = svarut.plan(lab.target(), _new(certs.new), today=TODAY)
    before, commands = _tree(lab), len(lab.commands)
    found = svarut.check(lab.target(), splan)
    assert found.worst is None, found.to_text()
    assert _tree(lab) == before
    ran = [argv[3] for argv in lab.commands[commands:] if argv[:3] == ("sudo", "-n", "--")]
    assert not {"install", "cp", "rm"} & set(ran)
    assert [v.name for v in found.verdicts] == [
        "sudo",
        "prod.env",
        "certificate folder",
        "prod.env folder",
        "nginx -t",
    ]
    assert svarut.apply(lab.target(), splan, journal_dir=journal_dir).outcome is Outcome.APPLIED


def test_check_finds_the_blockers_apply_would_hit(
    lab: LabSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    splan = svarut.plan(lab.target(), _new(certs.new), today=TODAY)
    env = lab.path(SINGLE.env_path)
    env.write_bytes(env.read_bytes() + b"# edited by hand\n")
    found = svarut.check(lab.target(), splan)
    failed = {v.name: v.message for v in found.verdicts if not v.ok}
    assert list(failed) == ["prod.env"]
    assert "run plan again" in failed["prod.env"]
    with pytest.raises(ApplyError, match="since the plan"):
        svarut.apply(lab.target(), splan, journal_dir=journal_dir)


def test_check_reports_sudo_that_wants_a_password(lab: LabSvarutHost, certs: Certs) -> None:
    splan = svarut.plan(lab.target(), _new(certs.new), today=TODAY)
    lab.faults.sudo_needs_password = True
    found = svarut.check(lab.target(), splan)
    assert found.verdicts[0].name == "sudo"
    assert not found.verdicts[0].ok
    assert "NOPASSWD" in found.verdicts[0].message


def test_svarut_apply_check_on_the_command_line(lab: LabSvarutHost, certs: Certs) -> None:
    arguments = [*_cli_args(lab), "--pfx", str(certs.pfx), "--password-env", "PFX_PW", "--json"]
    runner = CliRunner(env={"PFX_PW": PFX_PASSWORD})
    before = _tree(lab)
    result = runner.invoke(main, ["svarut", "apply", "--check", *arguments])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["check"]["ok"] is True
    assert _tree(lab) == before
    # a host the check cannot even read stops it with the same one-line error as status
    (lab.path(SINGLE.root) / "compose.yaml").rename(lab.path(SINGLE.root) / "moved.yaml")
    result = runner.invoke(main, ["svarut", "apply", "--check", *arguments])
    assert result.exit_code == 4, result.output
    assert "no configuration file provided" in result.output
