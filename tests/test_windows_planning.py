"""Planning a Windows rotation over lab scenarios: scenario + files → expected changes.

The facts come from the lab's gather twin run on a simulated CosDoc server (the same document
the real pypsrp client receives); the files are the lab's renewed certificates, loaded like a
user's PFX files. :func:`rotate_by_hand` carries a plan out with the lab model's own operations
(import, edit, grant, rebind, restart) — the server's start rules then say whether the plan
was right.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cosdoc_certs.appsettings import AppSettings
from cosdoc_certs.certs import CertificateBundle, load_bundle, load_bundle_from_bytes
from cosdoc_certs.consumers import COSDOC_CATALOG, apply_deviations, config_files, service_patterns
from cosdoc_certs.errors import ConfigFileError, InputError
from cosdoc_certs.facts import WindowsFacts
from cosdoc_certs.lab.certs import (
    Issued,
    expired_window,
    make_ssl_certificate,
    make_wrong_usage_certificate,
    not_yet_valid_window,
    to_pfx,
)
from cosdoc_certs.lab.model import Binding, CosDocServer
from cosdoc_certs.lab.scenarios import (
    SCENARIOS,
    LabCertificateFiles,
    LabCertificates,
    LabServer,
    edit_settings,
    make_lab_certificates,
)
from cosdoc_certs.lab.server.store import DEFAULT_PROVIDERS
from cosdoc_certs.lab.twins.gather import gather_document
from cosdoc_certs.plan import Change, ChangeKind, Plan
from cosdoc_certs.windows.planning import plan_windows

HOST = "cosdoc-app01.testkommune.no"
K = ChangeKind


# -- the world ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Renewed:
    """The lab's renewed certificates as files, and how to load them."""

    certificates: LabCertificates
    files: LabCertificateFiles

    def bundle(self, *names: str) -> CertificateBundle:
        """Load ``pair``, ``signing``, ``encryption`` and/or ``ssl`` like a user's PFX files."""
        paths = [getattr(self.files, f"{name}_pfx") for name in names]
        return load_bundle(paths, self.certificates.pfx_password)

    def pfx(self, role: str) -> bytes:
        """The PFX file holding the renewed ``role`` certificate."""
        return Path(getattr(self.files, f"{role}_pfx")).read_bytes()


@pytest.fixture(scope="module")
def renewed(tmp_path_factory: pytest.TempPathFactory) -> Renewed:
    certificates = make_lab_certificates()
    return Renewed(certificates, certificates.write_files(tmp_path_factory.mktemp("pfx")))


@pytest.fixture
def build(renewed: Renewed) -> Iterator[Callable[[str], LabServer]]:
    servers: list[LabServer] = []

    def make(scenario: str) -> LabServer:
        servers.append(SCENARIOS[scenario](None, certificates=renewed.certificates))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def facts_of(server: CosDocServer) -> WindowsFacts:
    """What gather.ps1 reports for ``server`` (the lab twin's document)."""
    document = gather_document(
        server, service_patterns(COSDOC_CATALOG), config_files(COSDOC_CATALOG)
    )
    return WindowsFacts.from_document(document)


def rotate_by_hand(server: CosDocServer, plan: Plan, renewed: Renewed) -> None:
    """Carry ``plan`` out with the model's operations, as a person at the console would."""
    for change in plan.actions:
        details = change.details
        if change.kind is K.IMPORT_CERT:
            imported = server.store.import_pfx(
                renewed.pfx(details["role"]), renewed.certificates.pfx_password
            )
            assert details["thumbprint"] in imported
        elif change.kind is K.EDIT_CONFIG_KEY:
            before = server.files.read(details["file"])
            assert hashlib.sha256(before).hexdigest() == details["sha256_before"]
            values = {edit["path"]: edit["new"] for edit in details["edits"]}
            after = AppSettings.parse(before).replace(values)
            assert hashlib.sha256(after).hexdigest() == details["sha256_after"]
            server.files.write(details["file"], after)
        elif change.kind is K.GRANT_KEY_READ:
            server.store.grant_read(details["thumbprint"], details["account"])
        elif change.kind is K.REBIND_HTTPS:
            server.set_binding_certificate(
                details["site"], details["binding"], details["new_thumbprint"]
            )
        elif change.kind is K.RESTART_SERVICE:
            server.restart_service(details["service"])
        elif change.kind is K.RECYCLE_POOL:
            if details["state"] == "Stopped":
                server.start_app_pool(details["pool"])
            else:
                server.recycle_app_pool(details["pool"])


