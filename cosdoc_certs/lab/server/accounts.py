"""Windows accounts as the simulated server knows them: SIDs, localized names, a few groups.

Windows keeps an account as a SID; names are only how a server *shows* it, in its display
language. On an English server NETWORK SERVICE (``S-1-5-20``) is ``NT AUTHORITY\\NETWORK
SERVICE``; on a Norwegian one it is ``NT-MYNDIGHET\\NETTVERKSTJENESTE``, and the English name
does not resolve there (``LookupAccountName`` fails, icacls exits 1332 "No mapping between
account names and security IDs was done.").

:class:`AccountDirectory` answers the questions the scripts ask:

- :meth:`~AccountDirectory.lookup` — ``NTAccount.Translate`` / icacls: a name in this server's
  language → SID; ``.\\user`` and the Service Control Manager's short spellings
  (``NT AUTHORITY\\NetworkService``) do **not** resolve, as on Windows;
- :meth:`~AccountDirectory.logon_sid` — the account a service or pool actually runs as: the
  SCM also accepts ``.\\user``, ``LocalSystem`` and the short spellings in ``StartName``;
- :meth:`~AccountDirectory.name_of` — ``SecurityIdentifier.Translate``: the localized name.

Virtual accounts (``IIS AppPool\\X``, ``NT SERVICE\\X``) get the SIDs Windows derives for them
(``S-1-5-82-…``: SHA-1 of the lower-case pool name in UTF-16LE; ``S-1-5-80-…``: of the
upper-case service name — checked against the published SIDs of ``IIS AppPool\\DefaultAppPool``
and ``NT SERVICE\\TrustedInstaller``). Domain and local
accounts get a stable made-up SID. The groups that matter for key-file ACLs are modelled:
``BUILTIN\\IIS_IUSRS`` holds every app-pool identity, ``Everyone``, ``Authenticated Users``
and ``BUILTIN\\Users`` hold every account, ``BUILTIN\\Administrators`` holds SYSTEM.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Literal

from cosdoc_certs.lab.server.errors import SimulatedWindowsError

Language = Literal["en", "nb"]

SYSTEM_SID = "S-1-5-18"
LOCAL_SERVICE_SID = "S-1-5-19"
NETWORK_SERVICE_SID = "S-1-5-20"
ADMINISTRATORS_SID = "S-1-5-32-544"
USERS_SID = "S-1-5-32-545"
IIS_IUSRS_SID = "S-1-5-32-568"
EVERYONE_SID = "S-1-1-0"
AUTHENTICATED_USERS_SID = "S-1-5-11"
DEFAULT_KEY_READERS = frozenset({SYSTEM_SID, ADMINISTRATORS_SID})
APP_POOL_PREFIX = "IIS AppPool\\"
SERVICE_PREFIX = "NT SERVICE\\"
NO_MAPPING = 1332
NO_MAPPING_MESSAGE = "No mapping between account names and security IDs was done."

_WELL_KNOWN: dict[Language, dict[str, str]] = {
    "en": {
        SYSTEM_SID: "NT AUTHORITY\\SYSTEM",
        LOCAL_SERVICE_SID: "NT AUTHORITY\\LOCAL SERVICE",
        NETWORK_SERVICE_SID: "NT AUTHORITY\\NETWORK SERVICE",
        ADMINISTRATORS_SID: "BUILTIN\\Administrators",
        USERS_SID: "BUILTIN\\Users",
        IIS_IUSRS_SID: "BUILTIN\\IIS_IUSRS",
        EVERYONE_SID: "Everyone",
        AUTHENTICATED_USERS_SID: "NT AUTHORITY\\Authenticated Users",
    },
    "nb": {
        SYSTEM_SID: "NT-MYNDIGHET\\SYSTEM",
        LOCAL_SERVICE_SID: "NT-MYNDIGHET\\LOKAL TJENESTE",
        NETWORK_SERVICE_SID: "NT-MYNDIGHET\\NETTVERKSTJENESTE",
        ADMINISTRATORS_SID: "BUILTIN\\Administratorer",
        USERS_SID: "BUILTIN\\Brukere",
        IIS_IUSRS_SID: "BUILTIN\\IIS_IUSRS",
        EVERYONE_SID: "Alle",
        AUTHENTICATED_USERS_SID: "NT-MYNDIGHET\\Godkjente brukere",
    },
}
# What the Service Control Manager accepts in a service's StartName besides resolvable names
# (language-independent literals; LookupAccountName does not know them).
_SCM_SPELLINGS = {
    "localsystem": SYSTEM_SID,
    ".\\localsystem": SYSTEM_SID,
    "nt authority\\localservice": LOCAL_SERVICE_SID,
    "nt authority\\networkservice": NETWORK_SERVICE_SID,
}
_EVERYBODY = frozenset({EVERYONE_SID, AUTHENTICATED_USERS_SID, USERS_SID})
_APP_POOL_AUTHORITY = 82
_VIRTUAL = {APP_POOL_PREFIX.casefold(): _APP_POOL_AUTHORITY, SERVICE_PREFIX.casefold(): 80}


class AccountDirectory:
    """The accounts of one simulated server (see the module docstring)."""

    def __init__(self, computer_name: str, language: Language = "en") -> None:
        self.computer_name = computer_name
        self.language: Language = language
        self.local_users: set[str] = set()
        self._names: dict[str, str] = {}
        self._known: dict[str, str] = {}

    def add_known(self, name: str, sid: str) -> None:
        """Make ``name`` resolve to ``sid`` (an account as a captured server resolved it)."""
        self._known[name.strip().casefold()] = sid.upper()
        self._remember(sid.upper(), name.strip())

    def add_local_user(self, user: str) -> str:
        """Create the local account ``COMPUTER\\user``; returns its SID."""
        self.local_users.add(user.casefold())
        return self.lookup(f"{self.computer_name}\\{user}")

    def lookup(self, name: str) -> str:
        """The SID of ``name`` as ``NTAccount.Translate`` / icacls resolve it, or error 1332."""
        text = name.strip()
        folded = text.casefold()
        if folded in self._known:
            return self._known[folded]
        for sid, shown in _WELL_KNOWN[self.language].items():
            if shown.casefold() == folded:
                return sid
        domain, _, user = text.rpartition("\\")
        prefix = f"{domain}\\".casefold()
        if prefix in _VIRTUAL and user:
            return self._remember(_virtual_sid(_VIRTUAL[prefix], user), f"{domain}\\{user}")
        if domain.casefold() == self.computer_name.casefold() and user.casefold() in (
            self.local_users
        ):
            return self._remember(_account_sid(self.computer_name, user), text)
        if domain and user and domain not in (".",) and not _authority(domain):
            return self._remember(_account_sid(domain, user), text)
        raise SimulatedWindowsError(
            f"{text}: {NO_MAPPING_MESSAGE}",
            error_id="IdentityNotMappedException",
            category="InvalidArgument",
            hresult=0x80070000 | NO_MAPPING,
            target=text,
        )

    def logon_sid(self, account: str) -> str:
        """The SID a service (``StartName``) or pool identity runs as; a SID passes through."""
        text = account.strip().removeprefix("*")
        if text.upper().startswith("S-1-"):
            return text.upper()
        folded = text.casefold()
        if folded in self._known:
            return self._known[folded]
        if folded in _SCM_SPELLINGS:
            return _SCM_SPELLINGS[folded]
        if folded.startswith(".\\"):
            return self.lookup(f"{self.computer_name}\\{text[2:]}")
        return self.lookup(text)

    def icacls_sid(self, trustee: str) -> str:
        """The SID icacls grants to for ``trustee``: ``*S-1-…`` as given, else a name lookup."""
        if trustee.startswith("*"):
            return trustee[1:].upper()
        return self.lookup(trustee)

    def name_of(self, sid: str) -> str | None:
        """The localized name of ``sid`` (``SecurityIdentifier.Translate``), None if unknown."""
        return _WELL_KNOWN[self.language].get(sid) or self._names.get(sid)

    def can_read(self, sid: str, readers: Iterable[str]) -> bool:
        """True if ``sid`` is one of ``readers`` or in one of the modelled groups there."""
        for reader in readers:
            if reader == sid or reader in _EVERYBODY:
                return True
            if reader == IIS_IUSRS_SID and sid.startswith("S-1-5-82-"):
                return True
            if reader == ADMINISTRATORS_SID and sid == SYSTEM_SID:
                return True
        return False

    def _remember(self, sid: str, name: str) -> str:
        self._names.setdefault(sid, name)
        return sid


def _authority(domain: str) -> bool:
    """True for NT AUTHORITY / BUILTIN in any language (their names resolve only as listed)."""
    known = {
        shown.rpartition("\\")[0].casefold()
        for names in _WELL_KNOWN.values()
        for shown in names.values()
    }
    return domain.casefold() in known | {"nt authority", "builtin"}


def _virtual_sid(authority: int, name: str) -> str:
    """The SID Windows derives for a virtual account from its name (SHA-1 over UTF-16LE)."""
    cased = name.lower() if authority == _APP_POOL_AUTHORITY else name.upper()
    digest = hashlib.sha1(cased.encode("utf-16-le")).digest()  # noqa: S324 -- Windows' rule
    parts = struct.unpack("<5I", digest)
    return f"S-1-5-{authority}-" + "-".join(str(part) for part in parts)


def _account_sid(domain: str, user: str) -> str:
    """A stable made-up SID for a domain or local account (S-1-5-21-a-b-c-rid)."""
    domain_part = struct.unpack("<3I", hashlib.sha256(domain.casefold().encode()).digest()[:12])
    rid = 1000 + int.from_bytes(hashlib.sha256(user.casefold().encode()).digest()[:2], "little")
    return "S-1-5-21-" + "-".join(str(part) for part in domain_part) + f"-{rid}"
