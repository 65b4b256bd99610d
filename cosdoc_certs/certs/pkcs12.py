"""PKCS#12 (PFX) at the level of safe bags: the parts ``cryptography`` does not offer.

``cryptography`` reads a PFX as one key plus certificates and silently drops a second key,
and it cannot write a PFX holding two keys. Customers' Buypass files sometimes hold both
keys of the pair, so this module works on the bags themselves (with asn1crypto): it checks
the password against the MAC (RFC 7292 appendix B) so that a wrong password is told apart
from a damaged file, reads every key bag (each decrypted by ``cryptography`` from a PFX
holding that bag alone) with the provider its "Microsoft CSP Name" attribute names, and merges
the bags of several PFX files into one with a fresh MAC. :func:`serialize_pfx` is the one way
the project writes a one-key PFX (AES-256, or 3DES/SHA-1 for Windows before Server 2016 1709),
with that attribute when a provider is given (``cryptography`` cannot write it), so that
Windows' import puts the key into the provider chosen for it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import cms, core, pkcs12
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from cosdoc_certs.certs import keys
from cosdoc_certs.errors import CertificateLoadError

logger = logging.getLogger(__name__)

_MAC_KEY_ID = 3
_MAC_ITERATIONS = 2048
CSP_NAME_OID = "1.3.6.1.4.1.311.17.1"
"""The key bag attribute naming the Windows provider of the key ("Microsoft CSP Name")."""
_KEY_BAGS = ("key_bag", "pkcs8_shrouded_key_bag")
_HASH_NAMES = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}


def _bmp_password(password: bytes | None) -> bytes:
    """The password as RFC 7292 wants it for key derivation: UTF-16BE plus two zero bytes.

    ``None`` (no password at all) becomes the empty string of bytes, as OpenSSL does.
    """
    if password is None:
        return b""
    return password.decode("utf-8").encode("utf-16-be") + b"\x00\x00"


def _pkcs12_kdf(
    hash_name: str, password: bytes, salt: bytes, iterations: int, key_id: int, length: int
) -> bytes:
    """The PKCS#12 key derivation of RFC 7292 appendix B.2 (``password`` already BMP-encoded)."""
    digest_size = hashlib.new(hash_name).digest_size
    block_size = hashlib.new(hash_name).block_size
    diversifier = bytes([key_id]) * block_size
    salt_part = _repeat_to_blocks(salt, block_size)
    password_part = _repeat_to_blocks(password, block_size)
    inputs = bytearray(salt_part + password_part)
    output = b""
    while len(output) < length:
        block = diversifier + bytes(inputs)
        for _ in range(iterations):
            block = hashlib.new(hash_name, block).digest()
        output += block
        addend = int.from_bytes((block * (block_size // digest_size + 1))[:block_size], "big") + 1
        for start in range(0, len(inputs), block_size):
            chunk = int.from_bytes(inputs[start : start + block_size], "big")
            total = (chunk + addend) % (1 << (8 * block_size))
            inputs[start : start + block_size] = total.to_bytes(block_size, "big")
    return output[:length]


def _repeat_to_blocks(value: bytes, block_size: int) -> bytes:
    """``value`` repeated to fill whole blocks (empty stays empty), per RFC 7292 B.2."""
    if not value:
        return b""
    blocks = -(-len(value) // block_size)
    return (value * (blocks * block_size // len(value) + 1))[: blocks * block_size]


def _mac_of(
    content: bytes, password: bytes | None, hash_name: str, salt: bytes, iterations: int
) -> bytes:
    """The HMAC that protects a PFX's authenticated safe."""
    size = hashlib.new(hash_name).digest_size
    key = _pkcs12_kdf(hash_name, _bmp_password(password), salt, iterations, _MAC_KEY_ID, size)
    return hmac.new(key, content, hash_name).digest()


@dataclass(frozen=True)
class ParsedPfx:
    """A PFX taken apart: its authenticated safe (list of content infos) and MAC data."""

    pfx: pkcs12.Pfx
    authenticated_safe: pkcs12.AuthenticatedSafe

    def content_bytes(self) -> bytes:
        """The octets the MAC is computed over."""
        return bytes(self.pfx["auth_safe"]["content"].native)

    def has_mac(self) -> bool:
        """True when the file carries a password MAC (nearly all do)."""
        return bool(self.pfx["mac_data"].native)

    def mac_matches(self, password: bytes | None) -> bool:
        """True when ``password`` reproduces the file's MAC (or there is no MAC)."""
        if not self.has_mac():
            return True
        mac_data = self.pfx["mac_data"]
        algorithm = mac_data["mac"]["digest_algorithm"]["algorithm"].native
        hash_name = _HASH_NAMES.get(algorithm)
        if hash_name is None:
            raise CertificateLoadError(
                f"the PFX is protected with a MAC algorithm this tool does not know ({algorithm})",
                "export the PFX again with SHA-1 or SHA-256 integrity (the Windows default)",
            )
        expected = mac_data["mac"]["digest"].native
        computed = _mac_of(
            self.content_bytes(),
            password,
            hash_name,
            mac_data["mac_salt"].native,
            mac_data["iterations"].native,
        )
        return hmac.compare_digest(expected, computed)


def parse_pfx(data: bytes) -> ParsedPfx:
    """Parse the outer structure of a PFX; raise ``ValueError`` if ``data`` is not one."""
    pfx = pkcs12.Pfx.load(data, strict=True)
    if pfx["auth_safe"]["content_type"].native != "data":
        raise ValueError("public-key integrity mode PFX files are not supported")
    safe = pkcs12.AuthenticatedSafe.load(bytes(pfx["auth_safe"]["content"].native))
    safe.native  # noqa: B018 -- forces a full parse so that damage shows up here
    return ParsedPfx(pfx, safe)


class PasswordRequiredError(CertificateLoadError):
    """A file is protected by a password and none (or an empty one) was given."""


class WrongPasswordError(CertificateLoadError):
    """The password given does not open a file (or the file was altered)."""


@dataclass(frozen=True)
class PfxContents:
    """Every certificate and every private key in a PFX, with the provider each key bag names.

    ``key_providers[i]`` is the "Microsoft CSP Name" of ``private_keys[i]`` (None without one).
    """

    certificates: tuple[x509.Certificate, ...]
    private_keys: tuple[PrivateKeyTypes, ...]
    key_providers: tuple[str | None, ...] = ()


def read_pfx(data: bytes, password: bytes | None, source: str) -> PfxContents:
    """All certificates and **all** private keys of the PFX ``data`` (named ``source``).

    The password is checked against the MAC first; without one, no password and the empty
    password are tried. The file is opened once: its key bags are decrypted one by one (so a
    PFX holding both Buypass keys yields both) and everything else is read by
    ``cryptography`` (AES, 3DES, RC2-40) from the same file without those bags.
    """
    parsed = parse_pfx(data)
    used = _password_that_opens(parsed, password, source)
    key_bags, rest = _split_key_bags(parsed)
    try:
        loaded = crypto_pkcs12.load_pkcs12(build_pfx(rest, used, iterations=1), used)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise CertificateLoadError(
            f"{source}: the PFX opens with the password but its content cannot be read",
            "export it again from the certificate store (with AES-256 or 3DES encryption)",
        ) from error
    certificates = [entry.certificate for entry in loaded.additional_certs]
    if loaded.cert is not None:
        certificates.insert(0, loaded.cert.certificate)
    keys = [_load_key_bag(bag, used, source) for bag in key_bags]
    providers = [csp_name_of(bag) for bag in key_bags]
    if loaded.key is not None:  # a key bag inside encrypted contents (rare writers)
        keys.insert(0, loaded.key)
        providers.insert(0, None)
    return PfxContents(tuple(certificates), tuple(keys), tuple(providers))


def _password_that_opens(parsed: ParsedPfx, password: bytes | None, source: str) -> bytes | None:
    """The candidate password that reproduces the MAC, or the right error."""
    candidates: list[bytes | None] = [None, b""]
    if password:
        candidates.insert(0, password)
    for candidate in candidates:
        if parsed.mac_matches(candidate):
            return candidate
    if not password:
        raise PasswordRequiredError(
            f"{source} is protected by a password",
            "give the PFX password (`password`)",
        )
    raise WrongPasswordError(
        f"wrong password for {source} (or the file is damaged)",
        "check the PFX password; it is case-sensitive and is usually sent apart from the file",
    )


def _split_key_bags(parsed: ParsedPfx) -> tuple[list[pkcs12.SafeBag], list[cms.ContentInfo]]:
    """The key bags of the PFX's unencrypted contents, and its contents without them.

    PFX writers put key bags (already encrypted on their own) in unencrypted contents and
    certificates in password-encrypted contents; the latter are passed on untouched.
    """
    key_bags: list[pkcs12.SafeBag] = []
    rest: list[cms.ContentInfo] = []
    for info in parsed.authenticated_safe:
        if info["content_type"].native != "data":
            rest.append(info)
            continue
        contents = pkcs12.SafeContents.load(bytes(info["content"].native))
        kept = _without_key_bags(contents, key_bags)
        if len(kept):
            rest.append(_data_content(kept.dump()))
    return key_bags, rest


def _without_key_bags(
    contents: pkcs12.SafeContents, key_bags: list[pkcs12.SafeBag]
) -> pkcs12.SafeContents:
    """``contents`` without its key bags (nested ones too), which are added to ``key_bags``."""
    kept = []
    for bag in contents:
        kind = bag["bag_id"].native
        if kind in _KEY_BAGS:
            key_bags.append(bag)
        elif kind == "safe_contents":
            nested = _without_key_bags(bag["bag_value"], key_bags)
            kept.append(pkcs12.SafeBag({"bag_id": "safe_contents", "bag_value": nested}))
        else:
            kept.append(bag.copy())
    return pkcs12.SafeContents(kept)


def csp_name_of(bag: pkcs12.SafeBag) -> str | None:
    """The provider a key bag's "Microsoft CSP Name" attribute names, or None."""
    for attribute in bag["bag_attributes"]:
        if attribute["type"].dotted == CSP_NAME_OID and len(attribute["values"]):
            value = core.BMPString.load(attribute["values"][0].dump()).native
            return str(value).strip("\x00") or None
    return None


def _with_csp_name(bag: pkcs12.SafeBag, provider: str) -> pkcs12.SafeBag:
    """A copy of the key bag ``bag`` whose "Microsoft CSP Name" is ``provider`` (replaced)."""
    attributes = [a.copy() for a in bag["bag_attributes"] if a["type"].dotted != CSP_NAME_OID]
    attributes.append(
        pkcs12.Attribute({"type": CSP_NAME_OID, "values": [core.BMPString(provider)]})
    )
    return pkcs12.SafeBag(
        {
            "bag_id": bag["bag_id"].native,
            "bag_value": bag["bag_value"].copy(),
            "bag_attributes": attributes,
        }
    )


def _load_key_bag(bag: pkcs12.SafeBag, password: bytes | None, source: str) -> PrivateKeyTypes:
    """Decrypt one key bag: directly as (encrypted) PKCS#8, else as a PFX holding it alone.

    The direct way serves PBES2 (AES) and 3DES bags; ``cryptography``'s PKCS#12 reader
    covers the rest (RC2-40, empty passwords). A key whose parts do not fit is an error.
    """
    encrypted = bag["bag_id"].native == "pkcs8_shrouded_key_bag"
    der = bag["bag_value"].untag().dump(force=True)
    try:
        return keys.load_der_key(der, password if encrypted else None)
    except keys.DamagedKeyError:
        raise _undecryptable_key(source) from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    contents = pkcs12.SafeContents([bag.copy()]).dump()
    single = build_pfx([_data_content(contents)], password, hash_name="sha256", iterations=1)
    try:
        key = crypto_pkcs12.load_pkcs12(single, password).key
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if key is None:
        raise _undecryptable_key(source)
    return key


def _undecryptable_key(source: str) -> CertificateLoadError:
    return CertificateLoadError(
        f"{source}: a private key in the PFX cannot be decrypted",
        "export the PFX again with its private key (AES-256 or 3DES encryption)",
    )


def _data_content(content: bytes) -> cms.ContentInfo:
    return cms.ContentInfo({"content_type": "data", "content": core.OctetString(content)})


def build_pfx(
    content_infos: Sequence[cms.ContentInfo],
    password: bytes | None,
    *,
    hash_name: str = "sha256",
    iterations: int = _MAC_ITERATIONS,
) -> bytes:
    """A PFX of ``content_infos`` (already encrypted as wanted) with a MAC for ``password``."""
    safe = pkcs12.AuthenticatedSafe([info.copy() for info in content_infos]).dump()
    salt = os.urandom(16)
    digest = _mac_of(safe, password, hash_name, salt, iterations)
    pfx = pkcs12.Pfx(
        {
            "version": "v3",
            "auth_safe": _data_content(safe),
            "mac_data": {
                "mac": {"digest_algorithm": {"algorithm": hash_name}, "digest": digest},
                "mac_salt": salt,
                "iterations": iterations,
            },
        }
    )
    return bytes(pfx.dump())


def merge_pfx(blobs: Sequence[bytes], password: bytes, *, hash_name: str = "sha256") -> bytes:
    """One PFX holding every bag of ``blobs`` (all protected by ``password``), with a new MAC.

    This is how a PFX with both Buypass keys is made: neither ``cryptography`` nor
    ``openssl pkcs12 -export`` writes one directly.
    """
    content_infos = []
    for blob in blobs:
        parsed = parse_pfx(blob)
        if not parsed.mac_matches(password):
            raise CertificateLoadError("a PFX to merge does not open with the given password")
        content_infos.extend(parsed.authenticated_safe)
    logger.debug("merging %d PFX files", len(blobs))
    return build_pfx(content_infos, password, hash_name=hash_name)


def serialize_pfx(
    key: crypto_pkcs12.PKCS12PrivateKeyTypes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    password: bytes,
    *,
    name: bytes,
    legacy: bool = False,
    kdf_rounds: int | None = None,
    provider: str | None = None,
) -> bytes:
    """A PFX of ``key``, ``certificate`` and ``chain`` named ``name``, protected by ``password``.

    AES-256/PBKDF2 with a SHA-256 MAC; ``legacy=True`` gives 3DES with a SHA-1 MAC, which
    every Windows can import. An empty password gives an unencrypted PFX. ``provider`` puts
    the "Microsoft CSP Name" attribute into the key bag: Windows imports the key there.
    """
    data = crypto_pkcs12.serialize_key_and_certificates(
        name, key, certificate, list(chain) or None, _encryption(password, legacy, kdf_rounds)
    )
    if provider is None:
        return data
    hash_name = "sha1" if legacy and password else "sha256"
    rounds = kdf_rounds if kdf_rounds is not None else _MAC_ITERATIONS
    return _name_key_provider(data, password, provider, hash_name, rounds)


def _name_key_provider(
    data: bytes, password: bytes, provider: str, hash_name: str, iterations: int
) -> bytes:
    """``data`` with every key bag naming ``provider``, and a fresh MAC over the new contents."""
    parsed = parse_pfx(data)
    infos = []
    for info in parsed.authenticated_safe:
        if info["content_type"].native == "data":
            contents = pkcs12.SafeContents.load(bytes(info["content"].native))
            bags = [
                _with_csp_name(b, provider) if b["bag_id"].native in _KEY_BAGS else b.copy()
                for b in contents
            ]
            info = _data_content(pkcs12.SafeContents(bags).dump())
        infos.append(info)
    return build_pfx(infos, password or None, hash_name=hash_name, iterations=iterations)


def _encryption(
    password: bytes, legacy: bool, kdf_rounds: int | None
) -> serialization.KeySerializationEncryption:
    if not password:
        return serialization.NoEncryption()
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if kdf_rounds is not None:
        builder = builder.kdf_rounds(kdf_rounds)
    if legacy:
        builder = builder.key_cert_algorithm(crypto_pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        builder = builder.hmac_hash(hashes.SHA1())  # noqa: S303 -- what old Windows reads
    else:
        builder = builder.key_cert_algorithm(crypto_pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        builder = builder.hmac_hash(hashes.SHA256())
    return builder.build(password)
