"""Key providers end to end: the plan's choice, the PFX attribute, the import, the consumer.

Each case of the matrix builds a lab installation whose Digihelse services open their keys
one way (CAPI-only .NET Framework, CNG-only, or a CAPI signer whose current key sits in a
legacy PROV_RSA_FULL provider), writes the renewed pair as PFX files naming one provider (or
none), plans and applies the rotation over the real pypsrp client, and checks the planned
provider, the provider the key landed in, and that the Digihelse services run afterwards.
The import action's other duties are here too: a certificate that has its key by now is not
imported again, only the leaf goes into ``My``, missing intermediates go to the CA store (and
out again on rollback), and a key that lands in another provider fails the run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from asn1crypto import pkcs12
from click.testing import CliRunner

from cosdoc_certs.certs import CertificateBundle, Role, load_bundle
from cosdoc_certs.certs.model import is_ca, thumbprint_of, utc_now
from cosdoc_certs.certs.pkcs12 import csp_name_of, parse_pfx, read_pfx, serialize_pfx
from cosdoc_certs.certs.providers import (
    ENHANCED_RSA_AES,
    ENHANCED_V1,
    SOFTWARE_KSP,
    KeyApi,
    provider_from_option,
)
from cosdoc_certs.cli import main
from cosdoc_certs.cli.rotate import key_providers_from
from cosdoc_certs.consumers import COSDOC_CATALOG, Consumer, ServiceConsumer
from cosdoc_certs.errors import ApplyError, InputError
from cosdoc_certs.facts import WindowsFacts, diagnose
from cosdoc_certs.journal import Journal, Outcome
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import (
    LabCertificates,
    LabServer,
    key_provider_installation,
    make_lab_certificates,
)
from cosdoc_certs.plan import ChangeKind, Plan
from cosdoc_certs.status import gather
from cosdoc_certs.windows.apply import (
    WindowsApplyResult,
    apply_windows,
    compile_windows_plan,
    rollback_windows,
)
from cosdoc_certs.windows.connection import WindowsHost
from cosdoc_certs.windows.planning import choose_key_provider, plan_windows

HOST = "cosdoc-app01.testkommune.no"
DIGIHELSE = ("Digihelse.Meldingstjeneste", "Digihelse.Adressering")
PAIR = (Role.SIGNING, Role.ENCRYPTION)

INCOMING = {
    "capi-aes": ENHANCED_RSA_AES,
    "cng": SOFTWARE_KSP,
    "legacy-rsa-full": ENHANCED_V1,
    "no-attribute": None,
}


@dataclasses.dataclass(frozen=True)
class ConsumerCase:
    """How Digihelse opens keys, where its current keys are, and where the new ones must go."""

    key_api: KeyApi
    current: dict[str, str]
    expected: dict[Role, str]


CONSUMERS = {
    # a .NET Framework build (X509Certificate2.PrivateKey): CAPI keys only
    "needs-capi": ConsumerCase(
        KeyApi.CAPI,
        {"signing": ENHANCED_RSA_AES, "encryption": ENHANCED_V1},
        {Role.SIGNING: ENHANCED_RSA_AES, Role.ENCRYPTION: ENHANCED_V1},
    ),
    # casts the key to RSACng: CNG keys only
    "needs-cng": ConsumerCase(
        KeyApi.CNG,
        {"signing": SOFTWARE_KSP, "encryption": SOFTWARE_KSP},
        {Role.SIGNING: SOFTWARE_KSP, Role.ENCRYPTION: SOFTWARE_KSP},
    ),
    # a CAPI signer whose current signing key is in a legacy PROV_RSA_FULL provider: it cannot
    # sign with SHA-256 today; the new key must not repeat that
    "needs-sha256": ConsumerCase(
        KeyApi.CAPI,
        {"signing": ENHANCED_V1, "encryption": ENHANCED_RSA_AES},
        {Role.SIGNING: ENHANCED_RSA_AES, Role.ENCRYPTION: ENHANCED_RSA_AES},
    ),
}


@pytest.fixture(scope="module")
def certificates() -> LabCertificates:
    """Current, previous and renewed lab certificates, made once for this module."""
    return make_lab_certificates()


def _consumers(key_api: KeyApi) -> tuple[Consumer, ...]:
    """The catalog with Digihelse marked as opening keys with ``key_api`` (a deviation)."""
    return tuple(
        dataclasses.replace(c, key_api=key_api)
        if isinstance(c, ServiceConsumer) and c.name == "Digihelse"
        else c
        for c in COSDOC_CATALOG
    )


def _write_pair(
    folder: Path, certificates: LabCertificates, provider: str | None
) -> CertificateBundle:
    """The renewed pair as two PFX files (with their chain) naming ``provider``; loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    password = certificates.pfx_password.encode()
    paths = []
    for issued in (certificates.renewed.signing, certificates.renewed.encryption):
        path = folder / f"{issued.thumbprint}.pfx"
        path.write_bytes(
            serialize_pfx(
                issued.private_key,  # type: ignore[arg-type]
                issued.certificate,
                issued.chain,
                password,
                name=b"renewed",
                provider=provider,
            )
        )
        paths.append(path)
    return load_bundle(paths, password)


