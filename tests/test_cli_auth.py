"""A whole rotation — status, plan, apply, verify, rollback — over each WinRM authentication.

The lab answers like a default Windows Server (HTTP: Negotiate/NTLM/Kerberos with every
message sealed; HTTPS: also Basic for the local account and certificate authentication), and
the CLI is run as a consultant would run it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cosdoc_certs import rotation
from cosdoc_certs.cli import main
from cosdoc_certs.lab.kerberos import SERVICE_HOST, LabRealm
from cosdoc_certs.lab.runner import Lab

pytestmark = pytest.mark.timeout(180)

WINRM_PASSWORD_ENV = "LAB_WINRM_PASSWORD"
PFX_PASSWORD_ENV = "LAB_PFX_PASSWORD"
AUTHS = ["negotiate-http", "ntlm-http", "kerberos-http", "basic-https", "certificate-https"]


@pytest.fixture(params=AUTHS)
def auth(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def auth_lab(auth: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    keytab = None
    if auth.startswith("kerberos"):
        realm: LabRealm = request.getfixturevalue("kerberos_ticket")
        keytab = realm.keytab
    with Lab(root=tmp_path / "lab", svarut=False, keytab=keytab) as lab:
        yield lab


def _winrm(lab: Lab, auth: str) -> list[str]:
    info = lab.connection_info()
    password = ["--user", info.username, "--winrm-password-env", WINRM_PASSWORD_ENV]
    https = ["--port", str(info.https_port), "--ca-bundle", str(info.ca_file)]
    http = ["--port", str(info.http_port), "--http"]
    return {
        "negotiate-http": ["--host", info.host, *http, *password],
        "ntlm-http": ["--host", info.host, *http, "--auth", "ntlm", *password],
        "kerberos-http": ["--host", SERVICE_HOST, *http, "--auth", "kerberos", "--delegate"],
        "basic-https": ["--host", info.host, *https, "--auth", "basic", *password],
        "certificate-https": [
            *("--host", info.host, *https, "--auth", "certificate"),
            *("--client-cert", str(info.client_certificate)),
            *("--client-key", str(info.client_key)),
        ],
    }[auth]


def _installation(lab: Lab, auth: str) -> list[str]:
    info = lab.connection_info()
    endpoints = [f"--tls-endpoint={key}={value}" for key, value in info.tls_endpoints.items()]
    return ["--name", "testkommune", *_winrm(lab, auth), *endpoints]


def _run(lab: Lab, *arguments: str) -> Result:
    info = lab.connection_info()
    env = {WINRM_PASSWORD_ENV: info.password, PFX_PASSWORD_ENV: info.pfx_password}
    return CliRunner(env=env).invoke(main, list(arguments), catch_exceptions=False)


def test_status_plan_apply_verify_rollback(auth_lab: Lab, auth: str, tmp_path: Path) -> None:
    lab, info = auth_lab, auth_lab.connection_info()
    pfx = ["--pfx", str(info.pfx_files["pair"]), "--pfx", str(info.pfx_files["ssl"])]
    pfx += ["--password-env", PFX_PASSWORD_ENV]
    journals = ["--journal-dir", str(tmp_path / "journals")]
    before = rotation.installation_status(rotation.lab_target(info))

    looked = _run(lab, "status", *_winrm(lab, auth), "--json")
    assert looked.exit_code in (0, 1, 3), looked.output
    assert json.loads(looked.stdout)["computer_name"] == "COSDOC-APP01"
    planned = _run(lab, "plan", *_installation(lab, auth), *pfx, "--json")
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["changes"]
    applied = _run(lab, "apply", *_installation(lab, auth), *pfx, "--yes", *journals, "--json")
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["result"]["outcome"] == "applied"
    verified = _run(lab, "verify", *_installation(lab, auth), *journals)
    assert verified.exit_code == 0, verified.output
    undone = _run(lab, "rollback", *_installation(lab, auth), "--yes", *journals)
    assert undone.exit_code == 0, undone.output
    assert before.differences(rotation.installation_status(rotation.lab_target(info))) == []

    endpoint = lab.https if auth.endswith("https") else lab.http
    assert endpoint.recorder.faults["Unauthorized"] == 0
    assert {run.call.name for run in endpoint.recorder.scripts} >= {"gather", "apply"}
    if auth.endswith("http"):
        mechanism = "kerberos" if auth.startswith("kerberos") else "ntlm"
        assert {done.protocol for done in endpoint.auth.authentications} == {mechanism}
