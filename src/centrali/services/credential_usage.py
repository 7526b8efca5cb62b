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
        # secret id -> (client id, epoch seconds)
        self._secrets: dict[int, tuple[str, float]] = {}

    def record(self, client_id: str, secret_id: int, at: float) -> None:
        with self._lock:
            held = self._secrets.get(secret_id)
            if held is None or held[1] < at:
                self._secrets[secret_id] = (client_id, at)

    def pending(self) -> int:
        with self._lock:
            return len(self._secrets)

    def flush(self, db: Database) -> int:
        """Write the times so far in one transaction; returns how many credentials. If the
        store fails, the times are kept for the next flush and the error is raised."""
        with self._lock:
            taken, self._secrets = self._secrets, {}
        if not taken:
            return 0
        secrets = {sid: _at(t) for sid, (_, t) in taken.items()}
        accounts: dict[str, datetime] = {}
        for client_id, t in taken.values():
            at = _at(t)
            if client_id not in accounts or accounts[client_id] < at:
                accounts[client_id] = at
        try:
            with db.write() as session:
                repo.mark_credentials_used(session, secrets=secrets, accounts=accounts)
        except BaseException:
            with self._lock:
                for secret_id, (client_id, t) in taken.items():
                    held = self._secrets.get(secret_id)
                    if held is None or held[1] < t:
                        self._secrets[secret_id] = (client_id, t)
            raise
        return len(taken)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