@dataclasses.dataclass
class Rotation:
    """A running lab with its facts, the new pair and a journal folder."""

    lab: Lab
    server: LabServer
    bundle: CertificateBundle
    consumers: tuple[Consumer, ...]
    journal_dir: Path

    def host(self) -> WindowsHost:
        return WindowsHost(self.lab.connection_info().options(https=False))

    def facts(self) -> WindowsFacts:
        with self.host() as host:
            return gather(host, self.consumers)

    def plan(self, **options: object) -> tuple[Plan, WindowsFacts]:
        facts = self.facts()
        plan = plan_windows(facts, self.bundle, self.consumers, host=HOST, **options)  # type: ignore[arg-type]
        return plan, facts

    def apply(self, plan: Plan, facts: WindowsFacts) -> WindowsApplyResult:
        with self.host() as host:
            return apply_windows(
                host,
                plan,
                self.bundle,
                facts,
                consumers=self.consumers,
                journal_dir=self.journal_dir,
            )

    def journal(self) -> Journal:
        (path,) = sorted(self.journal_dir.glob("*.json"))
        return Journal.load(path)


RotationFor = Callable[[ConsumerCase, "str | None"], "Rotation"]


@pytest.fixture
def rotation_for(tmp_path: Path, certificates: LabCertificates) -> Iterator[RotationFor]:
    labs: list[Lab] = []

    def build(case: ConsumerCase, incoming: str | None) -> Rotation:
        server = key_provider_installation(
            case.key_api, case.current, tmp_path / "server", certificates=certificates
        )
        lab = Lab(server=server, root=tmp_path / "lab", svarut=False)
        lab.__enter__()
        labs.append(lab)
        bundle = _write_pair(tmp_path / "pfx", certificates, incoming)
        return Rotation(lab, server, bundle, _consumers(case.key_api), tmp_path / "journals")

    yield build
    for lab in labs:
        lab.__exit__(None, None, None)


def _planned_providers(plan: Plan) -> dict[Role, str]:
    return {
        Role(change.details["role"]): change.details.get("key_provider")
        for change in plan.actions
        if change.kind is ChangeKind.IMPORT_CERT
    }


# -- the matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize("incoming", list(INCOMING))
@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_the_new_key_lands_in_a_provider_its_consumer_can_use(
    rotation_for: RotationFor, consumer: str, incoming: str
) -> None:
    case = CONSUMERS[consumer]
    rotation = rotation_for(case, INCOMING[incoming])
    plan, facts = rotation.plan()
    assert _planned_providers(plan) == case.expected
    result = rotation.apply(plan, facts)
    assert result.outcome is Outcome.APPLIED, result.to_text()
    renewed = rotation.bundle
    for role in PAIR:
        info = renewed.require(role)
        assert rotation.server.store.get(info.thumbprint).key_provider == case.expected[role]
    assert {rotation.server.service(name).state for name in DIGIHELSE} == {"Running"}


def test_the_plan_text_says_which_provider_and_why(rotation_for: RotationFor) -> None:
    case = CONSUMERS["needs-sha256"]
    rotation = rotation_for(case, ENHANCED_V1)
    plan, _ = rotation.plan()
    text = plan.to_text()
    assert f"key provider: {ENHANCED_RSA_AES}, as the current encryption key" in text
    assert f"key provider: {ENHANCED_RSA_AES}, not {ENHANCED_V1}" in text
    assert "cannot sign with SHA-256" in text


def test_key_provider_option_overrides_the_choice_in_plan_and_import(
    rotation_for: RotationFor,
) -> None:
    rotation = rotation_for(CONSUMERS["needs-capi"], None)
    plan, facts = rotation.plan(key_providers=key_providers_from(("encryption=capi",)))
    planned = _planned_providers(plan)
    assert planned == {Role.SIGNING: ENHANCED_RSA_AES, Role.ENCRYPTION: ENHANCED_RSA_AES}
    assert "as asked (--key-provider)" in plan.to_text()
    assert rotation.apply(plan, facts).outcome is Outcome.APPLIED
    encryption = rotation.bundle.require(Role.ENCRYPTION)
    assert rotation.server.store.get(encryption.thumbprint).key_provider == ENHANCED_RSA_AES


