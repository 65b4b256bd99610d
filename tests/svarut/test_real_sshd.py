"""SvarUT rotation against a REAL OpenSSH sshd, real sudo and a real nginx (root only).

See real_host.py for the set-up. Every scenario ends verified-rotated or verified-restored:
the TLS endpoint serves the expected certificate, prod.env holds the expected bytes, the key
file is root-owned 0600, and no PFX, password or plaintext key is left anywhere else.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import asyncssh
import pytest

from cosdoc_certs import svarut
from cosdoc_certs.errors import ApplyError, RemoteError
from cosdoc_certs.journal import Outcome
from cosdoc_certs.svarut import SAMDRIFT, SINGLE, Layout, NewCertificate

from .conftest import (
    LOST_CONNECTION_POINTS,
    Certs,
    Trigger,
    faulty_connector,
    find_secrets,
    secret_needles,
)
from .real_host import Installation, RealSvarutHost, missing_tools, running_host

pytestmark = pytest.mark.root

TODAY = date(2026, 11, 29)
GUIDE_ENV = (
    "# SvarUT\nSERVER_NAME=svarut.kommune.no\n"
    "SSL_CERT_FILENAME = {cert}\nSSL_CERT_KEY_FILENAME = {key}\n"
)
SHELL_ENV = (
    "# exported for the shell too\n"
    "export SSL_CERT_FILENAME='{cert}'   # renewed yearly\n"
    'export SSL_CERT_KEY_FILENAME="{key}"\n'
    'DB_PASSWORD="p4ss # word"\n'
)


@pytest.fixture(scope="module")
def real_host() -> Iterator[RealSvarutHost]:
    if os.geteuid() != 0:
        pytest.skip("needs root: starts sshd, adds a user and a sudoers drop-in (CI runs as root)")
    missing = missing_tools()
    assert not missing, f"run scripts/setup-dev as root to install {missing}"
    with running_host() as host:
        yield host


def _install(
    real_host: RealSvarutHost,
    certs: Certs,
    layout: Layout = SINGLE,
    env: str = GUIDE_ENV,
    **kw: str,
) -> Installation:
    return real_host.install(
        layout, cert_pem=certs.old.cert_pem(), key_pem=certs.old.key_pem(), env_template=env, **kw
    )


def _new(certs: Certs) -> NewCertificate:
    return svarut.load_new_certificate([certs.pfx], "Pfx-passord-9271")


def _assert_no_secrets(real_host: RealSvarutHost, certs: Certs, allowed: list[Path]) -> None:
    assert real_host.leftovers_in_tmp() == []
    leaks = find_secrets([real_host.base], secret_needles(certs, certs.new), allowed=allowed)
    assert leaks == []


def _assert_restored(
    real_host: RealSvarutHost, certs: Certs, installation: Installation, env_before: bytes
) -> None:
    assert installation.env.read_bytes() == env_before
    report = svarut.verify(real_host.target(installation), certs.old.thumbprint)
    assert report.ok, report.to_text()
    names = sorted(p.name for p in Path(installation.layout.files_path).iterdir())
    assert names == ["cert.crt", "cert.rsa"]
    _assert_no_secrets(real_host, certs, allowed=[])


@pytest.mark.parametrize(
    ("layout", "env", "ps_format"),
    [(SINGLE, GUIDE_ENV, "lines"), (SAMDRIFT, SHELL_ENV, "array")],
    ids=["single, guide-style prod.env", "samdrift, export/quotes/comments, old compose ps"],
)
def test_rotation_verifies(
    real_host: RealSvarutHost,
    certs: Certs,
    journal_dir: Path,
    layout: Layout,
    env: str,
    ps_format: str,
) -> None:
    installation = _install(real_host, certs, layout, env, ps_format=ps_format)
    target = real_host.target(installation)
    before = installation.env.read_bytes()
    facts = svarut.status(target)
    assert facts.served_thumbprint == certs.old.thumbprint
    assert facts.key_mode == "600 root:root"
    splan = svarut.plan(target, _new(certs), today=TODAY)
    result = svarut.apply(target, splan, journal_dir=journal_dir)
    assert result.outcome is Outcome.APPLIED
    report = svarut.verify(target, certs.new.thumbprint)
    assert report.ok, report.to_text()
    expected = before.replace(b"cert.crt", b"cert-20261129.crt").replace(
        b"cert.rsa", b"cert-20261129.rsa"
    )
    assert installation.env.read_bytes() == expected
    key = installation.file("cert-20261129.rsa").stat()
    assert (stat.S_IMODE(key.st_mode), key.st_uid, key.st_gid) == (0o600, 0, 0)
    assert installation.file("cert.rsa").exists()
    _assert_no_secrets(real_host, certs, allowed=[installation.file("cert-20261129.rsa")])


def test_a_key_that_does_not_match_on_the_host_is_restored(
    real_host: RealSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    installation = _install(real_host, certs)
    before = installation.env.read_bytes()
    splan = svarut.plan(real_host.target(installation), _new(certs), today=TODAY)
    running = _nginx_pids(real_host)
    connector = faulty_connector(
        real_host.ssh_options(), lambda op, args: False, corrupt=certs.other_issuer.key_pem()
    )
    with pytest.raises(ApplyError, match=r"nginx -t refuses the new files.*mismatch") as failure:
        svarut.apply(
            real_host.target(installation, connector=connector), splan, journal_dir=journal_dir
        )
    assert failure.value.rolled_back
    assert _nginx_pids(real_host) == running, "nginx was restarted on files nginx -t refused"
    _assert_restored(real_host, certs, installation, before)


def _nginx_pids(real_host: RealSvarutHost) -> list[str]:
    """The pids of the stand-in's running nginx containers."""
    return sorted(p.read_text() for p in (real_host.base / "state").rglob("container.json"))


