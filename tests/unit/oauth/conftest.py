"""RSA keys for the core's unit tests; generated once per session (generation is slow)."""

from __future__ import annotations

import pytest

from centrali.oauth.keys import KeySet, SigningKey, generate_private_key_pem, load_signing_key


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return load_signing_key(generate_private_key_pem())


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    """A second, unrelated key: not in ``key_set``."""
    return load_signing_key(generate_private_key_pem())


@pytest.fixture(scope="session")
def key_set(signing_key: SigningKey) -> KeySet:
    return KeySet.of(signing_key)
