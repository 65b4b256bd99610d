"""``cosdoc-certs plan|apply|verify|rollback``: rotate a whole installation, Windows and SvarUT.

Thin commands over :mod:`cosdoc_certs.rotation`. The installation is given either by options
(``--host`` and the WinRM options ``status`` has, ``--svarut-host`` and the SSH options) or by
``--inventory FILE --customer NAME``. The new certificates come from ``--pfx`` files, their
password from ``--password-env VAR`` or a prompt. ``apply`` shows the plan and asks before it
changes anything (``--yes`` skips the question; without a terminal ``--yes`` is required),
then verifies — over one WinRM session, the Windows checks over the state the apply pipeline
read at its end (the report says so); ``verify`` on its own reads the hosts afresh. Progress
goes to stderr, results to stdout (``--json`` for scripts).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cosdoc_certs.cli._common import (
    confirm_change,
    confirm_rollback,
    echo_json,
    exit_code_for,
    journal_dir_option,
    journal_to_undo,
    json_option,
    password_env_option,
    progress_printer,
    reports_errors,
    stops_without_changes,
)
from cosdoc_certs.cli._inventory_options import inventory_options, target_from_inventory
from cosdoc_certs.cli._svarut_options import svarut_target_from, svarut_target_options
from cosdoc_certs.cli._windows_options import (
    connection_options,
    consumers_from,
    save_facts_options,
    windows_options,
    write_facts,
)
from cosdoc_certs.cli.inspect import load_bundle_asking_password
from cosdoc_certs.errors import InputError

if TYPE_CHECKING:  # the library is imported where used: `--help` needs none of it
    from cosdoc_certs import rotation
    from cosdoc_certs.certs import Role
    from cosdoc_certs.windows.verify import TlsAddress

F = TypeVar("F", bound=Callable[..., Any])

_NAME_OPTION = click.option(
    "--name",
    default=None,
    help="A name for the installation in journals (default: the customer, else the Windows host).",
)
_TLS_OPTIONS = (
    click.option(
        "--tls-endpoint",
        "tls_endpoints",
        multiple=True,
        metavar="IP:PORT=HOST:PORT",
        help="Where to check a binding's TLS if not at the server (repeatable; "
        "`cosdoc-certs lab` prints the lab's).",
    ),
)


def _installation_options(command: F) -> F:
    for option in reversed(_TLS_OPTIONS):
        command = option(command)
    command = svarut_target_options("svarut-", host_required=False)(command)
    command = windows_options(host_required=False)(command)
    return inventory_options(_NAME_OPTION(command))


def _pfx_options(command: F) -> F:
    command = password_env_option("Read the PFX password from this environment variable.")(command)
    command = click.option(
        "--key-provider",
        "key_providers",
        multiple=True,
        metavar="ROLE=NAME",
        help="Import the new ROLE key (signing, encryption, ssl) into this Windows key provider "
        '(cng, capi, or a full name such as "Microsoft Enhanced RSA and AES Cryptographic '
        'Provider"); default: the provider of the current key of that role (repeat).',
    )(command)
    return click.option(
        "--pfx",
        "pfx_files",
        multiple=True,
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The new certificates: PFX/P12 files with their keys (repeat; chain PEM/CER too).",
    )(command)


def _journal_options(command: F) -> F:
    command = click.option(
        "--journal",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="The run's journal (default: the latest run on this installation).",
    )(command)
    return journal_dir_option(command)


def key_providers_from(pairs: tuple[str, ...]) -> dict[Role, str]:
    """``--key-provider ROLE=NAME`` values as a role → provider name mapping."""
    from cosdoc_certs.certs import Role
    from cosdoc_certs.certs.providers import provider_from_option

    chosen: dict[Role, str] = {}
    for pair in pairs:
        role_name, separator, provider = pair.partition("=")
        try:
            role = Role(role_name.strip().lower())
        except ValueError:
            role = None
        if not separator or role is None:
            raise InputError(
                f"--key-provider {pair!r} is not ROLE=NAME",
                "e.g. --key-provider signing=capi (roles: signing, encryption, ssl)",
            )
        chosen[role] = provider_from_option(provider)
    return chosen


def target_from_options(options: dict[str, Any]) -> rotation.Target:
    """The installation the installation options describe (``options`` is emptied)."""
    from cosdoc_certs import rotation

    given = dict(options)
    options.clear()
    inventory, customer = given.pop("inventory"), given.pop("customer")
    if inventory or customer:
        return target_from_inventory(inventory, customer, given)
    server, svarut_host = given["server"], given["svarut_host"]
    if not server and not svarut_host:
        raise click.UsageError(
            "no installation given: pass --host (and --svarut-host), "
            "or --inventory FILE --customer NAME"
        )
    consumers = consumers_from(given["deviations"])
    return rotation.Target(
        given["name"] or server or svarut_host,
        windows=connection_options(given) if server else None,
        svarut=svarut_target_from(given, "svarut-") if svarut_host else None,
        consumers=consumers,
        tls_address=_tls_address(given["tls_endpoints"]),
    )


def _tls_address(pairs: tuple[str, ...]) -> TlsAddress | None:
    from cosdoc_certs import rotation

    if not pairs:
        return None
    mapping = {}
    for pair in pairs:
        binding, separator, address = pair.partition("=")
        if not separator or ":" not in binding or ":" not in address:
            raise click.UsageError(
                f"--tls-endpoint {pair!r} is not IP:PORT=HOST:PORT "
                "(e.g. --tls-endpoint 10.0.0.5:443=127.0.0.1:44301)"
            )
        mapping[binding] = address
    return rotation.endpoint_map(mapping)


@click.command("plan")
@_installation_options
@_pfx_options
@save_facts_options
@json_option
@stops_without_changes("plan")
@reports_errors
def plan_command(
    pfx_files: tuple[Path, ...],
    password_env: str | None,
    key_providers: tuple[str, ...],
    save_facts_to: Path | None,
    anonymize: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Show what rotating the new certificates into the installation would change.

    Reads the Windows server and the SvarUT host at once and prints every change (with the
    diffs of the config files) and every consumer that needs nothing, with its reason, and
    the key provider each new key will be imported into. Changes nothing.

    \b
    Example:
      export PFX_PW=... TESTKOMMUNE_WINRM_PASSWORD=...
      cosdoc-certs plan --inventory kunder.toml --customer testkommune \\
          --pfx signing+encryption.pfx --pfx ssl.pfx --password-env PFX_PW
    """
    from cosdoc_certs import rotation

    providers = key_providers_from(key_providers)
    target = target_from_options(options)
    bundle = load_bundle_asking_password(list(pfx_files), password_env)
    rplan = rotation.plan(target, bundle, key_providers=providers)
    write_facts(save_facts_to, rplan.windows_facts, target.consumers, anonymize=anonymize)
    if as_json:
        echo_json(rplan.to_dict())
    else:
        click.echo(rplan.to_text())


