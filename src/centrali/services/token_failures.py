"""Failed token requests, counted per client id, reason and hour instead of logged one by one.

The token endpoint calls ``record`` on its failure path: a dict update under a lock, no I/O.
A periodic ``flush`` adds what was counted to ``token_failure_counts`` in one transaction.
Memory stays bounded whatever clients send: a client id that cannot be an account's is
counted as "unknown" at once, one that is well-formed but names no account is folded into
"unknown" at flush, and past ``max_keys`` distinct keys between two flushes every new key is
folded into "unknown" too. Only client ids are kept, never a secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from centrali.store import audit_queries
from centrali.store.audit_queries import FailureCount
from centrali.store.db import Database

UNKNOWN_CLIENT = "unknown"
MAX_KEYS = 10_000
# The token endpoint reports "unknown_client", "wrong_secret", "inactive_client" (revoked or
# deleted) and "rate_limited" (web.token_asgi); any short string is accepted.
_CLIENT_ID_MAX = 32  # service_accounts.client_id: a longer id names no account
_REASON_MAX = 32  # token_failure_counts.reason
_HOUR = 3600

# (client id, reason, hour since the epoch)
_Key = tuple[str, str, int]


class _Tally:
    __slots__ = ("count", "last_seen")

    def __init__(self, count: int, last_seen: float) -> None:
        self.count = count
        self.last_seen = last_seen


class TokenFailureCounter:
    """Thread-safe counts of failed token requests, held in memory until ``flush``."""

    def __init__(self, *, max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.time):
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._tallies: dict[_Key, _Tally] = {}

    def record(self, client_id: str, reason: str) -> None:
        """Count one failed request of ``client_id`` (as sent; "" when none) for ``reason``."""
        at = self._clock()
        if not (
            0 < len(client_id) <= _CLIENT_ID_MAX and client_id.isascii() and client_id.isprintable()
        ):
            client_id = UNKNOWN_CLIENT
        key = (client_id, reason[:_REASON_MAX], int(at // _HOUR))
        with self._lock:
            self._add(key, 1, at)

    def pending(self) -> int:
        """Failed requests counted and not yet flushed."""
        with self._lock:
            return sum(t.count for t in self._tallies.values())

    def snapshot(self) -> dict[tuple[str, str, datetime], int]:
        """The counts not yet flushed by (client id, reason, hour window start)."""
        with self._lock:
            items = [(k, t.count) for k, t in self._tallies.items()]
        return {
            (client_id, reason, datetime.fromtimestamp(hour * _HOUR, UTC)): count
            for (client_id, reason, hour), count in items
        }

    def flush(self, db: Database, now: datetime) -> int:
        """Add the counts so far to the store in one transaction and start again from zero;
        returns how many failed requests were written. ``now`` bounds the stamps: a count
        recorded by a clock ahead of it is stamped ``now``. If the store fails, the counts
        are kept for the next flush and the error is raised."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
        if not tallies:
            return 0
        try:
            with db.write() as session:
                named = sorted({k[0] for k in tallies if k[0] != UNKNOWN_CLIENT})
                known = audit_queries.account_workspace_ids(session, client_ids=named)
                rows = _fold(tallies, known, now)
                audit_queries.add_token_failure_counts(session, rows=rows)
        except BaseException:
            with self._lock:
                for key, tally in tallies.items():
                    self._add(key, tally.count, tally.last_seen)
            raise
        return sum(r.count for r in rows)

    def _add(self, key: _Key, count: int, at: float) -> None:
        # Called with the lock held.
        tally = self._tallies.get(key)
        if tally is None and len(self._tallies) >= self.max_keys:
            # Full: count under "unknown". Those keys may pass the cap, by at most one per
            # reason and hour.
            key = (UNKNOWN_CLIENT, key[1], key[2])
            tally = self._tallies.get(key)
        if tally is None:
            self._tallies[key] = _Tally(count, at)
        else:
            tally.count += count
            tally.last_seen = max(tally.last_seen, at)


def _fold(tallies: dict[_Key, _Tally], known: dict[str, int], now: datetime) -> list[FailureCount]:
    """One row per (client id, reason, window), ids of no account counted as "unknown"."""
    limit = now.timestamp()
    folded: dict[_Key, _Tally] = {}
    for (client_id, reason, hour), tally in tallies.items():
        last_seen = min(tally.last_seen, limit)
        hour = min(hour, int(limit // _HOUR))
        key = (client_id if client_id in known else UNKNOWN_CLIENT, reason, hour)
        into = folded.get(key)
        if into is None:
            folded[key] = _Tally(tally.count, last_seen)
        else:
            into.count += tally.count
            into.last_seen = max(into.last_seen, last_seen)
    return [
        FailureCount(
            client_id=client_id,
            reason=reason,
            window_start=datetime.fromtimestamp(hour * _HOUR, UTC),
            workspace_id=known.get(client_id),
            count=tally.count,
            last_seen_at=datetime.fromtimestamp(tally.last_seen, UTC),
        )
        for (client_id, reason, hour), tally in folded.items()
    ]
