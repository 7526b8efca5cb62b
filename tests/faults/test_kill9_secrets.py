"""kill -9 of ``centrali serve`` (supervisor and workers) in the middle of a flood of
service-account secret changes (``POST …/{id}/secrets``, ``DELETE …/{id}/secrets/{secretId}``),
then a restart on the same store.

Each account's chain alternates: add a secret, then delete the one before it (never more than
two live, well under the limit of 5). What must hold afterwards, for every round of flood,
kill and restart, for every account:

- every secret whose add was acknowledged (201) and whose delete was never sent works at the
  token endpoint, and is listed (``GET …/{id}/secrets``) whole: its hint, creator, no expiry;
- every secret whose delete was acknowledged (204) is refused like a wrong one, and is not
  listed;
- a delete in flight at the kill (its answer lost) may have committed or not, but the token
  endpoint, the listing and the audit log agree about it: it works, is listed and has no
  ``service_account.secret_deleted`` row, or it is refused, unlisted and has exactly one;
- the listing holds nothing else but at most one secret nobody was told about, and only when
  an add of that account was in flight at the kill (its answer, the only copy of the secret,
  lost); it is newer than every secret of the account we know;
- the audit log has exactly one ``service_account.secret_added`` row per committed add
  (acknowledged, or lost and listed) and one ``service_account.secret_deleted`` row per
  committed delete, each naming the account (``target``: its clientId; ``details``: its
  ``id`` and the ``secretId``), and none for a change that did not commit;
- straight from the store: the token endpoint's copy of each account's secrets names exactly
  its secret rows (``check_store_invariants``).

One account's chain runs in order on one thread (ten such chains in parallel), so "the
secret before it" is well defined. Before each later round, the secrets a round left beside
the newest known one (an undeleted lost delete, a committed lost add) are deleted, so each
chain starts from one known secret.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Launch, Server
from tests.faults.harness import (
    ACCOUNTS,
    Flood,
    Lost,
    Stopped,
    admin_token,
    audit_events,
    bearer,
    check_store_invariants,
    group_members,
    http_client,
    kill_server,
    secret_works,
)

pytestmark = pytest.mark.e2e

ACCOUNTS_CHAINED = 10
PAIRS_PER_ACCOUNT = 5  # add, then delete the previous one: 100 requests per round
# Per round: when to kill, as a share of the round's requests answered (early, middle,
# late), and the worker processes of the server killed (2: a supervisor and its workers).
ROUNDS = [((0.05, 0.25), 2), ((0.35, 0.6), 1), ((0.65, 0.85), 2)]
# And how long after that many answers (up to this many seconds, drawn like the share).
MAX_LINGER = 0.015
FLOOD_DEADLINE = 60.0
ADDED = "service_account.secret_added"
DELETED = "service_account.secret_deleted"


def secrets_path(account_id: int) -> str:
    return f"{ACCOUNTS}/{account_id}/secrets"


def hint_of(secret: str) -> str:
    return "…" + secret[-4:]


@dataclass
class Account:
    id: int
    client_id: str
    current: tuple[int, str]  # the newest secret known to work (id, secret): never deleted
    live: dict[int, str]  # every known secret that must work, ``current`` included
    deleted: dict[int, str] = field(default_factory=dict)  # secrets that must be refused
    orphans: set[int] = field(default_factory=set)  # committed, but only a lost answer knew it
    added: set[int] = field(default_factory=set)  # secret ids with a secret_added row
    removed: set[int] = field(default_factory=set)  # secret ids with a secret_deleted row


@dataclass
class Chain:
    """One account's adds and deletes in one round, in order."""

    account: Account
    added: list[tuple[int, str]] = field(default_factory=list)  # acknowledged adds
    deleted: list[int] = field(default_factory=list)  # acknowledged deletes
    lost_add: bool = False  # an add was sent and its answer never came
    lost_delete: int | None = None  # the secret whose delete was sent, its answer lost


def run_chain(server: Server, user_token: str, chain: Chain, flood: Flood) -> None:
    account = chain.account
    path = secrets_path(account.id)
    previous = account.current[0]
    try:
        with http_client(server) as http:
            flood.go.wait(10)
            for _ in range(PAIRS_PER_ACCOUNT):
                try:
                    r = flood.send(
                        http,
                        http.build_request("POST", path, headers=bearer(user_token), json={}),
                        201,
                        f"add to {account.id}",
                    )
                except Lost:
                    chain.lost_add = True
                    return
                body = r.json()
                chain.added.append((body["id"], body["clientSecret"]))
                try:
                    flood.send(
                        http,
                        http.build_request(
                            "DELETE", f"{path}/{previous}", headers=bearer(user_token)
                        ),
                        204,
                        f"delete {previous} of {account.id}",
                    )
                except Lost:
                    chain.lost_delete = previous
                    return
                chain.deleted.append(previous)
                previous = body["id"]
    except Stopped:
        return
    except Exception as exc:  # the thread must not die silently
        flood.failures.append(f"chain thread: {exc!r}")


