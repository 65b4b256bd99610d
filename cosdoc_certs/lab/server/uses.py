"""What a simulated CosDoc application does with certificates when it starts: data per consumer.

Each service or IIS application carries a :class:`CertificateUse`: the appsettings.json keys
that hold thumbprints, the role each key wants, and how the application's .NET looks a
thumbprint up. The CosDoc catalog's tables are below; tests build their own to vary them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from cosdoc_certs.certs.providers import KeyApi

RoleName = Literal["signing", "encryption", "ssl"]
SETTINGS_FILE_NAME = "appsettings.json"


class ThumbprintLookup(enum.Enum):
    """How a simulated application finds the certificate a configured thumbprint names.

    ``STRICT``: any character that is not a hex digit or white space makes the lookup fail —
    .NET Framework's ``X509Store.Find(FindByThumbprint)`` decodes such a value into a wrong
    hash, and code comparing ``cert.Thumbprint`` to the string fails the same way. This is
    the field outage the CosDoc guide warns about (an invisible U+200E copied along).
    ``NETCORE``: modern .NET's ``X509Store.Find``, which skips one *leading* U+200E and
    white space (``LaxDecodeHexString`` in dotnet/runtime); a U+200E elsewhere still fails.
    """

    STRICT = "strict"
    NETCORE = "netcore"


@dataclass(frozen=True)
class CertificateSetting:
    """One thumbprint an application reads from its appsettings.json and the role it needs.

    ``key`` is a jsonpath (``CertSettings.EncryptionThumbprint``); ``role`` is ``"signing"``
    (Key Usage Non-Repudiation), ``"encryption"`` (Digital Signature + Key Encipherment +
    Data Encipherment) or ``"ssl"`` (a TLS server certificate).
    """

    key: str
    role: RoleName


@dataclass(frozen=True)
class CertificateUse:
    """What a simulated application does with certificates when it starts: data, per consumer.

    ``key_api`` is how it opens private keys: ``ANY`` (``GetRSAPrivateKey``), ``CAPI`` (a .NET
    Framework program using ``X509Certificate2.PrivateKey``: "Invalid provider type
    specified" for a CNG key, and a signing key in a PROV_RSA_FULL provider cannot sign with
    SHA-256) or ``CNG`` (casts to ``RSACng``).
    """

    settings: tuple[CertificateSetting, ...] = ()
    lookup: ThumbprintLookup = ThumbprintLookup.STRICT
    key_api: KeyApi = KeyApi.ANY


DIGIHELSE_USE = CertificateUse(
    (
        CertificateSetting("CertSettings.EncryptionThumbprint", "encryption"),
        CertificateSetting("CertSettings.SigningThumbprint", "signing"),
    )
)
KPR_USE = DIGIHELSE_USE
AUTHENTICATION_USE = CertificateUse(
    (
        CertificateSetting("ClientCertThumbprint", "encryption"),
        CertificateSetting("SigningCertificateThumbprint", "signing"),
        CertificateSetting("SSLCertificateThumbprint", "ssl"),
    )
)
SKATT_USE = CertificateUse((CertificateSetting("MaskinportenConfig.SertifikatAvtrykk", "signing"),))
NO_CERTIFICATES = CertificateUse()
