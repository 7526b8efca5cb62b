"""Fixtures of the fault tests: the e2e fixtures, a store per backend, and a hard deadline."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.e2e.conftest import (  # noqa: F401 (pg_database_url: a fixture, used by name)
    PG_URL,
    Launch,
    launcher,
    pg_database_url,
)
from tests.faults.harness import fault_env

# The e2e suite's 20 s, and more: these tests start servers on a machine they load up.
STARTUP_TIMEOUT = 60.0

# No fault test may hang: past this many seconds (setup and teardown included) it fails.
TEST_DEADLINE_SECONDS = 300


class DeadlineExceededError(Exception):
    pass


@pytest.fixture(autouse=True)
def hard_deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """SIGALRM interrupts the main thread wherever it blocks (pytest-timeout's signal method,
    which this environment does not install)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise DeadlineExceededError(f"{request.node.nodeid} ran over {TEST_DEADLINE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, TEST_DEADLINE_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """The e2e ``launch`` with a longer start-up allowance (two-worker servers under load)."""
    with launcher(tmp_path, STARTUP_TIMEOUT) as start:
        yield start


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_URL, reason="CENTRALI_TEST_DATABASE_URL is not set"),
        ],
    ),
]


@pytest.fixture(params=BACKENDS)
def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """A fresh store on each backend (SQLite file, or a private PostgreSQL schema)."""
    url = request.getfixturevalue("pg_database_url") if request.param == "postgres" else None
    return fault_env(tmp_path / "data", url)