def flood_and_kill(
    server: Server, user_token: str, accounts: list[Account], kill_after: int, linger: float
) -> tuple[list[Chain], Flood]:
    """Start every account's chain on its own thread, SIGKILL the server ``linger`` seconds
    after ``kill_after`` answers are in."""
    flood = Flood()
    chains = [Chain(account) for account in accounts]
    threads = [
        threading.Thread(target=run_chain, args=(server, user_token, c, flood), daemon=True)
        for c in chains
    ]
    members = group_members(server.proc.pid)
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # every thread waiting on `go`, its client built
    flood.go.set()
    deadline = time.monotonic() + FLOOD_DEADLINE
    with flood.progress:
        while flood.answered < kill_after and not flood.failures:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {flood.answered} answers in {FLOOD_DEADLINE} s"
            flood.progress.wait(remaining)
    # Right after an answer, SQLite's one writer has rarely committed the next change yet: a
    # short random wait lets the kill also fall between a commit and its answer.
    time.sleep(linger)
    kill_server(server, members)
    for thread in threads:
        thread.join(15)
        assert not thread.is_alive(), "a client thread hung after the kill"
    return chains, flood


def listed_secrets(http: httpx.Client, user_token: str, account: Account) -> dict[int, Any]:
    r = http.get(secrets_path(account.id), headers=bearer(user_token))
    assert r.status_code == 200, r.text
    items = r.json()["data"]
    by_id = {item["id"]: item for item in items}
    assert len(by_id) == len(items), f"account {account.id}: a secret listed twice: {items}"
    for item in items:
        # A half-written row would miss or null one of these.
        assert item["createdAt"] and item["createdBy"], item
        assert item["expiresAt"] is None, item
        assert isinstance(item["hint"], str) and len(item["hint"]) == 5, item
    return by_id


Rows = defaultdict[str, Counter[int]]  # clientId -> how many rows name each secret id


def audit_rows(env: dict[str, str], accounts: list[Account]) -> tuple[Rows, Rows]:
    """Per clientId, how many secret_added and secret_deleted rows name each secret id."""
    by_client = {a.client_id: a for a in accounts}
    added: Rows = defaultdict(Counter)
    deleted: Rows = defaultdict(Counter)
    for event in audit_events(env):
        if event["action"] not in (ADDED, DELETED):
            continue
        account = by_client.get(event["target"])
        assert account is not None, f"a secret change of an account nobody made: {event}"
        assert event["details"]["id"] == account.id, event
        rows = added if event["action"] == ADDED else deleted
        rows[account.client_id][event["details"]["secretId"]] += 1
    return added, deleted


def check_after_restart(
    server: Server, env: dict[str, str], user_token: str, chains: list[Chain]
) -> dict[str, int]:
    """Every invariant of the module docstring; updates each chain's account to the new state."""
    stats = Counter[str]()
    with http_client(server) as http:
        for chain in chains:
            account = chain.account
            known = {**account.live, **dict(chain.added)}
            listing = listed_secrets(http, user_token, account)
            resurrected = sorted(listing.keys() & account.deleted.keys())
            assert not resurrected, f"account {account.id}: deleted secrets listed: {resurrected}"
            doomed = set(chain.deleted)
            if chain.lost_delete is not None:
                doomed.add(chain.lost_delete)
            live = {i: s for i, s in known.items() if i not in doomed}
            for secret_id, secret in live.items():
                assert secret_works(http, account.client_id, secret), (
                    f"account {account.id}: secret {secret_id}, acknowledged and never deleted,"
                    " fails after the restart"
                )
                assert secret_id in listing, (account.id, secret_id, sorted(listing))
                assert listing[secret_id]["hint"] == hint_of(secret), listing[secret_id]
            gone = {i: known[i] for i in chain.deleted}
            for secret_id, secret in gone.items():
                assert not secret_works(http, account.client_id, secret), (
                    f"account {account.id}: secret {secret_id}, deleted with a 204, still works"
                )
                assert secret_id not in listing, (account.id, secret_id, sorted(listing))
            if chain.lost_delete is not None:
                # Its answer was lost: it may have committed or not, but the token endpoint
                # and the listing must tell the same story.
                secret_id = chain.lost_delete
                secret = known[secret_id]
                works = secret_works(http, account.client_id, secret)
                assert works == (secret_id in listing), (
                    f"account {account.id}: secret {secret_id} (its delete lost in flight)"
                    f" {'works' if works else 'fails'} at the token endpoint, yet is"
                    f" {'' if secret_id in listing else 'not '}listed"
                )
                if works:
                    live[secret_id] = secret
                else:
                    gone[secret_id] = secret
                    stats["lost_delete_committed"] += 1
            unknown = set(listing) - known.keys()
            assert len(unknown) <= 1, f"account {account.id}: unknown secrets {sorted(unknown)}"
            if unknown:
                # Only an add whose answer was lost can have made a secret nobody knows, and
                # it came after every secret of the account we were told about.
                assert chain.lost_add, (
                    f"account {account.id}: secret {sorted(unknown)} from nowhere (no add of it"
                    " was in flight)"
                )
                assert min(unknown) > max(known), (account.id, sorted(unknown), sorted(known))
                stats["lost_add_committed"] += 1

            account.live = live
            account.deleted.update(gone)
            account.orphans |= unknown
            account.added |= {i for i, _ in chain.added} | unknown
            account.removed |= gone.keys()
            if chain.added:
                account.current = chain.added[-1]
            assert account.current[0] in account.live, account
            # Older deletes stay refused (the last few: enough to see a resurrected row).
            for secret_id in sorted(account.deleted.keys() - gone.keys())[-3:]:
                assert not secret_works(http, account.client_id, account.deleted[secret_id]), (
                    account.id,
                    secret_id,
                )
            stats["adds_acknowledged"] += len(chain.added)
            stats["deletes_acknowledged"] += len(chain.deleted)
            stats["lost_adds"] += chain.lost_add
            stats["lost_deletes"] += chain.lost_delete is not None
            stats["secrets_working"] += len(account.live)

    # One audit row per committed change, none for one that did not commit.
    accounts = [chain.account for chain in chains]
    added, deleted = audit_rows(env, accounts)
    for account in accounts:
        expected_added = Counter(dict.fromkeys(account.added, 1))
        assert added[account.client_id] == expected_added, (
            f"account {account.id}: secret_added rows {dict(added[account.client_id])},"
            f" committed adds {sorted(account.added)}"
        )
        expected_deleted = Counter(dict.fromkeys(account.removed, 1))
        assert deleted[account.client_id] == expected_deleted, (
            f"account {account.id}: secret_deleted rows {dict(deleted[account.client_id])},"
            f" committed deletes {sorted(account.removed)}"
        )
    assert check_store_invariants(env) == len(accounts)
    return dict(stats)


