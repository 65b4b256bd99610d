"""Private keys read fast, and checked with a signature instead of OpenSSL's primality tests.

Loading an RSA private key through ``cryptography`` runs OpenSSL's full key check, which
tests both primes: about 60 ms per 2048-bit key on a 2-core machine, more than the PFX's own
key derivation, and paid again every time the key is read (the client, and the lab's
simulated import). The keys this tool reads are the customer's own certificate keys, from a
file the consultant was handed with its password; the risk the full check guards against is
a key built to misbehave, which such a file is not. What matters here is that a key is
whole and consistent, so that Windows and nginx get a key that works: every RSA key read
through this module signs a fixed message and the signature is verified with its public key
(under a millisecond). A damaged key (wrong CRT values, a flipped bit in a prime) fails that
and is reported as damaged.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

_PROBE = b"cosdoc-certs key consistency probe"


class DamagedKeyError(ValueError):
    """A private key whose parts do not fit together (its signature does not verify)."""


def load_der_key(data: bytes, password: bytes | None) -> PrivateKeyTypes:
    """A DER private key (PKCS#1, PKCS#8 or encrypted PKCS#8), checked by a test signature."""
    key = serialization.load_der_private_key(data, password, unsafe_skip_rsa_key_validation=True)
    return checked(key)


def load_pem_key(data: bytes, password: bytes | None) -> PrivateKeyTypes:
    """A PEM private key, checked by a test signature."""
    key = serialization.load_pem_private_key(data, password, unsafe_skip_rsa_key_validation=True)
    return checked(key)


def checked(key: PrivateKeyTypes) -> PrivateKeyTypes:
    """``key`` itself once an RSA key has signed and verified a probe; raise otherwise."""
    if not isinstance(key, rsa.RSAPrivateKey):
        return key
    try:
        signature = key.sign(_PROBE, padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(signature, _PROBE, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError) as error:
        raise DamagedKeyError("the private key's parts do not fit together") from error
    return key
