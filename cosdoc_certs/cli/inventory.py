"""``cosdoc-certs inventory check|status FILE``: the customers of an inventory file.

``check`` validates the file and lists each customer's hosts (no connection is made);
``status`` runs ``status`` on every customer's Windows server and SvarUT host at once and
prints one line per customer, or every consumer of those named with ``--customer``
(``--json`` for monitoring); the exit code follows the worst finding over the whole fleet,
an unreachable host counting as a problem.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from cosdoc_certs.cli._common import (
    OrderedGroup,
    echo_json,
    exit_code_for,
    json_option,
    reports_errors,
    warn_days_option,
)
from cosdoc_certs.errors import CosDocCertsError

if TYPE_CHECKING:  # the library is imported where used: `--help` needs none of it
    from cosdoc_certs import rotation
    from cosdoc_certs.inventory import Customer

_FILE = click.argument("inventory", type=click.Path(exists=True, dir_okay=False))


@click.group("inventory", cls=OrderedGroup)
def command() -> None:
    """Check an inventory of customers and their hosts; the status of every customer at once.

    The inventory is a TOML file (see docs/inventory.example.toml); plan, apply, verify and
    rollback take it too, with --inventory FILE --customer NAME.

    \b
    Example:
      cosdoc-certs inventory check ~/kunder.toml
      cosdoc-certs inventory status ~/kunder.toml --json
    """


@command.command("check", short_help="Validate the inventory; list each customer's hosts.")
@_FILE
@json_option
@reports_errors
def check_command(inventory: str, as_json: bool) -> None:
    """Validate the inventory file and list each customer's hosts (connects to nothing)."""
    from cosdoc_certs.inventory import load_inventory

    loaded = load_inventory(inventory)
    if as_json:
        echo_json({"inventory": str(loaded.path), "customers": [_row(c) for c in loaded.customers]})
        return
    click.echo(f"{loaded.path}: {len(loaded.customers)} customer(s), valid")
    for customer in loaded.customers:
        row = _row(customer)
        click.echo(
            f"  {row['customer']}: Windows {row['windows'] or '-'}, SvarUT {row['svarut'] or '-'}"
            + (f", deviations {row['consumers']}" if row["consumers"] else "")
        )


@command.command("status", short_help="The status of every customer at once.")
@_FILE
@click.option("--customer", "customers", multiple=True, help="Only these customers (repeatable).")
@warn_days_option
@json_option
@reports_errors
def status_command(
    inventory: str, customers: tuple[str, ...], warn_days: int, as_json: bool
) -> None:
    """The status of every customer at once: worst finding, SvarUT certificate, errors.

    One line per customer; for the customers named with --customer, every consumer, what
    each HTTPS binding and the SvarUT endpoint serve, and the findings. WinRM passwords come
    from each customer's password_env variable.
    """
    from cosdoc_certs import rotation
    from cosdoc_certs.inventory import load_inventory

    loaded = load_inventory(inventory)
    chosen = [loaded.customer(name) for name in customers] or list(loaded.customers)
    targets, unusable = _targets(chosen)
    read = iter(rotation.status_many(list(targets.values()), warn_days=warn_days))
    results = [unusable[c.name] if c.name in unusable else next(read) for c in chosen]
    if as_json:
        echo_json([result.to_dict() for result in results])
    elif customers:
        click.echo("\n\n".join(result.to_text() for result in results))
    else:
        for result in results:
            click.echo(result.summary())
    sys.exit(exit_code_for(max((r.worst for r in results if r.worst is not None), default=None)))


def _targets(
    chosen: list[Customer],
) -> tuple[dict[str, rotation.Target], dict[str, rotation.InstallationStatus]]:
    """Each customer's target; a customer that cannot be reached as given (e.g. its password
    variable is not set) becomes a status with that error, so the others are still read."""
    from cosdoc_certs import rotation

    targets, unusable = {}, {}
    for customer in chosen:
        try:
            targets[customer.name] = rotation.Target.from_customer(customer)
        except CosDocCertsError as error:
            unusable[customer.name] = rotation.InstallationStatus(
                customer.name, None, {}, None, (str(error),)
            )
    return targets, unusable


def _row(customer: Customer) -> dict[str, str | None]:
    windows, svarut = customer.windows, customer.svarut
    return {
        "customer": customer.name,
        "windows": f"{windows.host} ({windows.auth})" if windows else None,
        "svarut": f"{svarut.user + '@' if svarut.user else ''}{svarut.host}" if svarut else None,
        "consumers": str(customer.consumers_file) if customer.consumers_file else None,
    }