def settle(server: Server, user_token: str, accounts: list[Account]) -> int:
    """Delete every secret of each account but its newest known one (what a lost delete left,
    what a lost add committed): each chain of the next round starts from one secret."""
    settled = 0
    with http_client(server) as http:
        for account in accounts:
            extra = account.orphans | (account.live.keys() - {account.current[0]})
            for secret_id in sorted(extra):
                r = http.delete(
                    f"{secrets_path(account.id)}/{secret_id}", headers=bearer(user_token)
                )
                assert r.status_code == 204, (account.id, secret_id, r.status_code, r.text)
                account.removed.add(secret_id)
                if secret_id in account.live:
                    account.deleted[secret_id] = account.live.pop(secret_id)
                settled += 1
            account.orphans.clear()
            assert account.live == dict([account.current]), account
    return settled


def test_kill9_mid_secret_changes_keeps_every_secret_whole(
    backend_env: dict[str, str], launch: Launch
) -> None:
    env = backend_env
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed={seed}")  # noqa: T201 (shown with a failure's captured output)
    user_token = admin_token(env)
    (server,) = launch(env, extra=("--workers", str(ROUNDS[0][1])))

    accounts: list[Account] = []
    with http_client(server) as http:
        for i in range(ACCOUNTS_CHAINED):
            r = http.post(ACCOUNTS, headers=bearer(user_token), json={"name": f"chained-{i}"})
            assert r.status_code == 201, r.text
            body = r.json()
            first = (body["secretId"], body["clientSecret"])
            accounts.append(
                Account(
                    id=body["id"], client_id=body["clientId"], current=first, live=dict([first])
                )
            )
    per_round = ACCOUNTS_CHAINED * PAIRS_PER_ACCOUNT * 2

    report = []
    for round_no, ((low, high), workers) in enumerate(ROUNDS):
        processes = 1 if workers == 1 else workers + 1  # the supervisor and its workers
        assert len(group_members(server.proc.pid)) >= processes, server.log_text()
        settled = settle(server, user_token, accounts) if round_no else 0
        kill_after = int(per_round * rng.uniform(low, high))
        linger = rng.uniform(0, MAX_LINGER)
        chains, flood = flood_and_kill(server, user_token, accounts, kill_after, linger)
        assert not flood.failures, (seed, flood.failures, server.log_text()[-3000:])
        assert flood.answered < per_round, "the kill came after the flood: nothing was in flight"
        # The same store, a new server (the next round's worker count; one for the last check).
        following = ROUNDS[round_no + 1][1] if round_no + 1 < len(ROUNDS) else 1
        (server,) = launch(env, extra=("--workers", str(following)))
        stats = check_after_restart(server, env, user_token, chains)
        report.append(
            {
                "kill_after": kill_after,
                "linger_ms": round(linger * 1000, 1),
                "workers": workers,
                "settled": settled,
                "answered": flood.answered,
                "lost": flood.lost,
                "refused": flood.refused,
                **stats,
            }
        )
    print(f"seed={seed} rounds={report}")  # noqa: T201 (shown with -s / -rA)
