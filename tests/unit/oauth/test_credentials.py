"""centrali.oauth.credentials: ci_/sk_ formats, randomness, hashing, constant-time check."""

from __future__ import annotations

import hmac
import re
import string
from collections.abc import Callable

import pytest

from centrali.oauth import credentials
from centrali.oauth.credentials import (
    generate_client_id,
    generate_client_secret,
    hash_secret,
    verify_secret,
)

CLIENT_ID_RE = re.compile(r"ci_[a-z0-9]{20}")
SECRET_RE = re.compile(r"sk_[0-9a-f]{64}")


def test_client_id_is_ci_and_20_lowercase_alphanumerics() -> None:
    for _ in range(200):
        assert CLIENT_ID_RE.fullmatch(generate_client_id())


def test_client_secret_is_sk_and_64_hex_digits() -> None:
    for _ in range(200):
        assert SECRET_RE.fullmatch(generate_client_secret())


@pytest.mark.parametrize(
    "generate", [generate_client_id, generate_client_secret], ids=["client_id", "secret"]
)
def test_generated_values_never_repeat(generate: Callable[[], str]) -> None:
    values = {generate() for _ in range(2000)}
    assert len(values) == 2000


def test_client_id_draws_from_the_whole_alphabet() -> None:
    # 4000 draws from 36 symbols: missing one by chance has probability ~1e-47.
    seen = set("".join(generate_client_id()[3:] for _ in range(200)))
    assert seen == set(string.ascii_lowercase + string.digits)


def test_secret_draws_from_all_hex_digits() -> None:
    seen = set("".join(generate_client_secret()[3:] for _ in range(100)))
    assert seen == set("0123456789abcdef")


def test_hash_is_deterministic_and_does_not_contain_the_secret() -> None:
    secret = generate_client_secret()
    stored = hash_secret(secret)
    assert stored == hash_secret(secret)
    assert secret not in stored
    assert secret[3:] not in stored


def test_different_secrets_hash_differently() -> None:
    assert hash_secret("sk_a") != hash_secret("sk_b")


@pytest.mark.parametrize(
    ("presented", "expected"),
    [
        pytest.param("sk_right", True, id="right"),
        pytest.param("sk_wrong", False, id="wrong"),
        pytest.param("sk_righ", False, id="prefix"),
        pytest.param("sk_right ", False, id="trailing-space"),
        pytest.param("SK_RIGHT", False, id="case"),
        pytest.param("", False, id="empty"),
    ],
)
def test_verify_secret_against_stored_hash(presented: str, expected: bool) -> None:
    assert verify_secret(presented, hash_secret("sk_right")) is expected


def test_verify_secret_with_no_stored_hash_fails() -> None:
    assert verify_secret(generate_client_secret(), None) is False
    assert verify_secret("", None) is False


def test_verify_secret_handles_non_ascii_and_lone_surrogates() -> None:
    assert verify_secret("sk_é", hash_secret("sk_é")) is True
    assert verify_secret("sk_\ud800", hash_secret("sk_é")) is False


@pytest.mark.parametrize(
    "stored", [pytest.param("known", id="known-client"), pytest.param(None, id="no-hash")]
)
def test_verify_secret_does_the_same_work_with_or_without_a_hash(
    monkeypatch: pytest.MonkeyPatch, stored: str | None
) -> None:
    calls: list[str] = []
    real_hash = credentials.hash_secret
    real_compare = hmac.compare_digest

    def spy_hash(secret: str) -> str:
        calls.append("hash")
        return real_hash(secret)

    def spy_compare(a: bytes, b: bytes) -> bool:
        calls.append("compare")
        return real_compare(a, b)

    target = hash_secret("sk_other") if stored is not None else None
    monkeypatch.setattr(credentials, "hash_secret", spy_hash)
    monkeypatch.setattr(hmac, "compare_digest", spy_compare)
    assert verify_secret("sk_presented", target) is False
    assert calls == ["hash", "compare"]
