"""web.batching: the lookups of one event-loop turn go to the store in one call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from centrali.oauth.ports import ClientRecord
from centrali.store.client_store import StoreUnavailableError
from centrali.web import batching
from centrali.web.batching import TurnBatch


def record(client_id: str) -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        secret_hash="sha256$x",
        active=True,
        workspace="acme-corp",
        grant_types=("client_credentials",),
        scopes=("openid",),
        groups=(),
        tokens_valid_after=0,
    )


class FakeStore:
    """Knows the ids starting with ``ci_``; records each call; may be down."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.down = False

    def find_clients(self, client_ids: Sequence[str]) -> list[ClientRecord | None]:
        self.calls.append(list(client_ids))
        if self.down:
            raise StoreUnavailableError("OperationalError")
        return [record(c) if c.startswith("ci_") else None for c in client_ids]


def lookups(store: FakeStore) -> TurnBatch[str, ClientRecord | None]:
    return TurnBatch(store.find_clients)


def test_concurrent_lookups_make_one_call_and_each_gets_its_own_answer() -> None:
    store = FakeStore()
    batcher = lookups(store)
    ids = ["ci_a", "nobody", "ci_b", "ci_a", "ci_c"]

    async def main() -> list[ClientRecord | None]:
        return await asyncio.gather(*(batcher.find(i) for i in ids))

    answers = asyncio.run(main())
    assert store.calls == [ids]
    assert [a.client_id if a else None for a in answers] == ["ci_a", None, "ci_b", "ci_a", "ci_c"]


def test_lookups_of_later_turns_make_later_calls() -> None:
    store = FakeStore()
    batcher = lookups(store)

    async def main() -> None:
        assert (await batcher.find("ci_a")) is not None
        assert (await batcher.find("ci_b")) is not None

    asyncio.run(main())
    assert store.calls == [["ci_a"], ["ci_b"]]


def test_a_store_error_reaches_every_waiter_and_the_next_turn_works() -> None:
    store = FakeStore()
    batcher = lookups(store)

    async def main() -> None:
        store.down = True
        answers = await asyncio.gather(
            batcher.find("ci_a"), batcher.find("ci_b"), return_exceptions=True
        )
        assert all(isinstance(a, StoreUnavailableError) for a in answers), answers
        store.down = False
        assert (await batcher.find("ci_a")) is not None

    asyncio.run(main())
    assert store.calls == [["ci_a", "ci_b"], ["ci_a"]]


def test_big_turns_are_split_into_bounded_statements(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batching, "MAX_BATCH", 4)
    store = FakeStore()
    batcher = lookups(store)
    ids = [f"ci_{i}" for i in range(10)]

    async def main() -> list[ClientRecord | None]:
        return await asyncio.gather(*(batcher.find(i) for i in ids))

    answers = asyncio.run(main())
    assert [len(call) for call in store.calls] == [4, 4, 2]
    assert [a.client_id for a in answers if a] == ids


def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    store = FakeStore()
    batcher = lookups(store)

    async def main() -> ClientRecord | None:
        gone = asyncio.ensure_future(batcher.find("ci_gone"))
        kept = asyncio.ensure_future(batcher.find("ci_kept"))
        await asyncio.sleep(0)  # both queued
        gone.cancel()
        return await kept

    kept = asyncio.run(main())
    assert kept is not None and kept.client_id == "ci_kept"
