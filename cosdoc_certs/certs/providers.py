"""Windows key providers: where Windows keeps a private key, and what each one can do.

A private key in ``LocalMachine\\My`` lives in a *provider*: a CNG key storage provider
(``Microsoft Software Key Storage Provider``, key file under ``Crypto\\Keys``) or a CAPI
cryptographic service provider (key file under ``Crypto\\RSA\\MachineKeys``). IIS Manager and
``certutil -store My`` show its name ("Provider = ..."). Which one a key is in matters:

- a .NET Framework application that uses ``X509Certificate2.PrivateKey`` can only use CAPI
  keys ("Invalid provider type specified" for a CNG key);
- the legacy PROV_RSA_FULL providers (``Microsoft Enhanced Cryptographic Provider v1.0``,
  ``Microsoft Base Cryptographic Provider v1.0``, ``Microsoft Strong Cryptographic
  Provider``) cannot sign with SHA-256 through CAPI ("Invalid algorithm specified");
- ``Microsoft Enhanced RSA and AES Cryptographic Provider`` (PROV_RSA_AES) is CAPI and signs
  with SHA-256, and CNG-aware code opens it too: the safe choice when nothing else is known.

A PFX names the provider of each key in the key bag's "Microsoft CSP Name" attribute (OID
1.3.6.1.4.1.311.17.1); Windows' PFX import honours it (unless told to always use CNG).
Without it, ``PFXImportCertStore`` without CNG flags takes the default CAPI provider
(:data:`NO_ATTRIBUTE_DEFAULT`), and with ``PKCS12_PREFER_CNG_KSP`` the software KSP.
"""

from __future__ import annotations

import dataclasses
import enum

from cosdoc_certs.errors import InputError

SOFTWARE_KSP = "Microsoft Software Key Storage Provider"
ENHANCED_RSA_AES = "Microsoft Enhanced RSA and AES Cryptographic Provider"
ENHANCED_V1 = "Microsoft Enhanced Cryptographic Provider v1.0"
BASE_V1 = "Microsoft Base Cryptographic Provider v1.0"
STRONG = "Microsoft Strong Cryptographic Provider"
SCHANNEL = "Microsoft RSA SChannel Cryptographic Provider"
PLATFORM_KSP = "Microsoft Platform Crypto Provider"

NO_ATTRIBUTE_DEFAULT = ENHANCED_V1
"""Where ``PFXImportCertStore`` without CNG flags puts an RSA key whose PFX names no provider."""
SAFE_DEFAULT = ENHANCED_RSA_AES
"""The provider chosen when nothing is known: CAPI, signs with SHA-256, opened by CNG code too."""

_PROV_RSA_FULL = 1
_PROV_RSA_SCHANNEL = 12
_PROV_RSA_AES = 24


class KeyApi(str, enum.Enum):
    """Which Windows crypto API a consumer opens its private keys with."""

    ANY = "any"
    """``GetRSAPrivateKey()`` (.NET Framework 4.6+, modern .NET): CNG and CAPI keys both work."""
    CAPI = "capi"
    """``X509Certificate2.PrivateKey`` (.NET Framework): CAPI keys only."""
    CNG = "cng"
    """Code that casts the key to ``RSACng``: CNG keys only."""

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class KeyProvider:
    """A provider by name: CNG or CAPI, its CAPI provider type, and whether it signs SHA-256."""

    name: str
    api: str  # "CNG" or "CAPI"
    provider_type: int | None = None

    @property
    def is_cng(self) -> bool:
        """True for a CNG key storage provider."""
        return self.api == "CNG"

    @property
    def legacy_rsa_full(self) -> bool:
        """True for a PROV_RSA_FULL provider: no SHA-256 signatures through CAPI."""
        return self.provider_type == _PROV_RSA_FULL

    @property
    def key_folder(self) -> str:
        """The machine key folder under ``ProgramData\\Microsoft\\Crypto`` it keeps files in."""
        return "Keys" if self.is_cng else "RSA\\MachineKeys"

    def __str__(self) -> str:
        return self.name


_KNOWN = {
    provider.name.casefold(): provider
    for provider in (
        KeyProvider(SOFTWARE_KSP, "CNG"),
        KeyProvider(PLATFORM_KSP, "CNG"),
        KeyProvider("Microsoft Smart Card Key Storage Provider", "CNG"),
        KeyProvider(ENHANCED_RSA_AES, "CAPI", _PROV_RSA_AES),
        KeyProvider(ENHANCED_V1, "CAPI", _PROV_RSA_FULL),
        KeyProvider(BASE_V1, "CAPI", _PROV_RSA_FULL),
        KeyProvider(STRONG, "CAPI", _PROV_RSA_FULL),
        KeyProvider(SCHANNEL, "CAPI", _PROV_RSA_SCHANNEL),
    )
}
_ALIASES = {
    "cng": SOFTWARE_KSP,
    "ksp": SOFTWARE_KSP,
    "capi": ENHANCED_RSA_AES,
    "capi-aes": ENHANCED_RSA_AES,
    "aes": ENHANCED_RSA_AES,
}


def key_provider(name: str) -> KeyProvider:
    """The provider called ``name``; an unknown name is judged by its wording."""
    known = _KNOWN.get(name.strip().casefold())
    if known is not None:
        return known
    api = "CNG" if "key storage provider" in name.casefold() else "CAPI"
    return KeyProvider(name.strip(), api)


def provider_from_option(text: str) -> str:
    """The provider name meant by a ``--key-provider`` value (a full name or cng/capi/aes)."""
    value = text.strip()
    if not value:
        raise InputError(
            "--key-provider needs a provider name",
            f'write ROLE=cng, ROLE=capi or ROLE="{ENHANCED_RSA_AES}"',
        )
    alias = _ALIASES.get(value.casefold())
    if alias is not None:
        return alias
    known = _KNOWN.get(value.casefold())
    if known is None:
        names = ", ".join(sorted({p.name for p in _KNOWN.values()}))
        raise InputError(
            f"unknown key provider {value!r}",
            f"use cng, capi (= {ENHANCED_RSA_AES}) or one of: {names}",
        )
    return known.name


def unusable_because(provider: KeyProvider, key_api: KeyApi, signs: bool) -> str | None:
    """Why a consumer opening keys with ``key_api`` cannot use ``provider`` (None if it can).

    ``signs``: the consumer signs with SHA-256 (the signing role of Digihelse/KPR).
    """
    if key_api is KeyApi.CAPI and provider.is_cng:
        return "a CAPI-only (.NET Framework PrivateKey) consumer cannot open a CNG key"
    if key_api is KeyApi.CNG and not provider.is_cng:
        return "this consumer opens its key as CNG (RSACng) and cannot use a CAPI key"
    if signs and key_api is not KeyApi.CNG and provider.legacy_rsa_full:
        return (
            f"{provider.name} is a legacy PROV_RSA_FULL provider that cannot sign with SHA-256 "
            '("Invalid algorithm specified")'
        )
    return None
