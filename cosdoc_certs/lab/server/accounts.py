"""Windows account names as the simulated server compares them: aliases, case, a few groups.

Windows shows one account under several names: a service's StartName ``LocalSystem`` is the
ACL's ``NT AUTHORITY\\SYSTEM``; ``NT AUTHORITY\\NetworkService`` is ``NT AUTHORITY\\NETWORK
SERVICE``. Names compare case-insensitively. The groups that matter for key-file ACLs are
modelled: ``BUILTIN\\IIS_IUSRS`` holds every ``IIS AppPool\\<pool>`` identity, ``Everyone`` and
``NT AUTHORITY\\Authenticated Users`` hold every account, and ``BUILTIN\\Administrators`` holds
``NT AUTHORITY\\SYSTEM``.
"""

from __future__ import annotations

from collections.abc import Iterable

SYSTEM = "NT AUTHORITY\\SYSTEM"
NETWORK_SERVICE = "NT AUTHORITY\\NETWORK SERVICE"
LOCAL_SERVICE = "NT AUTHORITY\\LOCAL SERVICE"
ADMINISTRATORS = "BUILTIN\\Administrators"
IIS_IUSRS = "BUILTIN\\IIS_IUSRS"
APP_POOL_PREFIX = "IIS AppPool\\"
DEFAULT_KEY_READERS = frozenset({SYSTEM, ADMINISTRATORS})

_ALIASES = {
    "localsystem": SYSTEM,
    ".\\localsystem": SYSTEM,
    "nt authority\\system": SYSTEM,
    "system": SYSTEM,
    "networkservice": NETWORK_SERVICE,
    "nt authority\\networkservice": NETWORK_SERVICE,
    "nt authority\\network service": NETWORK_SERVICE,
    "localservice": LOCAL_SERVICE,
    "nt authority\\localservice": LOCAL_SERVICE,
    "nt authority\\local service": LOCAL_SERVICE,
}
_EVERYBODY = frozenset({"everyone", "nt authority\\authenticated users", "builtin\\users"})


def canonical_account(name: str) -> str:
    """The name an ACL shows for ``name`` (``LocalSystem`` → ``NT AUTHORITY\\SYSTEM``)."""
    return _ALIASES.get(name.strip().casefold(), name.strip())


def can_read(account: str, readers: Iterable[str]) -> bool:
    """True if ``account`` is in ``readers`` itself or through one of the modelled groups."""
    wanted = canonical_account(account).casefold()
    for reader in readers:
        granted = canonical_account(reader).casefold()
        if granted == wanted or granted in _EVERYBODY:
            return True
        if granted == IIS_IUSRS.casefold() and wanted.startswith(APP_POOL_PREFIX.casefold()):
            return True
        if granted == ADMINISTRATORS.casefold() and wanted == SYSTEM.casefold():
            return True
    return False
