"""Which mechanism a Negotiate logon with a user name and password can really use.

pyspnego's Negotiate, given a user name and password on a system with GSSAPI, first asks a
KDC for a Kerberos ticket (``kinit``) on every new connection and falls back to NTLM when
that fails. Where Kerberos cannot apply, that attempt is only cost: it contacts (or waits
for) the default realm's KDC, and a fleet of threads doing it at once piles up there. It
cannot apply when

- the server is an IP address: a Kerberos service ticket names the server's DNS name
  (``HTTP/<name>``); Windows itself uses NTLM for an address;
- the account is local: ``.\\user``;
- (outside Windows) the user name is in the NetBIOS form ``DOMAIN\\user`` or ``HOST\\user``:
  the Kerberos library reads the backslash as an escape and asks for ``DOMAINuser@<default
  realm>``, a principal that does not exist — only ``user@REALM`` gets a ticket;
- (outside Windows) a bare ``user`` while no default realm is configured (krb5.conf).

:func:`why_not_kerberos` names the reason; :class:`~cosdoc_certs.windows.connection.
ConnectionOptions` then gives pypsrp NTLM directly (messages still sealed). On Windows the
client uses SSPI, which takes ``DOMAIN\\user`` and the logon's domain: only the address and
``.\\user`` rules apply there.
"""

from __future__ import annotations

import ipaddress
import sys


def why_not_kerberos(server: str, username: str, *, windows: bool | None = None) -> str | None:
    """Why a Negotiate logon of ``username`` (with a password) to ``server`` cannot be Kerberos.

    None when Kerberos may apply (``user@REALM``, or a bare user with a default realm).
    ``windows`` is whether the client uses SSPI (default: this system is Windows).
    """
    on_windows = sys.platform == "win32" if windows is None else windows
    if _is_address(server):
        return f"{server} is an IP address (Kerberos needs the server's DNS name)"
    domain, backslash, _ = username.rpartition("\\")
    if backslash and domain in ("", "."):
        return f"{username} is a local account"
    if on_windows:
        return None
    if backslash:
        return (
            f"{username} is in the DOMAIN\\user form, which Kerberos here cannot use "
            "(write user@REALM for Kerberos)"
        )
    if "@" not in username and default_realm() is None:
        return f"{username} names no realm and no default Kerberos realm is configured"
    return None


def default_realm() -> str | None:
    """The default Kerberos realm of this system's configuration (krb5.conf), if any."""
    try:
        import krb5
    except ImportError:  # no Kerberos library: Negotiate is NTLM anyway
        return None
    try:
        realm = krb5.get_default_realm(krb5.init_context())
    except krb5.Krb5Error:
        return None
    return realm.decode("utf-8", "replace") or None


def _is_address(server: str) -> bool:
    try:
        ipaddress.ip_address(server.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True
