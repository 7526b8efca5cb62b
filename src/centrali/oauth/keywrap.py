"""Private signing keys encrypted at rest: AES-256-GCM under the master key (NIST SP 800-38D).

A wrapped key is stored as ``enc:v1:`` + base64(nonce ‖ ciphertext ‖ tag), with a random
96-bit nonce and the key's ``kid`` as associated data, so a ciphertext copied onto another
key's row does not decrypt. Text without the prefix is a plaintext PEM (stores made before a
master key was set) and passes through unchanged.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"
MASTER_KEY_BYTES = 32
_NONCE_BYTES = 12


class MasterKeyError(ValueError):
    """The master key is malformed, missing, or does not open a stored key. The message is
    one line for an operator and never contains key material."""


def parse_master_key(text: str) -> bytes | None:
    """The 32-byte master key from its base64 form; ``None`` when unset (empty)."""
    text = text.strip()
    if not text:
        return None
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != MASTER_KEY_BYTES:
        raise MasterKeyError(
            f"CENTRALI_MASTER_KEY must be the base64 of exactly {MASTER_KEY_BYTES} random bytes"
        )
    return raw


def is_wrapped(stored: str) -> bool:
    return stored.startswith(PREFIX)


def wrap_private_key(pem: str, *, master_key: bytes, kid: str) -> str:
    """``pem`` encrypted for storage."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(master_key).encrypt(nonce, pem.encode("ascii"), kid.encode("ascii"))
    return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")


def unwrap_private_key(stored: str, *, master_key: bytes | None, kid: str) -> str:
    """The PEM of a stored key, decrypted when it was stored encrypted."""
    if not is_wrapped(stored):
        return stored
    if master_key is None:
        raise MasterKeyError(f"signing key {kid} is encrypted: set CENTRALI_MASTER_KEY")
    try:
        blob = base64.b64decode(stored[len(PREFIX) :], validate=True)
        nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
        return AESGCM(master_key).decrypt(nonce, sealed, kid.encode("ascii")).decode("ascii")
    except (binascii.Error, ValueError, InvalidTag):
        raise MasterKeyError(
            f"CENTRALI_MASTER_KEY does not decrypt signing key {kid} (wrong master key?)"
        ) from None