def test_a_key_that_lands_in_another_provider_fails_the_run_and_is_taken_out_again(
    rotation_for: RotationFor,
) -> None:
    case = CONSUMERS["needs-capi"]
    rotation = rotation_for(case, ENHANCED_RSA_AES)
    plan, facts = rotation.plan()
    rotation.server.store.pfx_import_always_cng = True  # the server ignores the attribute
    with pytest.raises(ApplyError) as caught:
        rotation.apply(plan, facts)
    assert f"not {ENHANCED_RSA_AES} as planned" in caught.value.problem
    signing = rotation.bundle.require(Role.SIGNING)
    assert rotation.server.store.find(signing.thumbprint) is None
    assert {rotation.server.service(name).state for name in DIGIHELSE} == {"Running"}


# -- issue 17: what the import action puts where -------------------------------------------------


def test_a_certificate_that_has_its_key_by_now_is_not_imported_again(
    rotation_for: RotationFor,
) -> None:
    rotation = rotation_for(CONSUMERS["needs-cng"], SOFTWARE_KSP)
    plan, facts = rotation.plan()
    signing = rotation.bundle.require(Role.SIGNING)
    # meanwhile someone imported the certificate by hand and granted a backup agent read
    store = rotation.server.store
    entry = store.add(signing.certificate, signing.private_key, provider=SOFTWARE_KSP)
    store.grant_read(signing.thumbprint, "DOMENE\\backup-agent")
    result = rotation.apply(plan, facts)
    assert result.outcome is Outcome.APPLIED, result.to_text()
    after = store.get(signing.thumbprint)
    assert after.key_file == entry.key_file
    assert after.can_read_key("DOMENE\\backup-agent")
    assert after.can_read_key("DOMENE\\svc-digihelse")
    message = next(r.message for r in result.results if r.action == "import-pfx")
    assert "not imported again" in message


def test_only_the_leaf_goes_into_my_and_a_missing_intermediate_into_ca_until_rollback(
    rotation_for: RotationFor, certificates: LabCertificates
) -> None:
    rotation = rotation_for(CONSUMERS["needs-cng"], SOFTWARE_KSP)
    store = rotation.server.store
    intermediate = thumbprint_of(certificates.ca.intermediate.certificate)
    assert store.remove_authority(intermediate)  # this server lacks the Buypass intermediate
    in_my_before = set(store.entries)
    plan, facts = rotation.plan()
    result = rotation.apply(plan, facts)
    assert result.outcome is Outcome.APPLIED, result.to_text()
    added = set(store.entries) - in_my_before
    assert added == {rotation.bundle.require(role).thumbprint for role in PAIR}
    assert not any(is_ca(store.get(t).certificate) for t in added)
    assert intermediate in store.authorities
    with rotation.host() as host:
        rollback_windows(host, rotation.journal())
    assert intermediate not in store.authorities
    root = thumbprint_of(certificates.ca.root.certificate)
    assert root in store.authorities  # what was there before stays


def test_the_pfx_apply_sends_holds_the_leaf_and_names_the_planned_provider(
    rotation_for: RotationFor,
) -> None:
    rotation = rotation_for(CONSUMERS["needs-capi"], None)
    plan, facts = rotation.plan()
    compiled = compile_windows_plan(
        plan, rotation.bundle, facts, run_id="r", pfx_password=b"one-time"
    )
    planned = _planned_providers(plan)
    for action, data in zip(
        [a for a in compiled.actions if a.action == "import-pfx"], compiled.pfx_files, strict=True
    ):
        contents = read_pfx(data, b"one-time", "sent")
        assert len(contents.certificates) == 1
        role = next(r for r in PAIR if rotation.bundle.require(r).thumbprint in action.thumbprints)
        assert contents.key_providers == (planned[role],)
        assert action.key_provider == planned[role]  # type: ignore[union-attr]


# -- the doctor ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_api", "current", "role"),
    [
        (KeyApi.CAPI, {"signing": SOFTWARE_KSP, "encryption": ENHANCED_RSA_AES}, "signing"),
        (KeyApi.ANY, {"signing": ENHANCED_V1, "encryption": ENHANCED_RSA_AES}, "signing"),
        (KeyApi.CNG, {"signing": SOFTWARE_KSP, "encryption": ENHANCED_RSA_AES}, "encryption"),
    ],
)
def test_status_finds_a_key_in_a_provider_its_consumer_cannot_use(
    rotation_for: RotationFor, key_api: KeyApi, current: dict[str, str], role: str
) -> None:
    rotation = rotation_for(ConsumerCase(key_api, current, {}), None)
    facts = rotation.facts()
    statuses = {s.name: s for s in diagnose(facts, rotation.consumers, now=utc_now())}
    found = [f for f in statuses["Digihelse"].findings if f.code == "key-provider-unusable"]
    assert found
    assert all(role in f.subject.lower() for f in found), found
    assert current[role] in found[0].message
    assert {rotation.server.service(name).state for name in DIGIHELSE} == {"Stopped"}


