"""centrali.oauth.credentials: ci_/sk_ formats, randomness, hashing, constant-time checks
against all of a client's secrets (match_secret)."""

from __future__ import annotations

import hmac
import re
import string
from collections.abc import Callable

import pytest

from centrali.oauth import credentials
from centrali.oauth.credentials import (
    SECRET_SLOTS,
    generate_client_id,
    generate_client_secret,
    hash_secret,
    match_secret,
    secret_hint,
)
from centrali.oauth.ports import StoredSecret

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
def test_a_secret_matches_its_stored_hash_only(presented: str, expected: bool) -> None:
    stored = [StoredSecret(1, hash_secret("sk_right"))]
    assert (match_secret(presented, stored, 0.0) is not None) is expected


def test_no_stored_secret_matches_nothing() -> None:
    assert match_secret(generate_client_secret(), [], 0.0) is None
    assert match_secret("", [], 0.0) is None


def test_non_ascii_and_lone_surrogates_are_hashed_not_raised() -> None:
    assert match_secret("sk_é", [StoredSecret(1, hash_secret("sk_é"))], 0.0) is not None
    assert match_secret("sk_\ud800", [StoredSecret(1, hash_secret("sk_é"))], 0.0) is None


# --- match_secret -----------------------------------------------------------------------------

NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)
FIVE = tuple(generate_client_secret() for _ in range(5))


def _stored(secrets: tuple[str, ...], first_id: int = 1) -> tuple[StoredSecret, ...]:
    return tuple(StoredSecret(first_id + i, hash_secret(s)) for i, s in enumerate(secrets))


def _count_compares(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real_hash, real_compare = credentials.hash_secret, hmac.compare_digest

    def spy_hash(secret: str) -> str:
        calls.append("hash")
        return real_hash(secret)

    def spy_compare(a: bytes, b: bytes) -> bool:
        calls.append("compare")
        return real_compare(a, b)

    monkeypatch.setattr(credentials, "hash_secret", spy_hash)
    monkeypatch.setattr(hmac, "compare_digest", spy_compare)  # the module credentials calls
    return calls


@pytest.mark.parametrize(
    ("held", "presented"),
    [
        pytest.param((), FIVE[0], id="none-held"),
        pytest.param(FIVE[:1], FIVE[0], id="one-held-right"),
        pytest.param(FIVE[:1], "sk_wrong", id="one-held-wrong"),
        pytest.param(FIVE, FIVE[0], id="five-held-first"),
        pytest.param(FIVE, FIVE[4], id="five-held-last"),
        pytest.param(FIVE, "sk_wrong", id="five-held-wrong"),
    ],
)
def test_match_secret_does_the_same_work_however_many_secrets_and_whichever_matches(
    monkeypatch: pytest.MonkeyPatch, held: tuple[str, ...], presented: str
) -> None:
    stored = _stored(held)
    calls = _count_compares(monkeypatch)
    match_secret(presented, stored, NOW)
    assert calls == ["hash"] + ["compare"] * SECRET_SLOTS


def test_match_secret_compares_with_every_secret_beyond_the_slots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    many = tuple(generate_client_secret() for _ in range(SECRET_SLOTS + 2))
    stored = _stored(many)
    calls = _count_compares(monkeypatch)
    assert match_secret(many[-1], stored, NOW) == stored[-1]
    assert calls.count("compare") == SECRET_SLOTS + 2


@pytest.mark.parametrize("which", range(5), ids=[f"secret-{i}" for i in range(5)])
def test_match_secret_returns_the_matching_stored_secret(which: int) -> None:
    stored = _stored(FIVE, first_id=21)
    assert match_secret(FIVE[which], stored, NOW) == stored[which]


@pytest.mark.parametrize(
    ("expires_at_ms", "matches"),
    [
        pytest.param(None, True, id="never-expires"),
        pytest.param(NOW_MS + 1, True, id="expires-a-millisecond-later"),
        pytest.param(NOW_MS, False, id="expires-now"),
        pytest.param(NOW_MS - 1, False, id="expired"),
    ],
)
def test_an_expired_secret_never_matches(expires_at_ms: int | None, matches: bool) -> None:
    entry = StoredSecret(7, hash_secret(FIVE[0]), expires_at_ms)
    assert entry.live(NOW) is matches
    assert (match_secret(FIVE[0], (entry,), NOW) == entry) is matches


@pytest.mark.parametrize(
    "presented",
    [
        pytest.param("sk_wrong", id="wrong"),
        pytest.param("", id="empty"),
        pytest.param(FIVE[0][:-1], id="prefix"),
        pytest.param(FIVE[0].upper(), id="case"),
    ],
)
def test_match_secret_finds_nothing_for_other_secrets(presented: str) -> None:
    assert match_secret(presented, _stored(FIVE), NOW) is None
    assert match_secret(presented, (), NOW) is None


def test_secret_hint_shows_only_the_last_four_characters() -> None:
    secret = generate_client_secret()
    assert secret_hint(secret) == "\u2026" + secret[-4:]
    assert secret[:-4] not in secret_hint(secret)
