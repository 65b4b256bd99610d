"""``--inventory FILE --customer NAME``: an installation from the inventory instead of options.

Shared by ``status`` and the rotate commands. The two go together, and replace the host
options: a host option given with them is a usage error (exit 2), as is one without the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

if TYPE_CHECKING:  # imported where used: `--help` needs none of the library
    from cosdoc_certs import rotation

F = TypeVar("F", bound=Callable[..., Any])

_TLS_ENDPOINTS_HINT = (
    'write tls_endpoints = { "IP:PORT" = "HOST:PORT" } in the customer\'s inventory entry instead'
)


def inventory_options(command: F) -> F:
    """Add ``--inventory FILE`` and ``--customer NAME`` to a command."""
    command = click.option("--customer", default=None, help="The customer in --inventory.")(command)
    return click.option(
        "--inventory",
        type=click.Path(exists=True, dir_okay=False),
        help="An inventory TOML file (see docs/inventory.example.toml); use with --customer.",
    )(command)


def target_from_inventory(
    inventory: str | None, customer: str | None, given: dict[str, Any]
) -> rotation.Target:
    """The customer's installation; ``given`` (the other options) must all be left out."""
    if not (inventory and customer):
        missing = "--customer" if inventory else "--inventory"
        raise click.UsageError(f"--inventory and --customer go together: add {missing}")
    context = click.get_current_context()
    stray = [
        param.opts[0]
        for param in context.command.params
        if param.name in given
        and context.get_parameter_source(param.name) not in (None, ParameterSource.DEFAULT)
    ]
    if stray:
        hint = (
            _TLS_ENDPOINTS_HINT
            if stray[0] == "--tls-endpoint"
            else "change the customer's entry in the inventory instead"
        )
        raise click.UsageError(f"{stray[0]} cannot be combined with --inventory: {hint}")
    from cosdoc_certs import rotation
    from cosdoc_certs.inventory import load_inventory

    return rotation.Target.from_customer(load_inventory(inventory).customer(customer))