def test_status_has_no_provider_finding_when_every_key_suits_its_consumer(
    rotation_for: RotationFor,
) -> None:
    rotation = rotation_for(CONSUMERS["needs-capi"], None)
    statuses = diagnose(rotation.facts(), rotation.consumers, now=utc_now())
    assert not [f for s in statuses for f in s.findings if f.code == "key-provider-unusable"]


# -- the choice, the option and the PFX attribute ------------------------------------------------


def test_the_choice_prefers_the_current_key_then_the_pfx_then_a_safe_default() -> None:
    capi = [("Digihelse", KeyApi.CAPI)]
    assert (
        choose_key_provider(
            Role.ENCRYPTION, current=[ENHANCED_V1], incoming=SOFTWARE_KSP, needs=capi
        ).provider
        == ENHANCED_V1
    )
    assert choose_key_provider(Role.ENCRYPTION, incoming=SOFTWARE_KSP).provider == SOFTWARE_KSP
    assert choose_key_provider(Role.ENCRYPTION).provider == ENHANCED_RSA_AES
    fallback = choose_key_provider(Role.SIGNING, incoming=SOFTWARE_KSP, needs=capi)
    assert fallback.provider == ENHANCED_RSA_AES
    assert "Digihelse: a CAPI-only" in fallback.reason
    torn = choose_key_provider(
        Role.SIGNING, current=[SOFTWARE_KSP], needs=[*capi, ("X", KeyApi.CNG)]
    )
    assert "WARNING" in torn.reason
    assert choose_key_provider(Role.SSL, override=SOFTWARE_KSP, needs=capi).provider == SOFTWARE_KSP
    ecdsa = choose_key_provider(Role.SSL, current=[ENHANCED_RSA_AES], rsa_key=False)
    assert ecdsa.provider == SOFTWARE_KSP


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (("signing",), "is not ROLE=NAME"),
        (("owner=capi",), "is not ROLE=NAME"),
        (("ssl=Microsoft Imaginary Provider",), "unknown key provider"),
        (("ssl=",), "needs a provider name"),
    ],
)
def test_a_bad_key_provider_option_is_a_clear_error(values: tuple[str, ...], problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        key_providers_from(values)


def test_key_provider_names_and_aliases() -> None:
    assert provider_from_option("CNG") == SOFTWARE_KSP
    assert provider_from_option("capi") == ENHANCED_RSA_AES
    assert provider_from_option(ENHANCED_V1.upper()) == ENHANCED_V1


def test_the_csp_name_attribute_is_written_into_the_key_bag_and_read_back(
    certificates: LabCertificates,
) -> None:
    issued = certificates.renewed.signing
    for legacy in (False, True):
        data = serialize_pfx(
            issued.private_key,  # type: ignore[arg-type]
            issued.certificate,
            [],
            b"pw",
            name=b"n",
            legacy=legacy,
            provider=ENHANCED_RSA_AES,
        )
        parsed = parse_pfx(data)
        assert parsed.mac_matches(b"pw")
        bags = [
            bag
            for info in parsed.authenticated_safe
            if info["content_type"].native == "data"
            for bag in pkcs12.SafeContents.load(bytes(info["content"].native))
        ]
        assert [csp_name_of(bag) for bag in bags] == [ENHANCED_RSA_AES]
        assert read_pfx(data, b"pw", "t").key_providers == (ENHANCED_RSA_AES,)


def test_inspect_shows_the_provider_a_pfx_names(
    tmp_path: Path, certificates: LabCertificates
) -> None:
    bundle = _write_pair(tmp_path, certificates, ENHANCED_V1)
    folder = sorted(tmp_path.glob("*.pfx"))
    result = CliRunner().invoke(
        main,
        ["inspect", "--json", "--password-env", "PFX_PW", *map(str, folder)],
        env={"PFX_PW": certificates.pfx_password},
    )
    document = json.loads(result.output)
    assert {c["key_provider"] for c in document["certificates"]} == {ENHANCED_V1}
    assert bundle.require(Role.SIGNING).key_provider == ENHANCED_V1
    text = CliRunner().invoke(
        main,
        ["inspect", "--password-env", "PFX_PW", *map(str, folder)],
        env={"PFX_PW": certificates.pfx_password},
    )
    row = next(line for line in text.output.splitlines() if "Key provider (PFX)" in line)
    assert row.count(ENHANCED_V1) == 2
