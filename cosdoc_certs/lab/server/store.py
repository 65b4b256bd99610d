"""The simulated ``Cert:\\LocalMachine\\My`` store: certificates, keys, key files with ACLs.

A certificate with a private key has a key file on the simulated file system, as Windows
keeps it: CNG keys (Microsoft Software Key Storage Provider) under
``C:\\ProgramData\\Microsoft\\Crypto\\Keys\\<unique name>``, CAPI keys under
``C:\\ProgramData\\Microsoft\\Crypto\\RSA\\MachineKeys\\<unique name>``. The file holds a marker,
never key material: the key itself stays in memory. Who may read the key file is the entry's
``readers`` set of SIDs (always SYSTEM ``S-1-5-18`` and Administrators ``S-1-5-32-544`` after
an import, like Windows' default machine-key ACL); names come from the server's
:class:`~cosdoc_certs.lab.server.accounts.AccountDirectory`, in its language. Each key has its
provider by name (:mod:`cosdoc_certs.certs.providers`): CNG keys the software KSP, CAPI keys a
CSP; a key kept by a TPM or smart-card provider has a unique name but no file in any machine
key folder.

What .NET hands a script for a private key is modelled too (:meth:`CertificateStore.key_handle`):
on .NET Framework 4.6+ ``GetRSAPrivateKey`` opens software CAPI keys through CNG and returns an
``RSACng`` whose ``Key.UniqueName`` is the CAPI container file under ``RSA\\MachineKeys``
(``dotnet_opens_capi_as_cng``).

Importing a PFX puts each key into the provider its key bag's "Microsoft CSP Name" attribute
names, as ``PFXImportCertStore`` does unless told to always use CNG; a key whose PFX names
none goes to the import's default (``Import-PfxCertificate``: the software KSP; ``.NET``'s
``X509Certificate2`` import without CNG flags: the default CAPI provider). Only the
certificates of the PFX go into ``My``, CA certificates too (without a key), as
``Import-PfxCertificate`` puts every certificate of a PFX into the store it names: a CA there
is clutter that later gathers list. :attr:`CertificateStore.authorities` are the CA and Root
stores; chains are built from them and from CA certificates in ``My`` (Windows' chain engine
searches both).

Importing a certificate that is already in the store creates a new key container with the
default ACL, as Windows does: read grants given to the old key file are gone afterwards.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from cosdoc_certs.certs.load import FileContents, read_certificate_file
from cosdoc_certs.certs.pkcs12 import parse_pfx
from cosdoc_certs.certs.providers import ENHANCED_RSA_AES, PLATFORM_KSP, SOFTWARE_KSP, key_provider
from cosdoc_certs.errors import CertificateLoadError
from cosdoc_certs.lab.server.accounts import DEFAULT_KEY_READERS, AccountDirectory
from cosdoc_certs.lab.server.errors import SimulatedWindowsError
from cosdoc_certs.lab.server.files import WindowsFileSystem, windows_join
from cosdoc_certs.thumbprints import normalize_thumbprint, thumbprint_of_der

logger = logging.getLogger(__name__)

KeyStorage = Literal["CNG", "CAPI"]
CNG_KEY_FOLDER = "C:\\ProgramData\\Microsoft\\Crypto\\Keys"
CAPI_KEY_FOLDER = "C:\\ProgramData\\Microsoft\\Crypto\\RSA\\MachineKeys"
SYSTEM_KEY_FOLDER = "C:\\ProgramData\\Microsoft\\Crypto\\SystemKeys"
MACHINE_KEY_FOLDERS = (CNG_KEY_FOLDER, CAPI_KEY_FOLDER, SYSTEM_KEY_FOLDER)
_KEY_FOLDERS: dict[str, str] = {"CNG": CNG_KEY_FOLDER, "CAPI": CAPI_KEY_FOLDER}
_HARDWARE_PROVIDERS = frozenset({PLATFORM_KSP, "Microsoft Smart Card Key Storage Provider"})
DEFAULT_PROVIDERS: dict[str, str] = {"CNG": SOFTWARE_KSP, "CAPI": ENHANCED_RSA_AES}
"""The provider a key added as CNG or CAPI gets when no provider is named."""
IMPORT_PFX_DEFAULT = SOFTWARE_KSP
"""Where ``Import-PfxCertificate`` puts a key whose PFX names no provider (Server 2016+)."""
_WRONG_PASSWORD = "The specified network password is not correct."  # noqa: S105 -- a message
_ERROR_INVALID_PASSWORD = 0x80070056
_ERROR_INVALID_DATA = 0x8007000D
_IMPORT_ERROR_ID = (
    "System.Security.Cryptography.CryptographicException,"
    "Microsoft.CertificateServices.Commands.ImportPfxCertificate"
)
_CRYPT_E_NOT_FOUND = 0x80092004
_MAX_CHAIN = 8


@dataclass(eq=False)
class StoreEntry:
    """One certificate in ``LocalMachine\\My``, with its private key and key file if it has one.

    ``key_storage`` is ``"CNG"``, ``"CAPI"`` or None (no key); ``key_provider`` the name of
    its provider; ``key_file`` is the key file's Windows path; ``readers`` are the accounts
    with read on the key file; ``dacl_locked`` models a key file whose owner is another
    account and whose DACL gives the administrators no WRITE_DAC (icacls is denied).
    """

    certificate: x509.Certificate
    private_key: PrivateKeyTypes | None = field(default=None, repr=False)
    key_storage: KeyStorage | None = None
    key_provider: str | None = None
    key_file: str | None = None
    readers: set[str] = field(default_factory=set)
    friendly_name: str = ""
    unique_name: str = ""
    accounts: AccountDirectory | None = field(default=None, repr=False)
    dacl_locked: bool = False

    @property
    def thumbprint(self) -> str:
        """The certificate's thumbprint, upper-case hex."""
        return thumbprint_of_der(self.der)

    @property
    def der(self) -> bytes:
        """The certificate's DER bytes (``RawData`` on Windows)."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def has_private_key(self) -> bool:
        """True if the store holds the private key (``HasPrivateKey``)."""
        return self.private_key is not None

    def can_read_key(self, account: str) -> bool:
        """True if ``account`` (a name, ``StartName`` or SID) may read the key file."""
        if self.key_file is None or self.accounts is None:
            return False
        try:
            sid = self.accounts.logon_sid(account)
        except SimulatedWindowsError:
            return False  # an account Windows cannot map cannot log on either
        return self.accounts.can_read(sid, self.readers)


@dataclass(frozen=True)
class KeyHandle:
    """What ``GetRSAPrivateKey`` returns: ``RSACng`` (``Key.Provider``, ``Key.UniqueName``) or
    ``RSACryptoServiceProvider`` (``CspKeyContainerInfo``), as .NET Framework 4.8 does."""

    kind: Literal["RSACng", "RSACryptoServiceProvider"]
    provider: str
    unique_name: str


class CertificateStore:
    """``Cert:\\LocalMachine\\My`` of one simulated server; key files live in ``files``."""

    def __init__(
        self, files: WindowsFileSystem, machine_guid: str, accounts: AccountDirectory
    ) -> None:
        self.files = files
        self.machine_guid = machine_guid
        self.accounts = accounts
        self.dotnet_opens_capi_as_cng = False
        self.entries: dict[str, StoreEntry] = {}
        self.authorities: dict[str, x509.Certificate] = {}
        self.pfx_import_always_cng = False
        """True models a server whose PFX import passes ``PKCS12_ALWAYS_CNG_KSP``: every key
        lands in the software KSP whatever its PFX names."""

    def add(
        self,
        certificate: x509.Certificate,
        private_key: PrivateKeyTypes | None = None,
        *,
        key_storage: KeyStorage = "CNG",
        readers: Iterable[str] = (),
        friendly_name: str = "",
        provider: str | None = None,
    ) -> StoreEntry:
        """Put ``certificate`` (and its key, in a new key file) in the store; returns the entry.

        The key goes into ``provider`` (by name; its CNG/CAPI kind wins over ``key_storage``)
        or the default provider of ``key_storage``; a TPM or smart-card provider keeps it
        without a file. Adding a certificate without a key that the store already holds keeps
        the existing entry.
        """
        entry = StoreEntry(certificate, friendly_name=friendly_name, accounts=self.accounts)
        previous = self.entries.get(entry.thumbprint)
        if private_key is None and previous is not None:
            return previous
        if private_key is not None:
            if provider is not None:
                key_storage = "CNG" if key_provider(provider).is_cng else "CAPI"
            entry.private_key = private_key
            entry.key_storage = key_storage
            entry.key_provider = provider or DEFAULT_PROVIDERS[key_storage]
            entry.unique_name = f"{uuid.uuid4().hex}_{self.machine_guid}"
            if entry.key_provider not in _HARDWARE_PROVIDERS:
                entry.key_file = self._new_key_file(entry, key_storage)
            entry.readers = set(DEFAULT_KEY_READERS)
            entry.readers.update(self.accounts.logon_sid(reader) for reader in readers)
        if previous is not None:
            self._delete_key_file(previous)
        self.entries[entry.thumbprint] = entry
        logger.debug("store: added %s (key: %s)", entry.thumbprint, entry.key_storage)
        return entry

    def import_pfx(
        self, data: bytes, password: str, *, default_provider: str = IMPORT_PFX_DEFAULT
    ) -> list[str]:
        """Import a PFX like ``Import-PfxCertificate``; returns the thumbprints put in the store.

        Every certificate goes in — CA certificates too, without a key — each end-entity one
        with its key if the PFX holds it (a Buypass PFX may hold both keys of the pair), in
        the provider the key bag names, else ``default_provider``.
        """
        contents = _read_pfx(data, password)
        imported = []
        for certificate in contents.certificates:
            if _is_ca(certificate):
                imported.append(self.add(certificate).thumbprint)
                continue
            key = _matching_key(certificate, contents.private_keys)
            named = contents.provider_of(key) if key is not None else None
            provider = SOFTWARE_KSP if self.pfx_import_always_cng else named or default_provider
            imported.append(self.add(certificate, key, provider=provider).thumbprint)
        logger.info("store: imported %d certificate(s) from a PFX", len(imported))
        return imported

    def add_authority(self, certificate: x509.Certificate) -> str:
        """Put the CA ``certificate`` into Windows' CA (or Root) store; returns its thumbprint."""
        der = certificate.public_bytes(serialization.Encoding.DER)
        thumbprint = thumbprint_of_der(der)
        self.authorities[thumbprint] = certificate
        return thumbprint

    def remove_authority(self, thumbprint: str) -> bool:
        """Take a CA certificate out of the CA store; False when it was not there."""
        return self.authorities.pop(normalize_thumbprint(thumbprint), None) is not None

    def chain_for(self, certificate: x509.Certificate) -> list[x509.Certificate]:
        """The issuing CAs of ``certificate`` (CA/Root stores, CAs in ``My``), nearest first."""
        chain: list[x509.Certificate] = []
        current = certificate
        candidates = [
            *self.authorities.values(),
            *(e.certificate for e in self.entries.values() if _is_ca(e.certificate)),
        ]
        while current.issuer != current.subject and len(chain) < _MAX_CHAIN:
            issuer = next((ca for ca in candidates if ca.subject == current.issuer), None)
            if issuer is None or issuer in chain:
                break
            chain.append(issuer)
            current = issuer
        return chain

    def find(self, thumbprint: str) -> StoreEntry | None:
        """The entry with ``thumbprint`` (normalised first), or None."""
        return self.entries.get(normalize_thumbprint(thumbprint))

    def get(self, thumbprint: str) -> StoreEntry:
        """The entry with ``thumbprint``; raises like ``Get-Item Cert:\\...`` if there is none."""
        entry = self.find(thumbprint)
        if entry is None:
            raise SimulatedWindowsError(
                f"Cannot find path 'Cert:\\LocalMachine\\My\\{thumbprint}' because it does not "
                "exist.",
                error_id="PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand",
                category="ObjectNotFound",
                hresult=_CRYPT_E_NOT_FOUND,
                target=thumbprint,
            )
        return entry

    def key_handle(self, thumbprint: str) -> KeyHandle | None:
        """What ``GetRSAPrivateKey`` returns for the certificate's key (None without a key)."""
        entry = self.get(thumbprint)
        if not entry.has_private_key:
            return None
        if entry.key_storage == "CAPI" and not self.dotnet_opens_capi_as_cng:
            return KeyHandle("RSACryptoServiceProvider", str(entry.key_provider), entry.unique_name)
        provider = SOFTWARE_KSP if entry.key_storage == "CAPI" else str(entry.key_provider)
        return KeyHandle("RSACng", provider, entry.unique_name)

    def grant_read(self, thumbprint: str, trustee: str) -> None:
        """``icacls <key file> /grant <trustee>:(R)``: ``*S-1-…`` or a name this server resolves.

        A name Windows cannot map (``.\\user``, ``NT AUTHORITY\\NetworkService``, an English
        name on a Norwegian server) fails with icacls' error 1332.
        """
        entry = self._entry_with_key(thumbprint)
        if entry.dacl_locked:
            raise SimulatedWindowsError(
                f"{entry.key_file}: Access is denied. Successfully processed 0 files; "
                "Failed processing 1 files",
                error_id="IcaclsAccessDenied",
                category="PermissionDenied",
                hresult=0x80070005,
                target=str(entry.key_file),
            )
        entry.readers.add(self.accounts.icacls_sid(trustee))

    def grant_account(self, thumbprint: str, account: str) -> None:
        """Give the account a service or pool runs as read on the key file (lab set-up)."""
        entry = self._entry_with_key(thumbprint)
        entry.readers.add(self.accounts.logon_sid(account))

    def revoke_read(self, thumbprint: str, account: str) -> None:
        """Take ``account``'s own read grant off the key file (groups are left alone)."""
        entry = self._entry_with_key(thumbprint)
        entry.readers.discard(self.accounts.logon_sid(account))

    def remove(self, thumbprint: str) -> None:
        """Delete the certificate and its key file (``Remove-Item Cert:\\... -DeleteKey``)."""
        entry = self.get(thumbprint)
        self._delete_key_file(entry)
        del self.entries[entry.thumbprint]

    def _entry_with_key(self, thumbprint: str) -> StoreEntry:
        entry = self.get(thumbprint)
        if entry.key_file is None:
            raise SimulatedWindowsError(
                f"The certificate {entry.thumbprint} has no key file to grant access to.",
                error_id="NoPrivateKey",
                category="InvalidOperation",
                hresult=0x8009000D,
                target=entry.thumbprint,
            )
        return entry

    def _new_key_file(self, entry: StoreEntry, key_storage: KeyStorage) -> str:
        path = windows_join(_KEY_FOLDERS[key_storage], entry.unique_name)
        marker = f"simulated {key_storage} key container for {entry.thumbprint}; no key material\n"
        self.files.write(path, marker.encode("ascii"))
        return path

    def _delete_key_file(self, entry: StoreEntry) -> None:
        if entry.key_file is not None and self.files.is_file(entry.key_file):
            self.files.delete(entry.key_file)