def kinds(plan: Plan) -> Counter[str]:
    """How many changes of each kind the plan has (no-ops included)."""
    return Counter(str(change.action) for change in plan.changes)


def of_kind(plan: Plan, kind: ChangeKind) -> list[Change]:
    return [change for change in plan.changes if change.kind is kind]


# -- the table ------------------------------------------------------------------------------

FULL = {
    "import-cert": 3,
    "edit-config-key": 6,
    "grant-key-read": 10,
    "rebind-https": 3,
    "restart-service": 4,
    "recycle-pool": 2,
    "manual-step": 1,
}
PAIR_ONLY = {
    "import-cert": 2,
    "edit-config-key": 6,
    "grant-key-read": 9,
    "restart-service": 4,
    "recycle-pool": 2,
    "manual-step": 1,
    "noop": 1,
}
SSL_ONLY = {
    "import-cert": 1,
    "edit-config-key": 1,
    "grant-key-read": 1,
    "rebind-https": 3,
    "recycle-pool": 1,
    "noop": 4,
}


@pytest.mark.parametrize(
    ("scenario", "files", "expected", "noop_reasons"),
    [
        pytest.param("default", ("pair", "ssl"), FULL, [], id="default-full"),
        pytest.param("default", ("signing", "encryption", "ssl"), FULL, [], id="three-files"),
        pytest.param("cng-keys", ("pair", "ssl"), FULL, [], id="cng"),
        pytest.param("capi-keys", ("pair", "ssl"), FULL, [], id="capi"),
        pytest.param("deviating-paths", ("pair", "ssl"), FULL, [], id="deviating-paths"),
        pytest.param("missing-acl", ("pair", "ssl"), FULL, [], id="missing-acl"),
        pytest.param("wrong-role", ("pair", "ssl"), FULL, [], id="wrong-role-repaired"),
        pytest.param(
            "default",
            ("pair",),
            PAIR_ONLY,
            ["IIS HTTPS bindings: the files hold no SSL certificate"],
            id="pair-only",
        ),
        pytest.param(
            "default",
            ("ssl",),
            SSL_ONLY,
            [
                "Digihelse: the files hold no encryption and signing certificate",
                "KPR: the files hold no encryption and signing certificate",
                "SkatteIntegrasjonApi: the files hold no signing certificate",
                "E-meldinger: the files hold no signing and encryption certificate",
            ],
            id="ssl-only",
        ),
        pytest.param(
            "samdrift",
            ("pair", "ssl"),
            {**FULL, "noop": 3},
            [
                "Authentication: CosDoc Drift Nabokommune/Authentication uses certificates of "
                "«Nabokommune» (organisation number 987654321)",
                "SkatteIntegrasjonApi: CosDoc Drift Nabokommune/SkatteIntegrasjonApi uses "
                "certificates of «Nabokommune»",
                "IIS HTTPS bindings: https *:443:cosdoc.nabokommune.no (CosDoc Drift Nabokommune) "
                "is for cosdoc.nabokommune.no, which the new SSL certificate",
            ],
            id="samdrift",
        ),
    ],
)
def test_plan_by_scenario(
    build: Callable[[str], LabServer],
    renewed: Renewed,
    scenario: str,
    files: tuple[str, ...],
    expected: dict[str, int],
    noop_reasons: list[str],
) -> None:
    server = build(scenario)
    plan = plan_windows(facts_of(server), renewed.bundle(*files), host=HOST)
    assert kinds(plan) == Counter(expected)
    reasons = [f"{change.consumer}: {change.noop_reason}" for change in plan.noops]
    assert len(reasons) == len(noop_reasons)
    for reason, wanted in zip(reasons, noop_reasons, strict=True):
        assert reason.startswith(wanted), reasons
    rotate_by_hand(server, plan, renewed)
    # the server's own start rules accept the result: everything runs on the new certificates
    assert all(s.state == "Running" for s in server.services.values())
    assert all(p.state == "Started" for p in server.app_pools.values())
    assert plan_windows(facts_of(server), renewed.bundle(*files), host=HOST).is_empty


