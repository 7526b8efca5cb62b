"""services.password_gate: password checks run in a pool of their own, a few at once, a few
more waiting; past that bound a check is refused at once instead of queueing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from centrali.services.password_gate import PasswordGate, PasswordGateFull


def test_past_the_bound_a_check_is_refused_at_once() -> None:
    gate = PasswordGate(workers=2, waiting=1)
    assert gate.bound == 3
    release = threading.Event()
    started: list[str] = []

    def slow_check(name: str) -> str:
        started.append(name)
        release.wait(10)
        return name

    async def flood() -> list[object]:
        held = [asyncio.ensure_future(gate.run(slow_check, f"c{i}")) for i in range(3)]
        await asyncio.sleep(0.05)
        assert gate.admitted == 3
        began = time.monotonic()
        with pytest.raises(PasswordGateFull):
            await gate.run(slow_check, "one too many")
        assert time.monotonic() - began < 0.05  # refused without waiting for a turn
        assert sorted(started) == ["c0", "c1"]  # two threads: the third waits its turn
        release.set()
        answers = await asyncio.gather(*held)
        assert await gate.run(slow_check, "later") == "later"  # places come back
        return list(answers)

    try:
        assert asyncio.run(flood()) == ["c0", "c1", "c2"]
        assert gate.admitted == 0
    finally:
        release.set()
        gate.close()


def test_checks_do_not_run_in_the_event_loops_thread_pool() -> None:
    gate = PasswordGate(workers=1)

    async def where() -> str:
        return await gate.run(lambda: threading.current_thread().name)

    try:
        assert asyncio.run(where()).startswith("centrali-password")
    finally:
        gate.close()


def test_a_failing_check_gives_its_place_back() -> None:
    gate = PasswordGate(workers=1, waiting=0)

    def broken() -> None:
        raise RuntimeError("store away")

    async def twice() -> None:
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await gate.run(broken)

    try:
        asyncio.run(twice())
        assert gate.admitted == 0
    finally:
        gate.close()


def test_a_closed_gate_starts_new_threads_for_the_next_check() -> None:
    gate = PasswordGate(workers=1)
    gate.close()  # never used: nothing to stop
    assert asyncio.run(gate.run(lambda: 1)) == 1
    gate.close()
    assert asyncio.run(gate.run(lambda: 2)) == 2
    gate.close()
