"""web.batching: the lookups that arrive together go to the store in one call, made on the
batch's own thread (never the event loop's), one call in flight at a time; keys that arrive
while a call is in flight go into the next one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence

import pytest

from centrali.oauth.ports import ClientRecord, StoredSecret
from centrali.store.client_store import StoreUnavailableError
from centrali.web import batching
from centrali.web.batching import TurnBatch

WAIT = 5.0  # seconds a test waits for the batch's thread before failing (never hangs)


def record(client_id: str) -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        secrets=(StoredSecret(1, "sha256$x"),),
        active=True,
        workspace="acme-corp",
        grant_types=("client_credentials",),
        scopes=("openid",),
        groups=(),
    )


class FakeStore:
    """Knows the ids starting with ``ci_``; records each call, the thread it ran on and how
    many calls ran at once; may be down (or fail its next ``failures`` calls); ``hold`` makes
    a call wait for ``release``."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.threads: list[threading.Thread] = []
        self.down = False
        self.failures = 0
        self.hold = False
        self.started = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._running = 0
        self.most_at_once = 0

    def find_clients(self, client_ids: Sequence[str]) -> list[ClientRecord | None]:
        with self._lock:
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        try:
            self.calls.append(list(client_ids))
            held = self.hold
            self.threads.append(threading.current_thread())
            self.started.set()
            if held:
                assert self.release.wait(WAIT), "never released"
            failing, self.failures = self.failures > 0, max(0, self.failures - 1)
            if self.down or failing:
                raise StoreUnavailableError("OperationalError")
            return [record(c) if c.startswith("ci_") else None for c in client_ids]
        finally:
            with self._lock:
                self._running -= 1


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def batch(store: FakeStore) -> Iterator[TurnBatch[str, ClientRecord | None]]:
    turn_batch: TurnBatch[str, ClientRecord | None] = TurnBatch(store.find_clients, name="test")
    yield turn_batch
    store.release.set()
    turn_batch.close()


def ids_of(answers: Sequence[ClientRecord | None]) -> list[str | None]:
    return [a.client_id if a else None for a in answers]


async def gather(
    batch: TurnBatch[str, ClientRecord | None], ids: Sequence[str]
) -> list[ClientRecord | None]:
    return await asyncio.wait_for(asyncio.gather(*(batch.find(i) for i in ids)), WAIT)


def test_concurrent_lookups_make_one_call_and_each_gets_its_own_answer(
    store: FakeStore, batch: TurnBatch[str, ClientRecord | None]
) -> None:
    ids = ["ci_a", "nobody", "ci_b", "ci_a", "ci_c"]
    answers = asyncio.run(gather(batch, ids))
    assert store.calls == [ids]
    assert ids_of(answers) == ["ci_a", None, "ci_b", "ci_a", "ci_c"]


def test_the_bulk_call_runs_on_the_batchs_thread_not_the_loops(
    store: FakeStore, batch: TurnBatch[str, ClientRecord | None]
) -> None:
    async def main() -> threading.Thread:
        await gather(batch, ["ci_a", "ci_b"])
        await gather(batch, ["ci_c"])
        return threading.current_thread()

    loop_thread = asyncio.run(main())
    assert len(store.threads) == 2
    assert all(t is not loop_thread for t in store.threads)
    assert store.threads[0] is store.threads[1]  # its own single thread
    assert store.threads[0].name.startswith("centrali-test")


def test_the_loop_keeps_running_while_a_call_is_in_flight(
    store: FakeStore, batch: TurnBatch[str, ClientRecord | None]
) -> None:
    store.hold = True

    async def main() -> ClientRecord | None:
        lookup = asyncio.ensure_future(batch.find("ci_a"))
        assert await asyncio.to_thread(store.started.wait, WAIT)
        # The store holds the call; the loop still answers other work.
        await asyncio.sleep(0.01)
        assert not lookup.done()
        store.release.set()
        return await asyncio.wait_for(lookup, WAIT)

    assert ids_of([asyncio.run(main())]) == ["ci_a"]


def test_lookups_of_later_turns_make_later_calls(
    store: FakeStore, batch: TurnBatch[str, ClientRecord | None]
) -> None:
    async def main() -> None:
        assert (await asyncio.wait_for(batch.find("ci_a"), WAIT)) is not None
        assert (await asyncio.wait_for(batch.find("ci_b"), WAIT)) is not None

    asyncio.run(main())
    assert store.calls == [["ci_a"], ["ci_b"]]


def test_keys_arriving_while_a_call_is_in_flight_go_into_the_next_call(
    store: FakeStore, batch: TurnBatch[str, ClientRecord | None]
) -> None:
    store.hold = True

    async def main() -> list[ClientRecord | None]:
        first = asyncio.ensure_future(batch.find("ci_a"))
        assert await asyncio.to_thread(store.started.wait, WAIT)
        later = [asyncio.ensure_future(batch.find(i)) for i in ("ci_b", "nobody", "ci_c")]
        await asyncio.sleep(0.01)  # several turns: none of them starts a call of its own
        assert store.calls == [["ci_a"]]
        store.release.set()
        return await asyncio.wait_for(asyncio.gather(first, *later), WAIT)

    answers = asyncio.run(main())
    assert store.calls == [["ci_a"], ["ci_b", "nobody", "ci_c"]]
    assert ids_of(answers) == ["ci_a", "ci_b", None, "ci_c"]
    assert store.most_at_once == 1


