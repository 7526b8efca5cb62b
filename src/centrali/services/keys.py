"""The signing keys in the store: made on first start, shared by every process, rotated
without downtime, private keys encrypted at rest when ``CENTRALI_MASTER_KEY`` is set.

A rotated-in key is stored with ``activates_at`` = now + the lead time: every worker
publishes it in the JWKS at its next reread (``KeyWatcher``), and only from ``activates_at``
on does it sign. The key it replaces keeps verifying until every token it signed has expired
(``oauth.keys.key_states``). Writers of the key table are serialized
(``repo.lock_signing_keys``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from centrali.config import Settings
from centrali.oauth.keys import (
    SIGNING_ALG,
    KeyEntry,
    KeySet,
    KeyState,
    KeyStatus,
    SigningKey,
    generate_private_key_pem,
    key_states,
    load_signing_key,
    next_change,
)
from centrali.oauth.keywrap import (
    MasterKeyError,
    is_wrapped,
    parse_master_key,
    unwrap_private_key,
    wrap_private_key,
)
from centrali.services.errors import ConflictError, NotFoundError
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import SigningKeyRow

log = logging.getLogger("centrali.keys")

# A superseded key stays published this long beyond its last token's expiry: covers clock
# skew between servers (a worker noticing the newer key late is covered by refresh_seconds).
CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True)
class KeyPolicy:
    """What key handling needs of the settings (defaults: those of ``Settings``)."""

    master_key: bytes | None = field(default=None, repr=False)
    token_ttl: int = 25200
    lead_time: int = 900
    refresh_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyPolicy:
        """Raises ``MasterKeyError`` when the master key is not base64 of 32 bytes."""
        return cls(
            master_key=parse_master_key(settings.master_key.get_secret_value()),
            # The longest-lived token a key signs: service-account or user access tokens
            # (ID tokens and sign-in tickets live no longer than user access tokens).
            token_ttl=max(settings.token_ttl, settings.user_token_ttl),
            lead_time=settings.key_lead_time,
            refresh_seconds=settings.key_refresh_seconds,
        )

    @property
    def keep_seconds(self) -> float:
        """How long a superseded key stays after the newer one took over: the lifetime of
        its last token, plus how late a worker may switch, plus clock skew."""
        return self.token_ttl + self.refresh_seconds + CLOCK_SKEW_SECONDS


@dataclass(frozen=True)
class KeyView:
    """One key as ``centrali keys list`` shows it."""

    kid: str
    alg: str
    generation: int
    state: KeyState
    created_at: datetime
    activates_at: datetime | None
    retire_after: datetime | None
    encrypted: bool


# --- first key ------------------------------------------------------------------------------


def _has_key(rows: Sequence[SigningKeyRow], alg: str) -> bool:
    return any(r.alg == alg for r in rows)


def ensure_signing_key(
    db: Database, alg: str = SIGNING_ALG, policy: KeyPolicy | None = None
) -> None:
    """Create a key for ``alg`` unless one exists; safe when several servers start at once.
    Raises ``MasterKeyError`` when a stored key cannot be decrypted with the master key."""
    policy = policy or KeyPolicy()
    with db.read() as session:
        rows = repo.live_signing_keys(session)
        _check_master_key(rows, policy.master_key)
        if _has_key(rows, alg):
            return
    add_signing_key(db, alg, only_if_none=True, policy=policy)


def _check_master_key(rows: Iterable[SigningKeyRow], master_key: bytes | None) -> None:
    """Every encrypted key opens with ``master_key`` (AES-GCM only: cheap, no key parsing)."""
    for row in rows:
        unwrap_private_key(row.private_pem, master_key=master_key, kid=row.kid)


# --- adding and rotating -------------------------------------------------------------------


def add_signing_key(
    db: Database,
    alg: str = SIGNING_ALG,
    *,
    only_if_none: bool = False,
    policy: KeyPolicy | None = None,
) -> str | None:
    """Store a new key one generation above the newest, signing at once; returns its kid
    (None when ``only_if_none`` and another process stored a key for ``alg`` first)."""
    view = _store_new_key(db, alg, policy or KeyPolicy(), only_if_none=only_if_none)
    return None if view is None else view.kid


def rotate_signing_key(
    db: Database,
    alg: str = SIGNING_ALG,
    policy: KeyPolicy | None = None,
    *,
    lead_time: float | None = None,
    now: float | None = None,
) -> KeyView:
    """A new key for ``alg``: published at once, signing after the lead time (at once when no
    key of ``alg`` signs yet, as there is nothing to keep signing meanwhile)."""
    policy = policy or KeyPolicy()
    lead = policy.lead_time if lead_time is None else lead_time
    if lead < 0:
        raise ValueError("the lead time cannot be negative")
    view = _store_new_key(db, alg, policy, lead_time=lead, now=now)
    if view is None:  # pragma: no cover - only_if_none is off, so only a lost race
        raise ConflictError("another signing key was stored at the same time; try again")
    log.info(
        "signing key %s (%s, generation %d) rotated in, signing from %s",
        view.kid,
        alg,
        view.generation,
        "now" if view.activates_at is None else _iso(view.activates_at.timestamp()),
    )
    return view


def _store_new_key(
    db: Database,
    alg: str,
    policy: KeyPolicy,
    *,
    only_if_none: bool = False,
    lead_time: float = 0,
    now: float | None = None,
) -> KeyView | None:
    pem = generate_private_key_pem(alg)  # slow for RSA: outside the transaction
    key = load_signing_key(pem, alg)
    stored = pem
    if policy.master_key is not None:
        stored = wrap_private_key(pem, master_key=policy.master_key, kid=key.kid)
    try:
        with db.write() as session:
            # Racing writers are serialized (BEGIN IMMEDIATE on SQLite, an advisory lock on
            # PostgreSQL), so the second sees the first's key here; the unique generation
            # is the backstop.
            repo.lock_signing_keys(session)
            if only_if_none and _has_key(repo.live_signing_keys(session), alg):
                return None
            at = time.time() if now is None else now
            statuses = _statuses(repo.signing_keys(session), policy, at)
            signing = any(s.entry.alg == alg and s.state == "active" for s in statuses)
            activates_at = _datetime(at + lead_time) if signing and lead_time > 0 else None
            row = SigningKeyRow(
                generation=repo.max_key_generation(session) + 1,
                kid=key.kid,
                alg=key.alg,
                private_pem=stored,
                public_jwk=dict(key.public_jwk),
                created_at=_datetime(at),
                activates_at=activates_at,
            )
            session.add(row)
            session.flush()
            view = _view(row, _statuses([row], policy, at)[0])
    except IntegrityError:
        # Another process stored the same generation first: its key wins, ours is dropped.
        return None
    return view


# --- listing, retiring, encrypting ---------------------------------------------------------


def list_signing_keys(
    db: Database, policy: KeyPolicy | None = None, *, now: float | None = None
) -> list[KeyView]:
    """Every key with its state, newest generation first."""
    policy = policy or KeyPolicy()
    at = time.time() if now is None else now
    with db.read() as session:
        rows = {r.kid: r for r in repo.signing_keys(session)}
    return [_view(rows[s.entry.kid], s) for s in _statuses(rows.values(), policy, at)]


def retire_signing_keys(
    db: Database,
    alg: str = SIGNING_ALG,
    policy: KeyPolicy | None = None,
    *,
    kid: str | None = None,
    force: bool = False,
    now: float | None = None,
) -> list[str]:
    """Mark keys retired; returns their kids. Without ``kid``: every superseded key whose
    tokens have all expired. With ``kid``: that key, never the key signing for ``alg``,
    and a key whose tokens may still be valid only with ``force``."""
    policy = policy or KeyPolicy()
    at = time.time() if now is None else now
    with db.write() as session:
        repo.lock_signing_keys(session)
        statuses = _statuses(repo.signing_keys(session), policy, at)
        if kid is None:
            targets = [s for s in statuses if s.state == "retired" and s.entry.retired_at is None]
        else:
            status = next((s for s in statuses if s.entry.kid == kid), None)
            if status is None:
                raise NotFoundError(f"no signing key {kid}")
            _check_retirable(status, alg, force)
            targets = [] if status.entry.retired_at is not None else [status]
        kids = [s.entry.kid for s in targets]
        repo.retire_signing_keys(session, kids=kids, at=_datetime(at))
    for retired in kids:
        log.info("signing key %s retired", retired)
    return kids if kid is None else [kid]


def _check_retirable(status: KeyStatus, alg: str, force: bool) -> None:
    entry = status.entry
    if status.state == "active" and entry.alg == alg:
        raise ConflictError(
            f"signing key {entry.kid} is the active {alg} key: rotate first, "
            "then retire it once its tokens have expired"
        )
    if force:
        return
    if status.state == "active":
        raise ConflictError(
            f"signing key {entry.kid} is the active {entry.alg} key and its tokens may still "
            "be valid (--force retires it anyway)"
        )
    if status.state == "superseded" and status.retire_after is not None:
        raise ConflictError(
            f"signing key {entry.kid} may have signed tokens valid until "
            f"{_iso(status.retire_after)} (--force retires it now)"
        )


def encrypt_signing_keys(db: Database, policy: KeyPolicy) -> list[str]:
    """Re-store every plaintext private key encrypted under the master key, in one
    transaction; returns their kids."""
    if policy.master_key is None:
        raise MasterKeyError("set CENTRALI_MASTER_KEY to encrypt the signing keys")
    with db.write() as session:
        repo.lock_signing_keys(session)
        rows = [r for r in repo.signing_keys(session) if not is_wrapped(r.private_pem)]
        for row in rows:
            row.private_pem = wrap_private_key(
                row.private_pem, master_key=policy.master_key, kid=row.kid
            )
    if rows:
        log.info("%d signing key(s) encrypted under the master key", len(rows))
    return [r.kid for r in rows]


# --- loading -------------------------------------------------------------------------------


def load_key_set(
    db: Database,
    alg: str = SIGNING_ALG,
    policy: KeyPolicy | None = None,
    *,
    now: float | None = None,
) -> KeySet:
    """The active key of ``alg`` signs; every pending, active and still-needed superseded
    key verifies."""
    return KeyWatcher(db, alg, policy).load(time.time() if now is None else now)


class KeyWatcher:
    """One worker's keys: rebuilt when the key table changes or a key's time comes.

    ``poll`` costs one small query while nothing changes; private keys are parsed once per
    process (an RSA key takes tens of milliseconds to load and check).
    """

    def __init__(self, db: Database, alg: str = SIGNING_ALG, policy: KeyPolicy | None = None):
        self._db = db
        self._alg = alg
        self._policy = policy or KeyPolicy()
        self._fingerprint: tuple[int, int, int] | None = None
        self._keys: KeySet | None = None

    def load(self, now: float) -> KeySet:
        """Read every key and build the set for ``now``."""
        with self._db.read() as session:
            rows = repo.signing_keys(session)
        statuses = _statuses(rows, self._policy, now)
        by_kid = {r.kid: r for r in rows}
        active = next(
            (s for s in statuses if s.entry.alg == self._alg and s.state == "active"), None
        )
        if active is None:
            raise RuntimeError(f"no {self._alg} signing key in the store")
        master_key = self._policy.master_key
        published = [_parse(by_kid[s.entry.kid], master_key) for s in statuses if s.published]
        keys = KeySet.of(
            _parse(by_kid[active.entry.kid], master_key),
            published,
            changes_at=next_change(statuses, now=now),
        )
        if self._keys is None and master_key is not None:
            plain = sum(1 for r in rows if r.retired_at is None and not is_wrapped(r.private_pem))
            if plain:
                log.warning(
                    "%d signing key(s) stored unencrypted: run `centrali keys encrypt`", plain
                )
        self._fingerprint = _fingerprint(rows)
        self._keys = keys
        return keys

    def poll(self, now: float) -> KeySet | None:
        """A new key set when the signing key or the published keys differ from the last
        one returned, else None."""
        current = self._keys
        if current is None:
            return self.load(now)
        with self._db.read() as session:
            fingerprint = repo.signing_key_fingerprint(session)
        due = current.changes_at is not None and now >= current.changes_at
        if fingerprint == self._fingerprint and not due:
            return None
        keys = self.load(now)
        if keys.signing.kid == current.signing.kid and set(keys.verification) == set(
            current.verification
        ):
            return None
        return keys


# Parsed keys by (kid, PEM): a refresh or a new KeySet reuses them.
_PARSED: dict[tuple[str, str], SigningKey] = {}
_PARSED_MAX = 64


def _parse(row: SigningKeyRow, master_key: bytes | None) -> SigningKey:
    pem = unwrap_private_key(row.private_pem, master_key=master_key, kid=row.kid)
    cache_key = (row.kid, pem)
    key = _PARSED.get(cache_key)
    if key is None:
        key = load_signing_key(pem, row.alg)
        if key.kid != row.kid:
            raise ValueError(f"stored signing key {row.kid} does not match its kid")
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[cache_key] = key
    return key


# --- conversions ---------------------------------------------------------------------------


def _fingerprint(rows: Sequence[SigningKeyRow]) -> tuple[int, int, int]:
    """As ``repo.signing_key_fingerprint``: newest generation, keys, retired keys."""
    return (
        max((r.generation for r in rows), default=0),
        len(rows),
        sum(1 for r in rows if r.retired_at is not None),
    )


def _statuses(rows: Iterable[SigningKeyRow], policy: KeyPolicy, now: float) -> list[KeyStatus]:
    return key_states((_entry(r) for r in rows), now=now, keep_seconds=policy.keep_seconds)


def _entry(row: SigningKeyRow) -> KeyEntry:
    return KeyEntry(
        kid=row.kid,
        alg=row.alg,
        generation=row.generation,
        created_at=row.created_at.timestamp(),
        activates_at=None if row.activates_at is None else row.activates_at.timestamp(),
        retired_at=None if row.retired_at is None else row.retired_at.timestamp(),
    )


def _view(row: SigningKeyRow, status: KeyStatus) -> KeyView:
    return KeyView(
        kid=row.kid,
        alg=row.alg,
        generation=row.generation,
        state=status.state,
        created_at=row.created_at,
        activates_at=row.activates_at,
        retire_after=None if status.retire_after is None else _datetime(status.retire_after),
        encrypted=is_wrapped(row.private_pem),
    )


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _iso(epoch: float) -> str:
    return _datetime(epoch).isoformat(timespec="seconds").replace("+00:00", "Z")
