"""Plan/Change: no-op reasons, rendering as text, JSON and HTML, immutability."""

from __future__ import annotations

import json

import pytest

from cosdoc_certs.plan import Change, ChangeKind, Plan

UPLOAD = Change(
    "svarut01",
    "svarut-nginx",
    ChangeKind.UPLOAD_FILES,
    "upload cert-20261129.crt, cert-20261129.rsa",
    {"files": [{"name": "cert-20261129.crt", "sha256": "ab" * 32}]},
)
SET_ENV = Change(
    "svarut01",
    "svarut-nginx",
    ChangeKind.SET_ENV,
    "point prod.env at the new files",
    {"before": "cert.crt", "after": "cert-20261129.crt"},
    diff="-SSL_CERT_FILENAME = cert.crt\n+SSL_CERT_FILENAME = cert-20261129.crt\n",
)
NOOP = Change.noop("app01", "IIS Authentication", "already uses 3F2504E0", thumbprint="3F25")


def test_actions_and_noops_are_split() -> None:
    plan = Plan.of([UPLOAD, NOOP, SET_ENV], title="SSL")
    assert plan.actions == (UPLOAD, SET_ENV)
    assert plan.noops == (NOOP,)
    assert not plan.is_empty
    assert Plan.of([NOOP]).is_empty
    assert plan.hosts == ("svarut01", "app01")
    assert plan.for_host("app01").changes == (NOOP,)


def test_text_shows_changes_noop_reasons_and_diffs() -> None:
    text = Plan.of([UPLOAD, SET_ENV, NOOP], title="SSL A → B").to_text()
    assert text.splitlines()[0] == "SSL A → B — 2 change(s), 1 no-op(s)"
    assert "+ [set-env] svarut01 · svarut-nginx: point prod.env at the new files" in text
    assert "    before: cert.crt" in text
    assert "    after:  cert-20261129.crt" in text
    assert "    +SSL_CERT_FILENAME = cert-20261129.crt" in text
    assert "= [noop] app01 · IIS Authentication: nothing to do: already uses 3F2504E0" in text
    assert Plan.of([NOOP]).to_text().endswith("Nothing to do.")


def test_json_round_trip() -> None:
    plan = Plan.of([UPLOAD, SET_ENV, NOOP], title="t")
    data = json.loads(plan.to_json())
    assert data["changes"][2]["noop_reason"] == "already uses 3F2504E0"
    assert data["changes"][0]["details"]["files"][0]["name"] == "cert-20261129.crt"
    assert Plan.from_dict(data) == plan


def test_html_escapes_and_repr_is_short() -> None:
    evil = Change("h<1>", "c", "custom-kind", "<script>")
    html = Plan.of([evil, SET_ENV]).__repr__(), Plan.of([evil, SET_ENV])._repr_html_()
    assert "<script>" not in html[1]
    assert "&lt;script&gt;" in html[1]
    assert "<pre>" in html[1]
    assert html[0] == "<Plan: 2 change(s), 0 no-op(s) on h<1>, svarut01>"
    assert repr(NOOP).startswith("<Change noop app01/IIS Authentication")


def test_details_are_read_only() -> None:
    with pytest.raises(TypeError):
        UPLOAD.details["files"] = []  # type: ignore[index]
    assert isinstance(UPLOAD.details["files"], tuple)


@pytest.mark.parametrize(
    ("action", "reason"),
    [(ChangeKind.NOOP, None), (ChangeKind.SET_ENV, "because")],
)
def test_noop_reason_belongs_to_noops_only(action: ChangeKind, reason: str | None) -> None:
    with pytest.raises(ValueError, match="no-op"):
        Change("h", "c", action, "s", noop_reason=reason)


def test_unknown_kinds_are_kept_as_text() -> None:
    change = Change("h", "c", "future-kind", "s")
    assert change.kind == "future-kind"
    assert not change.is_noop
    assert Change("h", "c", "set-env", "s").kind is ChangeKind.SET_ENV
