"""Published RSA test keys, so that the lab starts without making keys.

Making a 2048-bit RSA key costs 50–150 ms; the lab needs about ten (a CA, the current,
previous and renewed certificates). ``test-keys.pem`` beside this module holds
:data:`KEY_COUNT` keys made once by ``scripts/make-lab-test-keys``. They are public — anyone
with this package has them — so they serve the lab's own test certificates only (the CA of
:func:`cosdoc_certs.lab.certs.default_ca`); ``make-test-certs`` and
:func:`~cosdoc_certs.lab.certs.make_test_ca` make fresh keys.

Keys are handed out in turn, so any :data:`KEY_COUNT` keys drawn one after another differ;
after the last the first comes again. Each is read only when first drawn.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from collections.abc import Iterator
from importlib import resources

from cryptography.hazmat.primitives.asymmetric import rsa

from cosdoc_certs.certs import keys

KEY_SIZE = 2048
KEY_COUNT = 64
FILE_NAME = "test-keys.pem"

_PEM_KEY = re.compile(rb"-----BEGIN PRIVATE KEY-----.*?-----END PRIVATE KEY-----\n", re.DOTALL)
_lock = threading.Lock()


def next_key() -> rsa.RSAPrivateKey:
    """The next published test key (thread-safe)."""
    with _lock:
        return next(_turns())


def pem_blocks(data: bytes) -> list[bytes]:
    """The PKCS#8 PEM blocks of a test-key file, in order."""
    return _PEM_KEY.findall(data)


@functools.lru_cache(maxsize=1)
def _turns() -> Iterator[rsa.RSAPrivateKey]:
    return itertools.cycle(_load_each(_blocks()))


def _blocks() -> list[bytes]:
    data = resources.files("cosdoc_certs.lab").joinpath(FILE_NAME).read_bytes()
    return pem_blocks(data)


def _load_each(blocks: list[bytes]) -> Iterator[rsa.RSAPrivateKey]:
    for block in blocks:
        key = keys.load_pem_key(block, None)
        assert isinstance(key, rsa.RSAPrivateKey)
        yield key
