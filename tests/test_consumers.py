"""The CosDoc catalog as data, and customer deviations read from TOML."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosdoc_certs.certs import Role
from cosdoc_certs.consumers import (
    COSDOC_CATALOG,
    DeviationsError,
    HttpsBindingsConsumer,
    IisConsumer,
    ManualStep,
    ServiceConsumer,
    SvarutConsumer,
    ThumbprintKey,
    apply_deviations,
    config_files,
    load_deviations,
    service_patterns,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "deviations.example.toml"


def _by_name(consumers: tuple[object, ...]) -> dict[str, object]:
    return {consumer.name: consumer for consumer in consumers}  # type: ignore[attr-defined]


def test_the_catalog_is_the_guide() -> None:
    catalog = _by_name(COSDOC_CATALOG)
    assert list(catalog) == [
        "Digihelse",
        "KPR",
        "Authentication",
        "SkatteIntegrasjonApi",
        "IIS HTTPS bindings",
        "SvarUT",
        "E-meldinger",
    ]
    pair = (
        ThumbprintKey("$.CertSettings.EncryptionThumbprint", Role.ENCRYPTION),
        ThumbprintKey("$.CertSettings.SigningThumbprint", Role.SIGNING),
    )
    assert catalog["Digihelse"] == ServiceConsumer("Digihelse", "Digihelse*", pair)
    assert catalog["KPR"] == ServiceConsumer("KPR", "KPR*", pair)
    authentication = catalog["Authentication"]
    assert isinstance(authentication, IisConsumer)
    assert authentication.environment == "Drift"
    assert {key.path.rsplit(".", 1)[-1]: key.role for key in authentication.keys} == {
        "ClientCertThumbprint": Role.ENCRYPTION,
        "SigningCertificateThumbprint": Role.SIGNING,
        "SSLCertificateThumbprint": Role.SSL,
    }
    tax = catalog["SkatteIntegrasjonApi"]
    assert isinstance(tax, IisConsumer)
    assert tax.roles == (Role.SIGNING,)
    assert catalog["IIS HTTPS bindings"] == HttpsBindingsConsumer()
    assert catalog["SvarUT"].roles == (Role.SSL,)  # type: ignore[attr-defined]
    step = catalog["E-meldinger"]
    assert isinstance(step, ManualStep)
    assert "NHN" in step.instructions
    assert "Velg" in step.instructions


def test_what_gather_is_asked_for() -> None:
    assert service_patterns(COSDOC_CATALOG) == ["Digihelse*", "KPR*"]
    assert config_files(COSDOC_CATALOG) == ["appsettings.json"]


def test_the_example_deviations_file() -> None:
    consumers = _by_name(load_deviations(EXAMPLE))
    assert "KPR" not in consumers
    digihelse = consumers["Digihelse"]
    assert isinstance(digihelse, ServiceConsumer)
    assert (digihelse.service_pattern, digihelse.config_file) == (
        "DH.*",
        "config\\appsettings.json",
    )
    assert digihelse.keys == COSDOC_CATALOG[0].keys  # type: ignore[union-attr]
    assert consumers["Authentication"].environment == "Produksjon"  # type: ignore[attr-defined]
    extra = consumers["Helsenorge Meldinger"]
    assert isinstance(extra, ServiceConsumer)
    assert [key.role for key in extra.keys] == [Role.SIGNING, Role.ENCRYPTION]
    assert consumers["IIS HTTPS bindings"] == HttpsBindingsConsumer(sites=("CosDoc Produksjon",))
    assert consumers["SvarUT"] == SvarutConsumer(layout="samdrift", host="svarut01.kommune.no")
    assert config_files(tuple(consumers.values())) == [
        "config\\appsettings.json",
        "appsettings.json",
    ]


def test_names_match_case_insensitively_and_empty_environment_is_allowed() -> None:
    consumers = _by_name(apply_deviations('[consumers.authentication]\nenvironment = ""\n'))
    assert consumers["Authentication"].environment == ""  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[consumers.KPR\n", "deviations.toml is not valid TOML"),
        ("[consumer.KPR]\nenabled = false\n", "unknown top-level key 'consumer'"),
        ("consumers = 3\n", "'consumers' must be a table"),
        (
            "[consumers.KPR]\nservice_patern = 'K*'\n",
            "[consumers.KPR]: unknown key 'service_patern'",
        ),
        ("[consumers.KPR]\nenabled = 'no'\n", "enabled must be true or false"),
        ("[consumers.KPR]\nkind = 'iis'\n", "KPR is a service consumer, not iis"),
        (
            "[consumers.Ny]\nservice_pattern = 'X*'\n",
            "'Ny' is not in the catalog, so it needs a kind",
        ),
        ("[consumers.Ny]\nkind = 'windows'\n", "unknown kind 'windows'"),
        ("[consumers.Ny]\nkind = 'service'\nservice_pattern = 'X*'\n", "needs keys"),
        (
            "[consumers.KPR]\nkeys = [{ path = '$.A', role = 'sign' }]\n",
            "keys[0].role is 'sign', not a role",
        ),
        ("[consumers.KPR]\nkeys = [{ path = '$.[', role = 'ssl' }]\n", "keys[0].path: path '$.['"),
        (
            "[consumers.KPR]\nkeys = [{ path = '$.A[*]', role = 'ssl' }]\n",
            "not a single key or index",
        ),
        ("[consumers.KPR]\nkeys = [{ path = '$.A' }]\n", "keys[0] must have exactly path and role"),
        ("[consumers.KPR]\nkeys = []\n", "keys must be a non-empty list"),
        ("[consumers.KPR]\nconfig_file = ''\n", "config_file must be a non-empty string"),
        ("[consumers.SvarUT]\nlayout = 'double'\n", "layout is 'double'"),
        (
            "[consumers.'E-meldinger']\ncertificate_roles = ['ssl', 'x']\n",
            "certificate_roles[1] is 'x'",
        ),
        ("[consumers.'IIS HTTPS bindings']\nsites = 'all'\n", "sites must be a list of strings"),
    ],
)
def test_bad_deviations_say_where_and_what(toml: str, message: str) -> None:
    with pytest.raises(DeviationsError) as caught:
        apply_deviations(toml)
    assert message in str(caught.value)
    assert str(caught.value).startswith("deviations.toml")
    assert caught.value.hint


def test_a_missing_deviations_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeviationsError, match="cannot read the deviations file"):
        load_deviations(tmp_path / "nope.toml")
