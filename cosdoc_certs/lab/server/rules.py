"""The start rules: why a simulated CosDoc service or app pool would fail to start.

An application reads the thumbprints its :class:`~cosdoc_certs.lab.model.CertificateUse` names
from its ``appsettings.json`` and, for each, needs a certificate in ``LocalMachine\\My`` that

1. is found by the configured value, the way that application's .NET looks it up
   (:class:`~cosdoc_certs.lab.model.ThumbprintLookup`: an invisible U+200E breaks a STRICT
   lookup, a NETCORE lookup skips one leading U+200E);
2. is time-valid now (the server's clock);
3. has the role the key wants (classified from Key Usage / Extended Key Usage);
4. has a private key;
5. has a key file the account running the application can read ("Keyset does not exist");
6. has its key in a provider the application can open (:attr:`CertificateUse.key_api`): a
   CAPI-only .NET Framework program fails on a CNG key, signing with SHA-256 fails on a key in
   a legacy PROV_RSA_FULL provider (it is opened as RSACryptoServiceProvider), a program that
   casts to ``RSACng`` fails on a CAPI key.

Each failure is one line worded like the .NET exception the real application would log; the
lines end up in the server's event log.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

from cosdoc_certs.appsettings import AppSettings
from cosdoc_certs.certs import Role, classify
from cosdoc_certs.certs.providers import KeyApi, key_provider
from cosdoc_certs.errors import ConfigFileError
from cosdoc_certs.lab.server.errors import PathNotFoundError
from cosdoc_certs.lab.server.files import windows_join
from cosdoc_certs.lab.server.uses import (
    SETTINGS_FILE_NAME,
    CertificateSetting,
    CertificateUse,
    ThumbprintLookup,
)
from cosdoc_certs.thumbprints import show_invisible

if TYPE_CHECKING:
    from cosdoc_certs.lab.model import AppPool, CosDocServer, WindowsService
    from cosdoc_certs.lab.server.store import StoreEntry

_LEFT_TO_RIGHT_MARK = "\u200e"
_INVALID_NIBBLE = 0xFF
_ROLE_WORDS = {
    "signing": "a signing certificate (Key Usage Non-Repudiation)",
    "encryption": (
        "an encryption certificate (Key Usage Digital Signature, Key Encipherment, "
        "Data Encipherment)"
    ),
    "ssl": "an SSL server certificate (Extended Key Usage Server Authentication)",
}


def service_problems(server: CosDocServer, service: WindowsService) -> list[str]:
    """Why ``service`` cannot start now (empty if it can)."""
    return _problems(server, service.settings_file, service.uses, service.account)


def pool_problems(server: CosDocServer, pool: AppPool) -> list[str]:
    """Why the applications of ``pool`` cannot start now (empty if they all can)."""
    problems: list[str] = []
    for application in server.applications_in_pool(pool.name):
        folder = server.expand_environment(application.physical_path)
        settings_file = windows_join(folder, SETTINGS_FILE_NAME)
        found = _problems(server, settings_file, application.uses, pool.account)
        problems.extend(
            f"Application '/LM/W3SVC/{server.site(application.site).id}/ROOT{application.path}' "
            f"failed to start. Exception: {problem}"
            for problem in found
        )
    return problems


def lookup_value(server: CosDocServer, value: str, lookup: ThumbprintLookup) -> StoreEntry | None:
    """The store entry an application finds for the configured ``value``, or None.

    Both .NET decoders drop white space and turn each pair of characters into a byte, a
    non-hex character giving a wrong nibble; the NETCORE one first skips a leading U+200E.
    """
    if lookup is ThumbprintLookup.NETCORE and value.startswith(_LEFT_TO_RIGHT_MARK):
        value = value[1:]
    nibbles = [_nibble(char) for char in value if not char.isspace()]
    digest = bytes(
        ((high << 4) | low) & 0xFF for high, low in zip(nibbles[::2], nibbles[1::2], strict=False)
    )
    return server.store.entries.get(digest.hex().upper())


def _problems(
    server: CosDocServer, settings_file: str, uses: CertificateUse, account: str
) -> list[str]:
    if not uses.settings:
        return []
    try:
        settings = AppSettings.parse(server.files.read(settings_file), source=settings_file)
    except PathNotFoundError:
        return [f"System.IO.FileNotFoundException: Could not find file '{settings_file}'."]
    except ConfigFileError as error:
        return [
            "System.IO.InvalidDataException: Failed to load configuration from file "
            f"'{settings_file}': {error.problem}"
        ]
    problems = []
    for setting in uses.settings:
        try:
            found = settings.find(setting.key)
        except ConfigFileError as error:
            problems.append(f"System.InvalidOperationException: {error.problem}")
            continue
        problem = _setting_problem(server, setting, found.value if found else None, uses, account)
        if problem:
            problems.append(problem)
    return problems


def _setting_problem(
    server: CosDocServer,
    setting: CertificateSetting,
    value: str | None,
    uses: CertificateUse,
    account: str,
) -> str:
    key = setting.key.replace(".", ":")
    if not value:
        return f"System.InvalidOperationException: The setting {key} is not set."
    entry = lookup_value(server, value, uses.lookup)
    if entry is None:
        return (
            "System.InvalidOperationException: Cannot find certificate with thumbprint "
            f"'{show_invisible(value)}' ({key}) in LocalMachine\\My."
        )
    return _certificate_problem(server, setting, key, entry, account, uses.key_api)


def _certificate_problem(
    server: CosDocServer,
    setting: CertificateSetting,
    key: str,
    entry: StoreEntry,
    account: str,
    key_api: KeyApi,
) -> str:
    now = server.now()
    certificate = entry.certificate
    if now > certificate.not_valid_after_utc:
        return (
            f"System.Security.Cryptography.CryptographicException: The certificate "
            f"{entry.thumbprint} ({key}) expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z."
        )
    if now < certificate.not_valid_before_utc:
        return (
            f"System.Security.Cryptography.CryptographicException: The certificate "
            f"{entry.thumbprint} ({key}) is not valid before "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z."
        )
    if classify(certificate) is not Role[setting.role.upper()]:
        return (
            f"System.InvalidOperationException: The certificate {entry.thumbprint} ({key}) is "
            f"not {_ROLE_WORDS[setting.role]}."
        )
    if not entry.has_private_key:
        return (
            "System.Security.Cryptography.CryptographicException: The certificate "
            f"{entry.thumbprint} ({key}) has no private key."
        )
    if not entry.can_read_key(account):
        return (
            "System.Security.Cryptography.CryptographicException: Keyset does not exist "
            f"(certificate {entry.thumbprint}, {key}: {account} cannot read {entry.key_file})."
        )
    return _provider_problem(setting, key, entry, key_api)


def _provider_problem(
    setting: CertificateSetting, key: str, entry: StoreEntry, key_api: KeyApi
) -> str:
    """The exception a program opening keys with ``key_api`` gets for the key of ``entry``."""
    provider = key_provider(entry.key_provider or "")
    where = f"(certificate {entry.thumbprint}, {key}, key in {provider.name})"
    if key_api is KeyApi.CAPI and provider.is_cng:
        return (
            "System.Security.Cryptography.CryptographicException: Invalid provider type "
            f"specified {where}."
        )
    if key_api is KeyApi.CNG and not provider.is_cng:
        return (
            "System.InvalidCastException: Unable to cast object of type "
            f"'System.Security.Cryptography.RSACryptoServiceProvider' to type "
            f"'System.Security.Cryptography.RSACng' {where}."
        )
    if key_api is not KeyApi.CNG and setting.role == "signing" and provider.legacy_rsa_full:
        return (
            "System.Security.Cryptography.CryptographicException: Invalid algorithm specified "
            f"(signing with SHA-256) {where}."
        )
    return ""


def _nibble(char: str) -> int:
    return int(char, 16) if char in string.hexdigits else _INVALID_NIBBLE