def test_a_store_error_reaches_every_waiter_and_the_next_turn_works(
    store: FakeStore, batch: TurnBatch[str, ClientRecord | None]
) -> None:
    async def main() -> None:
        store.down = True
        answers = await asyncio.wait_for(
            asyncio.gather(batch.find("ci_a"), batch.find("ci_b"), return_exceptions=True), WAIT
        )
        assert all(isinstance(a, StoreUnavailableError) for a in answers), answers
        store.down = False
        assert (await asyncio.wait_for(batch.find("ci_a"), WAIT)) is not None

    asyncio.run(main())
    assert store.calls == [["ci_a", "ci_b"], ["ci_a"]]


def test_a_store_error_with_keys_waiting_does_not_stall_them(
    store: FakeStore, batch: TurnBatch[str, ClientRecord | None]
) -> None:
    store.hold, store.failures = True, 1

    async def main() -> tuple[ClientRecord | None | BaseException, ...]:
        first = asyncio.ensure_future(batch.find("ci_a"))
        assert await asyncio.to_thread(store.started.wait, WAIT)
        later = asyncio.ensure_future(batch.find("ci_b"))
        await asyncio.sleep(0)
        store.hold = False
        store.release.set()
        return await asyncio.wait_for(asyncio.gather(first, later, return_exceptions=True), WAIT)

    failed, answered = asyncio.run(main())
    assert isinstance(failed, StoreUnavailableError)
    assert isinstance(answered, ClientRecord) and answered.client_id == "ci_b"
    assert store.calls == [["ci_a"], ["ci_b"]]


def test_big_turns_are_split_into_bounded_statements_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch, store: FakeStore, batch: TurnBatch[str, ClientRecord | None]
) -> None:
    monkeypatch.setattr(batching, "MAX_BATCH", 4)
    ids = [f"ci_{i}" for i in range(10)]
    answers = asyncio.run(gather(batch, ids))
    assert [len(call) for call in store.calls] == [4, 4, 2]
    assert [a.client_id for a in answers if a] == ids
    assert store.most_at_once == 1


def test_a_cancelled_waiter_does_not_disturb_the_others(
    store: FakeStore, batch: TurnBatch[str, ClientRecord | None]
) -> None:
    async def main() -> ClientRecord | None:
        gone = asyncio.ensure_future(batch.find("ci_gone"))
        kept = asyncio.ensure_future(batch.find("ci_kept"))
        await asyncio.sleep(0)  # both queued
        gone.cancel()
        return await asyncio.wait_for(kept, WAIT)

    kept = asyncio.run(main())
    assert kept is not None and kept.client_id == "ci_kept"


def test_a_closed_batch_starts_a_new_thread_when_used_again(
    store: FakeStore, batch: TurnBatch[str, ClientRecord | None]
) -> None:
    asyncio.run(gather(batch, ["ci_a"]))
    batch.close()
    batch.close()  # twice is fine
    assert ids_of(asyncio.run(gather(batch, ["ci_b"]))) == ["ci_b"]
    assert store.threads[0] is not store.threads[1]


def _forgetful(store: FakeStore) -> TurnBatch[str, ClientRecord | None]:
    """A batch whose bulk function answers its first call with no answers at all (a bug of
    the bulk function, which the batch should hand to the waiters like a store error)."""
    forgot = [True]

    def bulk(keys: Sequence[str]) -> list[ClientRecord | None]:
        answers = store.find_clients(keys)
        return [] if forgot and forgot.pop() else answers

    return TurnBatch(bulk, name="forgetful")


def test_a_bulk_answer_of_the_wrong_length_reaches_every_waiter(store: FakeStore) -> None:
    turn_batch = _forgetful(store)

    async def main() -> tuple[ClientRecord | None | BaseException, ...]:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, _context: None)
        lookups = asyncio.gather(
            turn_batch.find("ci_a"), turn_batch.find("ci_b"), return_exceptions=True
        )
        return await asyncio.wait_for(lookups, 1.0)

    try:
        answers = asyncio.run(main())
    finally:
        turn_batch.close()
    assert all(isinstance(a, ValueError) for a in answers), answers


def test_a_bulk_answer_of_the_wrong_length_does_not_wedge_the_batch(store: FakeStore) -> None:
    store.hold = True
    turn_batch = _forgetful(store)

    async def main() -> tuple[ClientRecord | None, ...]:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, _context: None)
        bad = asyncio.ensure_future(turn_batch.find("ci_a"))
        assert await asyncio.to_thread(store.started.wait, WAIT)
        meanwhile = asyncio.ensure_future(turn_batch.find("ci_b"))
        await asyncio.sleep(0)
        store.hold = False
        store.release.set()
        await asyncio.wait([bad], timeout=0.2)
        bad.cancel()
        return await asyncio.wait_for(asyncio.gather(meanwhile, turn_batch.find("ci_c")), 1.0)

    try:
        answers = asyncio.run(main())
    finally:
        turn_batch.close()
    assert ids_of(answers) == ["ci_b", "ci_c"]
