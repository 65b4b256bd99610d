"""A script's path through the library: a running lab as an inventory entry, and a lab
target's journals kept in the lab's own folder (not the user's home)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosdoc_certs import (
    InputError,
    Lab,
    PasswordRequiredError,
    Target,
    apply_rotation,
    installation_status,
    lab_target,
    load_bundle,
    plan_rotation,
    rollback_rotation,
)
from cosdoc_certs.lab.runner import LAB_PASSWORD_ENV

pytestmark = pytest.mark.timeout(120)


def test_a_running_lab_is_an_inventory_entry(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = lab.connection_info()
    inventory = tmp_path / "kunder.toml"
    inventory.write_text(info.inventory_entry("lab"), encoding="utf-8")
    assert info.password not in inventory.read_text(encoding="utf-8")
    monkeypatch.setenv(LAB_PASSWORD_ENV, info.password)
    status = installation_status(Target.from_inventory(inventory, "lab"))
    assert status.errors == ()
    assert status.served == installation_status(lab_target(info)).served
    assert status.svarut is not None


def test_a_lab_targets_journals_stay_in_the_lab(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("COSDOC_CERTS_JOURNAL_DIR", str(elsewhere))
    info = lab.connection_info()
    target = lab_target(info)
    bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
    result = apply_rotation(plan_rotation(target, bundle))
    assert info.journal_dir is not None
    assert result.journal_path.parent == info.journal_dir
    assert rollback_rotation(target).journal_path == result.journal_path  # found there
    assert not elsewhere.exists()


def test_library_errors_name_its_parameters_not_cli_options(lab: Lab) -> None:
    info = lab.connection_info()
    with pytest.raises(PasswordRequiredError) as no_password:
        load_bundle([info.pfx_files["ssl"]])
    assert "`password`" in no_password.value.hint
    assert "--" not in str(no_password.value)
    assert "asked" not in str(no_password.value)
    with pytest.raises(InputError) as no_run:
        rollback_rotation(lab_target(info))  # nothing was applied: no run to undo
    assert "`journal`" in no_run.value.hint
    assert "--" not in str(no_run.value)
