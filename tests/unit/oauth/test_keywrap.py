"""Private keys at rest: AES-256-GCM under the master key, the kid as associated data."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

import pytest

from centrali.oauth.keys import generate_private_key_pem, load_signing_key
from centrali.oauth.keywrap import (
    PREFIX,
    MasterKeyError,
    is_wrapped,
    parse_master_key,
    unwrap_private_key,
    wrap_private_key,
)

MASTER = bytes(range(32))
OTHER = bytes(range(1, 33))
PEM = generate_private_key_pem("EdDSA")
KID = load_signing_key(PEM, "EdDSA").kid


def test_wrapped_key_round_trips_and_shows_nothing_of_the_pem() -> None:
    stored = wrap_private_key(PEM, master_key=MASTER, kid=KID)
    assert stored.startswith(PREFIX) and is_wrapped(stored)
    assert "PRIVATE KEY" not in stored
    assert unwrap_private_key(stored, master_key=MASTER, kid=KID) == PEM


def test_each_wrap_draws_a_fresh_nonce() -> None:
    first = wrap_private_key(PEM, master_key=MASTER, kid=KID)
    second = wrap_private_key(PEM, master_key=MASTER, kid=KID)
    assert first != second and _nonce(first) != _nonce(second)


def _nonce(stored: str) -> bytes:
    return base64.b64decode(stored[len(PREFIX) :])[:12]


@pytest.mark.parametrize("master_key", [None, MASTER], ids=["no-master-key", "master-key"])
def test_plaintext_pem_passes_through(master_key: bytes | None) -> None:
    assert not is_wrapped(PEM)
    assert unwrap_private_key(PEM, master_key=master_key, kid=KID) == PEM


def test_encrypted_key_without_master_key_names_the_setting() -> None:
    stored = wrap_private_key(PEM, master_key=MASTER, kid=KID)
    with pytest.raises(MasterKeyError, match=f"signing key {KID} is encrypted: set CENTRALI_MAS"):
        unwrap_private_key(stored, master_key=None, kid=KID)


@pytest.mark.parametrize(
    ("master_key", "kid", "garble"),
    [
        (OTHER, KID, lambda s: s),
        (MASTER, "another-kid", lambda s: s),
        (MASTER, KID, lambda s: s[:-8] + ("A" if s[-8] != "A" else "B") + s[-7:]),
        (MASTER, KID, lambda s: s[: len(PREFIX) + 10]),
        (MASTER, KID, lambda s: s + "*"),
    ],
    ids=["wrong-master-key", "moved-to-another-kid", "tampered", "truncated", "not-base64"],
)
def test_key_that_does_not_open_fails_with_one_line(
    master_key: bytes, kid: str, garble: Callable[[str], str]
) -> None:
    stored = garble(wrap_private_key(PEM, master_key=MASTER, kid=KID))
    with pytest.raises(MasterKeyError) as caught:
        unwrap_private_key(stored, master_key=master_key, kid=kid)
    message = str(caught.value)
    assert "\n" not in message and "does not decrypt" in message
    assert base64.b64encode(master_key).decode() not in message


def test_master_key_parses_from_standard_and_urlsafe_base64() -> None:
    raw = os.urandom(32)
    assert parse_master_key(base64.b64encode(raw).decode()) == raw
    assert parse_master_key(" " + base64.urlsafe_b64encode(raw).decode() + "\n") == raw


@pytest.mark.parametrize("text", ["", "   "], ids=["empty", "blank"])
def test_unset_master_key_is_none(text: str) -> None:
    assert parse_master_key(text) is None


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        base64.b64encode(bytes(16)).decode(),
        "not base64 at all!",
        "correct horse battery staple, 32",
    ],
    ids=["31-bytes", "33-bytes", "16-bytes", "not-base64", "a-passphrase"],
)
def test_malformed_master_key_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(MasterKeyError, match="base64 of exactly 32 random bytes") as caught:
        parse_master_key(text)
    assert text.strip() not in str(caught.value)
