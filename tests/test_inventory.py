"""The inventory file: the example loads; each kind of mistake gives one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cosdoc_certs import rotation
from cosdoc_certs.cli import main
from cosdoc_certs.inventory import InventoryError, load_inventory, parse_inventory
from cosdoc_certs.windows.gather import BindingFact

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "inventory.example.toml"

GOOD_WINDOWS = '[customers.a.windows]\nhost = "app01"\nuser = "D\\\\u"\npassword_env = "A_PW"\n'


def test_the_example_loads_with_paths_relative_to_it() -> None:
    inventory = load_inventory(EXAMPLE)
    assert inventory.names == ("testkommune", "fjordkommune")
    testkommune = inventory.customer("TestKommune")
    assert testkommune.windows is not None
    assert testkommune.windows.ca_bundle == str(EXAMPLE.parent / "ca" / "testkommune-root.pem")
    fjord = inventory.customer("fjordkommune")
    assert fjord.windows is not None
    assert fjord.windows.options().delegate is True  # forwarded to pypsrp as negotiate_delegate
    assert fjord.windows.options().wsman().transport.negotiate_delegate is True
    assert fjord.consumers_file == EXAMPLE.parent / "deviations.example.toml"
    assert "KPR" not in {c.name for c in fjord.consumers()}
    assert fjord.tls_endpoints == {"*:443": "cosdoc.fjordkommune.no:8443"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("customers = 1", "names no customer"),
        ("[other]\nx = 1", "unknown key 'other'"),
        ("[customers.a]\nconsumers = 'x.toml'", "neither a windows nor a svarut host"),
        ('[customers.a.windows]\nuser = "u"', "has no host"),
        ('[customers.a.windows]\nhost = "h"\npassword = "hunter2"', "passwords are never written"),
        ('[customers.a.windows]\nhost = "h"\nuser = "u"', "no password_env"),
        ('[customers.a.windows]\nhost = "h"\nauth = "magic"', "unknown auth 'magic'"),
        ('[customers.a.windows]\nhost = "h"\nauth = "ntlm"', "auth ntlm needs a user"),
        ('[customers.a.windows]\nhost = "h"\nport = 70000', "port must be a port number"),
        ('[customers.a.windows]\nhost = "h"\nhttp = "yes"', "http must be true or false"),
        ('[customers.a.windows]\nhost = "h"\ndelegate = 1', "delegate must be true or false"),
        (
            GOOD_WINDOWS.replace('host = "app01"', 'host = "app01"\nauth = "ntlm"')
            + "delegate = true",
            "--delegate needs Kerberos; --auth ntlm cannot pass credentials on",
        ),
        (
            '[customers.a.windows]\nhost = "h"\nauth = "basic"\nuser = "u"\npassword_env = "P"\n'
            "http = true",
            "sends the password",
        ),
        ('[customers.a.windows]\nhost = "h"\ncolour = "red"', "unknown key 'colour'"),
        ('[customers.a.svarut]\nhost = "h"\nlayout = "triple"', "layout must be one of"),
        ('[customers.a.svarut]\nhost = "h"\nidentities = "k"', "identities must be a list"),
        ("[customers.a.windows\nhost = 1", "is not valid TOML"),
        (GOOD_WINDOWS + '[customers.a]\ntls_endpoints = "*:443"', "tls_endpoints must be a table"),
        (
            GOOD_WINDOWS + '[customers.a.tls_endpoints]\n"443" = "gw:8443"',
            "tls_endpoints key '443' is not IP:PORT",
        ),
        (
            GOOD_WINDOWS + '[customers.a.tls_endpoints]\n"*:443" = "gw"',
            "tls_endpoints['*:443'] = 'gw' is not HOST:PORT",
        ),
        (
            GOOD_WINDOWS + '[customers.a.tls_endpoints]\n"*:443" = "gw:99999"',
            "is not HOST:PORT",
        ),
        (
            GOOD_WINDOWS + '[customers.a.tls_endpoints]\n"*:https" = "gw:443"',
            "tls_endpoints key '*:https' is not IP:PORT",
        ),
    ],
)
def test_mistakes_are_named_with_where_they_are(text: str, problem: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, Path("/srv/inventory.toml"))
    assert problem in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_an_unknown_customer_lists_the_known_ones() -> None:
    inventory = parse_inventory(GOOD_WINDOWS, Path("inv.toml"))
    with pytest.raises(InventoryError, match="use one of: a"):
        inventory.customer("b")


def test_the_password_comes_from_the_named_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customer = parse_inventory(GOOD_WINDOWS, Path("inv.toml")).customer("a")
    monkeypatch.delenv("A_PW", raising=False)
    with pytest.raises(InventoryError, match="A_PW"):
        rotation.Target.from_customer(customer)
    monkeypatch.setenv("A_PW", "s3cret")
    target = rotation.Target.from_customer(customer)
    assert target.windows is not None
    assert target.windows.password == "s3cret"
    assert "s3cret" not in repr(target)


def test_tls_endpoints_say_where_each_binding_is_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    text = GOOD_WINDOWS + (
        '[customers.a.tls_endpoints]\n"*:443" = "gw.example:8443"\n'
        '"10.0.0.5:444" = "127.0.0.1:9444"\n'
    )
    customer = parse_inventory(text, Path("inv.toml")).customer("a")
    assert customer.tls_endpoints == {"*:443": "gw.example:8443", "10.0.0.5:444": "127.0.0.1:9444"}
    monkeypatch.setenv("A_PW", "s3cret")
    target = rotation.Target.from_customer(customer)
    assert target.tls_address is not None
    assert target.tls_address(_binding("*:443:")) == ("gw.example", 8443)
    assert target.tls_address(_binding("10.0.0.5:444:cosdoc.example")) == ("127.0.0.1", 9444)
    plain = rotation.Target.from_customer(parse_inventory(GOOD_WINDOWS, Path("i")).customer("a"))
    assert plain.tls_address is None  # the Windows server's name and the binding's port


def _binding(information: str) -> BindingFact:
    return BindingFact("Default Web Site", information, 0, "", "My")


FOUR_MISTAKES = """
[customers.a.windows]
host = "app01"
port = "5986"
auth = "magic"

[customers.b.svarut]
user = "drift"

[customers.c]
tls_endpoints = { "nowhere" = "gw:8443" }

[customers.c.windows]
host = "app03"
"""


def test_every_mistake_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as raised:
        parse_inventory(FOUR_MISTAKES, tmp_path / "kunder.toml")
    lines = raised.value.lines()
    assert len(lines) == 4, lines
    expected = ["port must be a port number", "unknown auth 'magic'", "has no host", "'nowhere'"]
    for line, says in zip(lines, expected, strict=True):
        assert says in line
    assert "4 mistakes" in str(raised.value)


def test_the_cli_prints_one_error_line_per_mistake(tmp_path: Path) -> None:
    inventory = tmp_path / "kunder.toml"
    inventory.write_text(FOUR_MISTAKES, encoding="utf-8")
    result = CliRunner().invoke(main, ["inventory", "check", str(inventory)])
    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4
    assert all(line.startswith("error: ") for line in lines)
