"""The WinRM authentication methods this package offers, and what each needs from the user.

A module of its own, importing nothing, so the command line can list them in its options
(and ``--help``) without loading the remoting client.
"""

from __future__ import annotations

AUTH_METHODS = ("negotiate", "kerberos", "ntlm", "basic", "certificate")
USER_AUTHS = frozenset({"basic", "ntlm"})  # cannot use the logged-on user's ticket
PASSWORDLESS_AUTHS = frozenset({"kerberos", "certificate"})
