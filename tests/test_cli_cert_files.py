"""``export-public`` and ``make-test-certs``: files written, keys never leaked."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from cosdoc_certs.certs import Role, load_bundle
from cosdoc_certs.cli import main
from cosdoc_certs.lab import certs as lab

PASSWORD = "Testpassord-for-filer-9"
ENV = "COSDOC_TEST_PFX_PASSWORD"


@pytest.fixture(scope="module")
def test_files(tmp_path_factory: pytest.TempPathFactory) -> lab.TestFiles:
    folder = tmp_path_factory.mktemp("certs")
    return lab.write_test_files(folder, PASSWORD.encode())


def test_export_public_writes_pem_and_der_by_role(
    tmp_path: Path, test_files: lab.TestFiles
) -> None:
    out = tmp_path / "nhn"
    result = CliRunner().invoke(
        main,
        [
            "export-public",
            "--password-env",
            ENV,
            "--out",
            str(out),
            str(test_files.pair_pfx),
            str(test_files.ssl_pfx),
        ],
        env={ENV: PASSWORD},
    )
    assert result.exit_code == 0, result.output
    names = sorted(path.name for path in out.iterdir())
    assert names == [
        "encryption.cer",
        "encryption.pem",
        "signing.cer",
        "signing.pem",
        "ssl.cer",
        "ssl.pem",
    ]
    bundle = load_bundle([test_files.pair_pfx], PASSWORD)
    signing = bundle.require(Role.SIGNING)
    assert x509.load_der_x509_certificate((out / "signing.cer").read_bytes()) == signing.certificate
    assert x509.load_pem_x509_certificate((out / "signing.pem").read_bytes()) == signing.certificate
    for path in out.iterdir():
        assert b"PRIVATE KEY" not in path.read_bytes()
    assert signing.thumbprint in result.output
    assert PASSWORD not in result.output


def test_export_public_json_and_duplicate_roles(tmp_path: Path, test_files: lab.TestFiles) -> None:
    other = lab.make_enterprise_pair(lab.default_ca()).signing
    extra = tmp_path / "old.pem"
    extra.write_bytes(other.cert_pem())
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "export-public",
            "--json",
            "--password-env",
            ENV,
            "--out",
            str(out),
            str(test_files.signing_pfx),
            str(extra),
        ],
        env={ENV: PASSWORD},
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert sorted(Path(entry["der"]).name for entry in document) == sorted(
        f"signing-{entry['thumbprint'][:8]}.cer" for entry in document
    )


def test_make_test_certs_with_generated_password(tmp_path: Path) -> None:
    out = tmp_path / "test-certs"
    result = CliRunner().invoke(main, ["make-test-certs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "Generated PFX password" in line)
    password = line.rsplit(" ", 1)[1]
    assert result.output.count(password) == 1
    bundle = load_bundle([out / "enterprise-pair.p12", out / "ssl.pfx"], password)
    assert [info.role for info in bundle] == [Role.SIGNING, Role.ENCRYPTION, Role.SSL]
    assert all(info.has_private_key for info in bundle)
    assert bundle.findings == ()
    for name in ("signing.p12", "encryption.p12", "ssl.key", "enterprise-pair.p12"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600


def test_make_test_certs_with_password_env_prints_no_password(tmp_path: Path) -> None:
    out = tmp_path / "legacy"
    result = CliRunner().invoke(
        main,
        [
            "make-test-certs",
            "--out",
            str(out),
            "--password-env",
            ENV,
            "--legacy",
            "--organisation",
            "Fjellkommune",
            "--organisation-number",
            "987654321",
        ],
        env={ENV: PASSWORD},
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert "Generated" not in result.output
    signing = load_bundle([out / "signing.p12"], PASSWORD).require(Role.SIGNING)
    assert signing.organisation_number == "987654321"
    assert signing.issued_to == "Fjellkommune"


def test_make_test_certs_never_replaces_files(tmp_path: Path) -> None:
    (tmp_path / "signing.p12").write_bytes(b"the customer's real certificate")
    result = CliRunner().invoke(main, ["make-test-certs", "--out", str(tmp_path)])
    assert result.exit_code == 4
    assert "already has signing.p12" in result.stderr
    assert "--force" in result.stderr
    assert "overwrite=True" not in result.stderr
    assert (tmp_path / "signing.p12").read_bytes() == b"the customer's real certificate"