@click.command("apply")
@_installation_options
@_pfx_options
@click.option("--yes", is_flag=True, help="Do not ask before changing the installation.")
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: run every step's preconditions on the hosts (apply.ps1 -Check, SvarUT "
    "pre-flight) and say per step 'would do' or 'cannot, because …'. Exit code as `status`.",
)
@journal_dir_option
@save_facts_options
@json_option
@reports_errors
def apply_command(
    pfx_files: tuple[Path, ...],
    password_env: str | None,
    key_providers: tuple[str, ...],
    yes: bool,
    check: bool,
    journal_dir: Path | None,
    save_facts_to: Path | None,
    anonymize: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Rotate the installation: Windows, then SvarUT; verify; roll back every host on failure.

    Shows the plan and asks first (in scripts, with no terminal: review `plan`, then pass
    --yes). If the SvarUT part fails after the Windows part succeeded, the Windows server
    is rolled back too (exit 5; 6 if a rollback failed). Every step is journaled for
    `rollback`. With --check nothing is changed and nothing asked: the same script runs
    each step's preconditions on the server (exit 0 when all would run, 3 on a blocker).

    \b
    Example:
      cosdoc-certs apply --check --inventory kunder.toml --customer testkommune \\
          --pfx signing+encryption.pfx --pfx ssl.pfx --password-env PFX_PW
      cosdoc-certs apply --inventory kunder.toml --customer testkommune \\
          --pfx signing+encryption.pfx --pfx ssl.pfx --password-env PFX_PW
    """
    from cosdoc_certs import rotation

    providers = key_providers_from(key_providers)
    target = target_from_options(options)
    bundle = load_bundle_asking_password(list(pfx_files), password_env)
    with target:  # one WinRM session for plan, apply and verify
        rplan = rotation.plan(target, bundle, key_providers=providers)
        write_facts(save_facts_to, rplan.windows_facts, target.consumers, anonymize=anonymize)
        if check:
            _check(rplan, as_json)
        if not as_json:
            click.echo(rplan.to_text())
        if not rplan.is_empty:
            confirm_change(f"Apply this plan to {target.name}?", yes, "cosdoc-certs plan")
        progress = progress_printer(as_json)
        result = rotation.apply(rplan, journal_dir=journal_dir, progress=progress, verify=True)
        # nothing applied: verify reads the hosts itself
        report = result.verification or rotation.verify(target, rplan)
    if as_json:
        echo_json({"plan": rplan.to_dict(), "result": result.to_dict(), "verify": report.to_dict()})
    else:
        click.echo(result.to_text(verification=False))
        click.echo(report.to_text())
    sys.exit(exit_code_for(report.worst))


def _check(rplan: rotation.RotationPlan, as_json: bool) -> None:
    """``apply --check``: the plan, then each host's verdicts; exits like ``status``."""
    from cosdoc_certs import rotation

    found = rotation.apply(rplan, check=True, progress=progress_printer(as_json))
    if as_json:
        echo_json({"plan": rplan.to_dict(), "check": found.to_dict()})
    else:
        click.echo(rplan.to_text())
        click.echo(found.to_text())
    sys.exit(exit_code_for(found.worst))


@click.command("verify")
@_installation_options
@_journal_options
@json_option
@stops_without_changes("verify")
@reports_errors
def verify_command(
    journal: Path | None, journal_dir: Path | None, as_json: bool, **options: Any
) -> None:
    """Check that a run took effect: config values, services, pools, TLS on every host.

    Re-reads both hosts and checks what the run planned: each config value holds its new
    thumbprint, services run, app pools are started, and every HTTPS binding and the SvarUT
    endpoint serve the new certificate in a real TLS handshake. Exit code by findings.

    \b
    Example:
      cosdoc-certs verify --inventory kunder.toml --customer testkommune
    """
    from cosdoc_certs import rotation

    target = target_from_options(options)
    report = rotation.verify(target, journal, journal_dir=journal_dir)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.to_text())
    sys.exit(exit_code_for(report.worst))


@click.command("rollback")
@_installation_options
@_journal_options
@click.option("--yes", is_flag=True, help="Do not ask before changing the installation.")
@json_option
@reports_errors
def rollback_command(
    journal: Path | None, journal_dir: Path | None, yes: bool, as_json: bool, **options: Any
) -> None:
    """Undo a run on every host it changed (SvarUT first, then Windows) from its journal.

    Uses the latest run on the installation unless --journal names one; asks first
    (--yes without a terminal). Backups stay on the hosts.

    \b
    Example:
      cosdoc-certs rollback --inventory kunder.toml --customer testkommune
    """
    from cosdoc_certs import rotation

    target = target_from_options(options)
    run = journal_to_undo(journal, journal_dir, host=target.name, kind=rotation.JOURNAL_KIND)
    confirm_rollback(run, yes, "cosdoc-certs verify")
    result = rotation.rollback(target, run, progress=progress_printer(as_json))
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(str(result))
