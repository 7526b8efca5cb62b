"""centrali.services.passwords: argon2id, and the same work for a missing hash."""

from __future__ import annotations

import pytest

from centrali.services import passwords
from centrali.services.errors import InvalidBodyError


def test_hash_and_verify() -> None:
    stored = passwords.hash_password("correct horse")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify_password("correct horse", stored)
    assert not passwords.verify_password("correct horsE", stored)
    assert not passwords.needs_rehash(stored)
    assert passwords.needs_rehash("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g")
    assert passwords.needs_rehash("not a hash")


def test_no_hash_costs_the_same_check(monkeypatch: pytest.MonkeyPatch) -> None:
    dummy = passwords.dummy_hash()  # made once per process, before any check
    checked: list[str] = []
    real = passwords._HASHER

    class Counting:
        def verify(self, hash_: str, password: str) -> bool:
            checked.append(hash_)
            return real.verify(hash_, password)

    monkeypatch.setattr(passwords, "_HASHER", Counting())
    assert not passwords.verify_password("anything", None)
    assert not passwords.verify_password("anything", "")
    assert checked == [dummy, dummy]


def test_garbage_hash_is_a_mismatch() -> None:
    assert not passwords.verify_password("x", "$argon2id$garbage")


def test_overlong_password_never_matches() -> None:
    long = "a" * (passwords.MAX_LENGTH + 1)
    stored = passwords.rehash_password(long[: passwords.MAX_LENGTH])
    assert not passwords.verify_password(long, stored)


@pytest.mark.parametrize("password", ["", "short", " " * 10, "x" * 1025])
def test_new_password_rules(password: str) -> None:
    with pytest.raises(InvalidBodyError):
        passwords.check_new_password(password)