def test_changes_come_in_execution_order(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    plan = plan_windows(facts_of(build("default")), renewed.bundle("pair", "ssl"), host=HOST)
    order = [
        K.IMPORT_CERT,
        K.EDIT_CONFIG_KEY,
        K.GRANT_KEY_READ,
        K.REBIND_HTTPS,
        K.RESTART_SERVICE,
        K.MANUAL_STEP,
        K.NOOP,
    ]
    rank = {kind: index for index, kind in enumerate(order)}
    rank[K.RECYCLE_POOL] = rank[K.RESTART_SERVICE]
    ranks = [rank[ChangeKind(change.action)] for change in plan.changes]
    assert ranks == sorted(ranks)
    assert {change.host for change in plan.changes} == {HOST}


def test_every_key_gets_the_thumbprint_of_its_role(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    server = build("default")
    plan = plan_windows(facts_of(server), renewed.bundle("pair", "ssl"), host=HOST)
    new = {
        "signing": renewed.certificates.renewed.signing.thumbprint,
        "encryption": renewed.certificates.renewed.encryption.thumbprint,
        "ssl": renewed.certificates.renewed_ssl.thumbprint,
    }
    wanted_role = {
        "$.CertSettings.EncryptionThumbprint": "encryption",
        "$.CertSettings.SigningThumbprint": "signing",
        "$.ClientCertThumbprint": "encryption",
        "$.SigningCertificateThumbprint": "signing",
        "$.SSLCertificateThumbprint": "ssl",
        "$.MaskinportenConfig.SertifikatAvtrykk": "signing",
    }
    edited = {}
    for change in of_kind(plan, K.EDIT_CONFIG_KEY):
        for edit in change.details["edits"]:
            assert edit["role"] == wanted_role[edit["path"]]
            assert edit["new"] == new[edit["role"]]
            edited[(change.details["file"], edit["path"])] = edit
    files = {s.settings_file for s in server.services.values()}
    files |= {
        f"C:\\inetpub\\CosDoc\\Drift\\{app}\\appsettings.json"
        for app in ("Authentication", "SkatteIntegrasjonApi")
    }
    assert {file for file, _ in edited} == files
    assert len(edited) == 4 * 2 + 3 + 1
    overvaker = server.service("KPR.Overvaker").settings_file
    old = edited[(overvaker, "$.CertSettings.SigningThumbprint")]["old"]
    assert old == "<U+200E>" + renewed.certificates.current.signing.thumbprint
    (change,) = [c for c in plan.changes if c.details.get("file") == overvaker]
    assert change.diff is not None
    assert '-    "SigningThumbprint": "<U+200E>' in change.diff


def test_grants_go_to_each_account_that_uses_a_new_key(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    plan = plan_windows(facts_of(build("default")), renewed.bundle("pair", "ssl"), host=HOST)
    grants = {(c.details["account"], c.details["role"]) for c in of_kind(plan, K.GRANT_KEY_READ)}
    pair = {"signing", "encryption"}
    expected = {(a, r) for a in ("DOMENE\\svc-digihelse", "DOMENE\\svc-kpr") for r in pair}
    expected |= {("NT AUTHORITY\\NETWORK SERVICE", r) for r in pair}  # the server's own name
    expected |= {("DOMENE\\svc-cosdoc-auth", r) for r in (*pair, "ssl")}
    expected |= {("IIS AppPool\\SkatteIntegrasjonApi Drift", "signing")}
    assert grants == expected
    services = {c.details["service"] for c in of_kind(plan, K.RESTART_SERVICE)}
    assert services == {
        "Digihelse.Meldingstjeneste",
        "Digihelse.Adressering",
        "KPR.Innsending",
        "KPR.Overvaker",
    }
    pools = {c.details["pool"] for c in of_kind(plan, K.RECYCLE_POOL)}
    assert pools == {"Authentication Drift", "SkatteIntegrasjonApi Drift"}


def test_the_test_site_applications_are_not_touched(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    plan = plan_windows(facts_of(build("samdrift")), renewed.bundle("pair", "ssl"), host=HOST)
    touched = [
        str(change.details.get(field))
        for change in plan.actions
        for field in ("file", "instance", "instances", "pool", "service")
        if field in change.details
    ]
    assert touched
    for where in touched:
        assert "\\Test\\" not in where
        assert "Test'" not in where
        assert not where.endswith(" Test")
        assert "Nabokommune" not in where
    rebound = {c.details["binding"] for c in of_kind(plan, K.REBIND_HTTPS)}
    assert rebound == {"*:443:cosdoc.testkommune.no", "*:443:", "*:443:cosdoc-test.testkommune.no"}


@pytest.mark.parametrize("key_storage", ["CNG", "CAPI"])
def test_a_certificate_already_imported_is_granted_only_where_needed(
    build: Callable[[str], LabServer], renewed: Renewed, key_storage: str
) -> None:
    server = build("default")
    new = renewed.certificates.renewed
    server.store.import_pfx(
        renewed.pfx("pair"),
        renewed.certificates.pfx_password,
        default_provider=DEFAULT_PROVIDERS[key_storage],
    )
    server.store.grant_read(new.signing.thumbprint, "DOMENE\\svc-digihelse")
    folder = {"CNG": "Crypto\\Keys", "CAPI": "Crypto\\RSA\\MachineKeys"}[key_storage]
    server.store.grant_read(new.encryption.thumbprint, "BUILTIN\\IIS_IUSRS")
    plan = plan_windows(facts_of(server), renewed.bundle("pair"), host=HOST)
    assert not of_kind(plan, K.IMPORT_CERT)
    grants = {(c.details["account"], c.details["role"]) for c in of_kind(plan, K.GRANT_KEY_READ)}
    assert ("DOMENE\\svc-digihelse", "signing") not in grants
    assert ("DOMENE\\svc-digihelse", "encryption") in grants
    assert ("IIS AppPool\\SkatteIntegrasjonApi Drift", "signing") in grants
    assert ("DOMENE\\svc-cosdoc-auth", "signing") in grants
    assert ("DOMENE\\svc-cosdoc-auth", "encryption") in grants  # a SpecificUser is no IIS_IUSRS
    for change in of_kind(plan, K.GRANT_KEY_READ):
        assert f"its key file in {folder}" in change.summary


def test_a_rotated_server_plans_only_noops_with_reasons(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    server = build("default")
    bundle = renewed.bundle("pair", "ssl")
    rotate_by_hand(server, plan_windows(facts_of(server), bundle, host=HOST), renewed)
    again = plan_windows(facts_of(server), bundle, host=HOST)
    assert again.is_empty
    reasons = {(change.consumer, change.noop_reason) for change in again.noops}
    signing = renewed.certificates.renewed.signing.thumbprint
    assert (
        "Digihelse",
        f"Digihelse.Meldingstjeneste already uses "
        f"{renewed.certificates.renewed.encryption.thumbprint[:4]}…"
        f"{renewed.certificates.renewed.encryption.thumbprint[-4:]} (encryption), "
        f"{signing[:4]}…{signing[-4:]} (signing), and DOMENE\\svc-digihelse can read the keys",
    ) in reasons
    consumers = Counter(change.consumer for change in again.noops)
    assert consumers == {
        "Digihelse": 2,
        "KPR": 2,
        "Authentication": 1,
        "SkatteIntegrasjonApi": 1,
        "IIS HTTPS bindings": 3,
        "E-meldinger": 1,
    }
    (manual,) = [c for c in again.noops if c.consumer == "E-meldinger"]
    assert manual.noop_reason is not None
    assert "already uses the new certificates" in manual.noop_reason
    assert "Velg" in manual.noop_reason


def test_a_stopped_pool_is_started_instead_of_recycled(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    server = build("default")
    server.stop_app_pool("SkatteIntegrasjonApi Drift")
    plan = plan_windows(facts_of(server), renewed.bundle("pair"), host=HOST)
    (change,) = [c for c in of_kind(plan, K.RECYCLE_POOL) if "Skatte" in c.details["pool"]]
    assert change.details["state"] == "Stopped"
    assert change.summary.startswith("start the app pool SkatteIntegrasjonApi Drift")
    assert "it is stopped now" in change.summary


def test_the_manual_step_shows_what_to_compare(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    plan = plan_windows(facts_of(build("default")), renewed.bundle("pair"), host=HOST)
    (step,) = of_kind(plan, K.MANUAL_STEP)
    pair = renewed.bundle("pair")
    for role in ("signing", "encryption"):
        info = pair.signing if role == "signing" else pair.encryption
        assert info is not None
        compare = step.details["compare"][role]
        assert compare["serial"] == info.serial_number
        assert compare["issued_to"] == info.issued_to
        assert compare["not_after"] == info.not_after.isoformat()
        assert compare["not_before"] == info.not_before.isoformat()
    assert "DIPS Communicator" in step.details["instructions"]


def test_the_plan_is_json_and_carries_no_secret(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    plan = plan_windows(facts_of(build("default")), renewed.bundle("pair", "ssl"), host=HOST)
    text = plan.to_json()
    assert Plan.from_dict(json.loads(text)).to_dict() == plan.to_dict()
    for secret in (renewed.certificates.pfx_password, "Lab-Sommer2024!", "Lab-Kpr-2024"):
        assert secret not in text
        assert secret not in plan.to_text()
    assert "Windows rotation on" in repr(plan)
    assert "<table>" in plan._repr_html_()


def test_a_deviation_moves_authentication_to_the_test_site(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    consumers = apply_deviations("[consumers.Authentication]\nenvironment = 'Test'\n")
    plan = plan_windows(
        facts_of(build("default")), renewed.bundle("pair", "ssl"), consumers, host=HOST
    )
    files = {c.details["file"] for c in of_kind(plan, K.EDIT_CONFIG_KEY)}
    assert "C:\\inetpub\\CosDoc\\Test\\Authentication\\appsettings.json" in files
    assert "C:\\inetpub\\CosDoc\\Drift\\Authentication\\appsettings.json" not in files
    assert {c.details["pool"] for c in of_kind(plan, K.RECYCLE_POOL)} == {
        "Authentication Test",
        "SkatteIntegrasjonApi Drift",
    }


# -- refusals -------------------------------------------------------------------------------


def _pfx_bundle(renewed: Renewed, issued: Issued, name: str) -> CertificateBundle:
    password = renewed.certificates.pfx_password
    return load_bundle_from_bytes([(name, to_pfx(issued, password.encode()))], password)


def _expired_ssl(renewed: Renewed) -> CertificateBundle:
    hosts = ("cosdoc.testkommune.no",)
    issued = make_ssl_certificate(renewed.certificates.ca, hosts, **expired_window())
    return _pfx_bundle(renewed, issued, "old-ssl.pfx")


def _future_ssl(renewed: Renewed) -> CertificateBundle:
    hosts = ("cosdoc.testkommune.no",)
    issued = make_ssl_certificate(renewed.certificates.ca, hosts, **not_yet_valid_window())
    return _pfx_bundle(renewed, issued, "future-ssl.pfx")


def _wrong_usage(renewed: Renewed) -> CertificateBundle:
    issued = make_wrong_usage_certificate(renewed.certificates.ca)
    return _pfx_bundle(renewed, issued, "odd.pfx")


def _no_key(renewed: Renewed) -> CertificateBundle:
    pair = renewed.certificates.renewed
    pem = pair.signing.cert_pem() + pair.encryption.cert_pem()
    return load_bundle_from_bytes([("pair.cer", pem)])


def _two_signing(renewed: Renewed) -> CertificateBundle:
    password = renewed.certificates.pfx_password.encode()
    blobs = [
        ("new.pfx", renewed.pfx("signing")),
        ("old.pfx", to_pfx(renewed.certificates.current.signing, password)),
    ]
    return load_bundle_from_bytes(blobs, password)


@pytest.mark.parametrize(
    ("make_bundle", "problem", "hint"),
    [
        pytest.param(
            lambda r: r.bundle("signing"),
            "the files hold the signing certificate but not the encryption one",
            "add the file with the Buypass encryption",
            id="half-pair",
        ),
        pytest.param(_expired_ssl, "expired on", "renewed certificate", id="expired"),
        pytest.param(_future_ssl, "is not valid until", "clocks", id="not-yet-valid"),
        pytest.param(_wrong_usage, "fits no CosDoc role", "signing and encryption", id="no-role"),
        pytest.param(_no_key, "has no private key", "PFX/P12", id="no-key"),
        pytest.param(_two_signing, "2 certificates claim the signing role", "only", id="two"),
    ],
)
def test_unusable_files_are_refused(
    build: Callable[[str], LabServer],
    renewed: Renewed,
    make_bundle: Callable[[Renewed], CertificateBundle],
    problem: str,
    hint: str,
) -> None:
    facts = facts_of(build("default"))
    with pytest.raises(InputError) as refused:
        plan_windows(facts, make_bundle(renewed), host=HOST)
    assert problem in refused.value.problem
    assert hint in refused.value.hint


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(None, "does not exist", id="missing"),
        pytest.param(
            b'{\n  "CertSettings": {\n    "SigningThumbprint": \n',
            "json:4:1: expected a value",
            id="malformed",
        ),
        pytest.param(b'{ "CertSettings": { "EncryptionThumbprint": "AB" } }', "no ", id="no-key"),
    ],
)
def test_a_config_file_that_cannot_be_edited_is_refused(
    build: Callable[[str], LabServer], renewed: Renewed, content: bytes | None, problem: str
) -> None:
    server = build("default")
    settings = server.service("Digihelse.Adressering").settings_file
    if content is None:
        server.files.delete(settings)
    else:
        server.files.write(settings, content)
    with pytest.raises(ConfigFileError) as refused:
        plan_windows(facts_of(server), renewed.bundle("pair"), host=HOST)
    assert refused.value.problem.startswith("Digihelse Digihelse.Adressering: ")
    assert problem in refused.value.problem
    assert "nothing was changed" in refused.value.hint


def test_a_config_problem_outside_the_rotated_roles_is_no_reason_to_refuse(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    server = build("default")
    server.files.delete(server.service("Digihelse.Adressering").settings_file)
    plan = plan_windows(facts_of(server), renewed.bundle("ssl"), host=HOST)
    assert not [c for c in plan.actions if c.consumer == "Digihelse"]


def test_a_certificate_in_the_store_with_its_key_needs_no_key_in_the_files(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    server = build("default")
    server.store.import_pfx(renewed.pfx("pair"), renewed.certificates.pfx_password)
    plan = plan_windows(facts_of(server), _no_key(renewed), host=HOST)
    assert not of_kind(plan, K.IMPORT_CERT)
    assert len(of_kind(plan, K.EDIT_CONFIG_KEY)) == 6


def test_a_lower_case_value_of_the_new_certificate_is_rewritten(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    server = build("default")
    bundle = renewed.bundle("pair", "ssl")
    rotate_by_hand(server, plan_windows(facts_of(server), bundle, host=HOST), renewed)
    settings = "C:\\inetpub\\CosDoc\\Drift\\Authentication\\appsettings.json"
    lower = renewed.certificates.renewed_ssl.thumbprint.lower()
    edit_settings(server, settings, {"SSLCertificateThumbprint": lower})
    plan = plan_windows(facts_of(server), bundle, host=HOST)
    assert kinds(plan) - Counter(noop=99) == Counter({"edit-config-key": 1, "recycle-pool": 1})
    (edit,) = of_kind(plan, K.EDIT_CONFIG_KEY)
    assert edit.details["edits"] == (
        {
            "path": "$.SSLCertificateThumbprint",
            "role": "ssl",
            "old": lower,
            "new": lower.upper(),
        },
    )


def test_a_shared_non_sni_entry_is_rebound_once_and_says_so(
    build: Callable[[str], LabServer], renewed: Renewed
) -> None:
    server = build("default")
    current = renewed.certificates.current_ssl.thumbprint
    server.site("CosDoc Test").bindings.append(Binding("https", "*", 443, "", 0, current))
    plan = plan_windows(facts_of(server), renewed.bundle("ssl"), host=HOST)
    shared = [c for c in of_kind(plan, K.REBIND_HTTPS) if not c.details["sni"]]
    (change,) = shared
    assert change.details["binding"] == "*:443:"
    assert change.details["shared_with"] == ("*:443:",)
    assert "shared by every site on it (also https *:443: (CosDoc Test))" in change.summary
    rotate_by_hand(server, plan, renewed)
    new = renewed.certificates.renewed_ssl.thumbprint
    assert {b.thumbprint for _, b in server.bindings() if b.protocol == "https"} == {new}
