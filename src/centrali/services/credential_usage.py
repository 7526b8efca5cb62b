"""When each credential was last used, without a write per token request.

The client-authentication pipeline calls ``record`` on every success: a dict update under a
lock, no I/O. A periodic ``flush`` (every few seconds, web.runtime) writes the latest time
of each credential and its account in one transaction. Every worker and instance flushes its
own; the store only ever moves a time forward, so the answer is the latest use seen by any
of them. Memory is bounded by the number of credentials used between two flushes.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from centrali.store import repositories as repo
from centrali.store.db import Database


class CredentialUsageCounter:
    """Thread-safe latest-use times, held in memory until ``flush``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (kind, credential id) -> (client id, epoch seconds)
        self._used: dict[tuple[str, int], tuple[str, float]] = {}

    def record(self, client_id: str, kind: str, credential_id: int, at: float) -> None:
        key = (kind, credential_id)
        with self._lock:
            held = self._used.get(key)
            if held is None or held[1] < at:
                self._used[key] = (client_id, at)

    def pending(self) -> int:
        with self._lock:
            return len(self._used)

    def flush(self, db: Database) -> int:
        """Write the times so far in one transaction; returns how many credentials. If the
        store fails, the times are kept for the next flush and the error is raised."""
        with self._lock:
            taken, self._used = self._used, {}
        if not taken:
            return 0
        credentials = {key: _at(t) for key, (_, t) in taken.items()}
        accounts: dict[str, datetime] = {}
        for client_id, t in taken.values():
            at = _at(t)
            if client_id not in accounts or accounts[client_id] < at:
                accounts[client_id] = at
        try:
            with db.write() as session:
                repo.mark_credentials_used(session, credentials=credentials, accounts=accounts)
        except BaseException:
            with self._lock:
                for key, (client_id, t) in taken.items():
                    held = self._used.get(key)
                    if held is None or held[1] < t:
                        self._used[key] = (client_id, t)
            raise
        return len(taken)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