def test_container_that_exits_after_up_is_restored(
    real_host: RealSvarutHost, certs: Certs, journal_dir: Path
) -> None:
    installation = _install(real_host, certs, env=SHELL_ENV)
    before = installation.env.read_bytes()
    splan = svarut.plan(real_host.target(installation), _new(certs), today=TODAY)
    real_host.fail_next_up(installation)
    with pytest.raises(ApplyError, match=r"rolled back: .*exited"):
        svarut.apply(real_host.target(installation), splan, journal_dir=journal_dir)
    _assert_restored(real_host, certs, installation, before)


@pytest.mark.parametrize(
    "trigger", LOST_CONNECTION_POINTS.values(), ids=LOST_CONNECTION_POINTS.keys()
)
def test_lost_connection_mid_apply_is_restored(
    real_host: RealSvarutHost, certs: Certs, journal_dir: Path, trigger: Trigger
) -> None:
    installation = _install(real_host, certs)
    before = installation.env.read_bytes()
    splan = svarut.plan(real_host.target(installation), _new(certs), today=TODAY)
    connector = faulty_connector(real_host.ssh_options(), trigger, real_host.break_connection)
    with pytest.raises(ApplyError, match=r"SSH connection to .* broke") as failure:
        svarut.apply(
            real_host.target(installation, connector=connector), splan, journal_dir=journal_dir
        )
    assert failure.value.rolled_back
    _assert_restored(real_host, certs, installation, before)


def test_rollback_after_success(real_host: RealSvarutHost, certs: Certs, journal_dir: Path) -> None:
    installation = _install(real_host, certs)
    before = installation.env.read_bytes()
    target = real_host.target(installation)
    svarut.apply(target, svarut.plan(target, _new(certs)), journal_dir=journal_dir)
    result = svarut.rollback(target, journal_dir=journal_dir)
    assert result.served_thumbprint == certs.old.thumbprint
    _assert_restored(real_host, certs, installation, before)


# -- one clear line each ----------------------------------------------------------------------
def test_wrong_host_key(real_host: RealSvarutHost, certs: Certs) -> None:
    installation = _install(real_host, certs)
    wrong = real_host.client_key.export_public_key().decode().strip()
    target = real_host.target(installation, ssh=real_host.ssh_options(pinned_host_key=wrong))
    with pytest.raises(
        RemoteError, match=rf"^the host key of 127\.0\.0\.1:{real_host.port} does not match"
    ):
        svarut.status(target)


def test_refused_login(real_host: RealSvarutHost, certs: Certs, tmp_path: Path) -> None:
    installation = _install(real_host, certs)
    stranger = tmp_path / "stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
    target = real_host.target(installation, ssh=real_host.ssh_options(client_keys=(str(stranger),)))
    with pytest.raises(RemoteError, match=f"refused the SSH login of {real_host.user}"):
        svarut.status(target)


def test_sudo_needing_a_password(real_host: RealSvarutHost, certs: Certs) -> None:
    installation = _install(real_host, certs)
    real_host.sudo_passwordless(False)
    try:
        with pytest.raises(
            RemoteError, match=rf"^sudo on 127\.0\.0\.1 needs a password for {real_host.user}"
        ):
            svarut.status(real_host.target(installation))
    finally:
        real_host.sudo_passwordless(True)


def test_missing_layout(real_host: RealSvarutHost, tmp_path: Path) -> None:
    empty = real_host.base / "empty"
    empty.mkdir(exist_ok=True)
    target = svarut.SvarutTarget(real_host.ssh_options(), root=str(empty))
    expected = (
        f"no SvarUT installation on 127.0.0.1: no {empty}/prod.env or {empty}/persistent/prod.env"
    )
    with pytest.raises(RemoteError, match=re.escape(expected)):
        svarut.status(target)


def test_channels_are_bounded_below_max_sessions(real_host: RealSvarutHost, certs: Certs) -> None:
    installation = _install(real_host, certs)

    async def many() -> int:
        connection = await svarut.connect(real_host.ssh_options())
        try:
            results = await asyncio.gather(*(connection.run(["true"]) for _ in range(40)))
        finally:
            await connection.close()
        return sum(result.ok for result in results)

    assert asyncio.run(many()) == 40  # 40 at once over one connection: none refused
    assert svarut.status(real_host.target(installation)).all_running


def test_known_hosts_file_and_jump_host(
    real_host: RealSvarutHost, certs: Certs, tmp_path: Path
) -> None:
    installation = _install(real_host, certs)
    known = tmp_path / "known_hosts"
    host_key = real_host.host_key.export_public_key().decode().strip()
    known.write_text(f"[127.0.0.1]:{real_host.port} {host_key}\n")
    ssh = real_host.ssh_options(
        pinned_host_key=None,
        known_hosts=str(known),
        jump_host=f"{real_host.user}@127.0.0.1:{real_host.port}",
    )
    facts = svarut.status(real_host.target(installation, ssh=ssh))
    assert facts.served_thumbprint == certs.old.thumbprint