def open_pfx(data: bytes, password: str) -> str:
    """``New-Object X509Certificate2(bytes, password)`` in memory: the thumbprint of the first
    certificate with its key in the PFX; fails like Windows on a wrong password or bad data."""
    contents = _read_pfx(data, password)
    for certificate in contents.certificates:
        if not _is_ca(certificate) and _matching_key(certificate, contents.private_keys):
            return thumbprint_of_der(certificate.public_bytes(serialization.Encoding.DER))
    return thumbprint_of_der(contents.certificates[0].public_bytes(serialization.Encoding.DER))


def _read_pfx(data: bytes, password: str) -> FileContents:
    try:
        return read_certificate_file("PFX", data, password.encode("utf-8") if password else None)
    except CertificateLoadError:
        pass
    try:
        parse_pfx(data)
    except ValueError:
        raise SimulatedWindowsError(
            "The data is invalid.",
            error_id=_IMPORT_ERROR_ID,
            category="InvalidData",
            hresult=_ERROR_INVALID_DATA,
        ) from None
    raise SimulatedWindowsError(
        _WRONG_PASSWORD,
        error_id=_IMPORT_ERROR_ID,
        category="NotSpecified",
        hresult=_ERROR_INVALID_PASSWORD,
    )


def _matching_key(
    certificate: x509.Certificate, keys: Iterable[PrivateKeyTypes]
) -> PrivateKeyTypes | None:
    wanted = _public_der(certificate.public_key())
    return next((key for key in keys if _public_der(key.public_key()) == wanted), None)


def _public_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca
