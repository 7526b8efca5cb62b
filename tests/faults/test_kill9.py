"""kill -9 of ``centrali serve`` (supervisor and workers) in the middle of a flood of
service-account rotations and creates, then a restart on the same store.

What must hold afterwards, for every round of flood, kill and restart:

- each rotated account answers to exactly one of its secrets: the last one whose 200 reached
  us, or, only when a later rotation was in flight at the kill, that rotation's secret, which
  we never saw; every older secret is refused. The audit log agrees: it holds one
  ``service_account.rotated`` row per committed rotation, so the in-flight one counts there
  exactly when the acknowledged secret stopped working;
- every acknowledged create exists, whole (GET shows every field, the groups it asked for),
  and its secret works; an account nobody was told about can only be a create whose answer
  was lost, and appears at most once;
- the token endpoint's copy of the groups equals the API's, and the workspace's account count
  (the listing's ``total``) equals the number of accounts the listing pages through; the
  store itself agrees for every row, also those whose secret only a lost answer carried.

Rotations of one account run in order on one thread (ten such chains in parallel), so "the
last acknowledged secret" is well defined; creates run on ten more threads.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.conftest import Launch, Server
from tests.faults.harness import (
    ACCOUNT_FIELDS,
    ACCOUNTS,
    WORKSPACE,
    Flood,
    Lost,
    Stopped,
    access_token,
    admin_token,
    audit_events,
    bearer,
    check_store_invariants,
    claims,
    group_members,
    http_client,
    kill_server,
    list_all_accounts,
    secret_works,
)

pytestmark = pytest.mark.e2e

ACCOUNTS_ROTATED = 10
ROTATIONS_PER_ACCOUNT = 5  # 50 rotations per round
CREATE_THREADS = 10
CREATES_PER_THREAD = 5  # 50 creates per round
# Per round: when to kill, as a share of the round's 100 requests answered (early, middle,
# late), and the worker processes of the server killed (2: a supervisor and its workers).
ROUNDS = [((0.05, 0.25), 2), ((0.35, 0.6), 1), ((0.65, 0.85), 2)]
FLOOD_DEADLINE = 60.0


def expected_groups(index: int) -> list[str]:
    """Every other create names its groups; the rest get the default group."""
    return ["api-users", "developers"] if index % 2 else ["api-users"]


@dataclass
class Account:
    id: int
    client_id: str
    name: str
    groups: list[str]
    current: str | None  # the secret that works, None when only a lost answer knew it
    stale: list[str] = field(default_factory=list)  # secrets that must be refused
    rotations: int = 0  # rotations committed so far, as the audit log counts them


@dataclass
class Chain:
    """One account's rotations in one round."""

    account: Account
    acked: list[str] = field(default_factory=list)
    lost: bool = False  # a rotation was sent and its answer never came


@dataclass
class Creates:
    acked: list[tuple[dict[str, Any], list[str]]] = field(default_factory=list)
    lost: dict[str, list[str]] = field(default_factory=dict)  # name -> groups it asked for


def rotate_chain(server: Server, user_token: str, chain: Chain, flood: Flood) -> None:
    path = f"{ACCOUNTS}/{chain.account.id}/rotate"
    try:
        with http_client(server) as http:
            flood.go.wait(10)
            for _ in range(ROTATIONS_PER_ACCOUNT):
                request = http.build_request("POST", path, headers=bearer(user_token))
                try:
                    r = flood.send(http, request, 200, f"rotate {chain.account.id}")
                except Lost:
                    chain.lost = True
                    return
                chain.acked.append(r.json()["clientSecret"])
    except Stopped:
        return
    except Exception as exc:  # the thread must not die silently
        flood.failures.append(f"rotate thread: {exc!r}")


def create_many(
    server: Server, user_token: str, names: list[tuple[str, int]], creates: Creates, flood: Flood
) -> None:
    try:
        with http_client(server) as http:
            flood.go.wait(10)
            for name, index in names:
                groups = expected_groups(index)
                body: dict[str, Any] = {"name": name}
                if index % 2:
                    body["groups"] = groups
                headers = bearer(user_token)
                request = http.build_request("POST", ACCOUNTS, headers=headers, json=body)
                try:
                    r = flood.send(http, request, 201, f"create {name}")
                except Lost:
                    creates.lost[name] = groups
                    return
                creates.acked.append((r.json(), groups))
    except Stopped:
        return
    except Exception as exc:
        flood.failures.append(f"create thread: {exc!r}")


def flood_and_kill(
    server: Server, user_token: str, rotated: list[Account], round_no: int, kill_after: int
) -> tuple[list[Chain], Creates, Flood]:
    """Start 100 requests on 20 threads, SIGKILL the server once ``kill_after`` answers are in."""
    flood = Flood()
    chains = [Chain(account) for account in rotated]
    creates = Creates()
    threads = [
        threading.Thread(target=rotate_chain, args=(server, user_token, c, flood), daemon=True)
        for c in chains
    ]
    for t in range(CREATE_THREADS):
        names = [
            (f"r{round_no}-c{t * CREATES_PER_THREAD + i}", t * CREATES_PER_THREAD + i)
            for i in range(CREATES_PER_THREAD)
        ]
        threads.append(
            threading.Thread(
                target=create_many, args=(server, user_token, names, creates, flood), daemon=True
            )
        )
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
    kill_server(server, members)
    for thread in threads:
        thread.join(15)
        assert not thread.is_alive(), "a client thread hung after the kill"
    return chains, creates, flood


def check_after_restart(
    server: Server,
    env: dict[str, str],
    user_token: str,
    accounts: dict[str, Account],
    chains: list[Chain],
    creates: Creates,
) -> dict[str, int]:
    """Every invariant of the module docstring; updates ``accounts`` to the new state."""
    stats = Counter[str]()
    events = audit_events(env)
    rotated_rows = Counter(e["target"] for e in events if e["action"] == "service_account.rotated")
    created_rows = Counter(e["target"] for e in events if e["action"] == "service_account.created")
    with http_client(server) as http:
        # Rotations: the last acknowledged secret, or the lost one's; never an older one.
        for chain in chains:
            account = chain.account
            known = ([account.current] if account.current else []) + chain.acked
            last = known[-1] if known else None
            for old in known[:-1]:
                assert not secret_works(http, account.client_id, old), (
                    f"account {account.id}: an older secret still works after the restart"
                )
            acked_total = account.rotations + len(chain.acked)
            rows = rotated_rows[account.client_id]
            if last is not None and secret_works(http, account.client_id, last):
                stats["last_acknowledged_secret_works"] += 1
                assert rows == acked_total, (
                    f"account {account.id}: {rows} rotation audit rows for {acked_total}"
                    " acknowledged rotations, yet the last acknowledged secret works"
                )
                account.current = last
            else:
                assert chain.lost, (
                    f"account {account.id}: its last acknowledged secret fails and no rotation"
                    " of it was in flight at the kill"
                )
                # The in-flight rotation committed (its secret is the one that works now)
                # exactly when the acknowledged secret was replaced.
                expected_rows = {acked_total + 1} if last else {acked_total, acked_total + 1}
                assert rows in expected_rows, (
                    f"account {account.id}: the acknowledged secret was replaced, but the audit"
                    f" log has {rows} rotations for {acked_total} acknowledged"
                )
                stats["lost_rotation_committed"] += last is not None
                account.current = None
            account.stale.extend(s for s in known if s != account.current)
            account.rotations = rows
            stats["rotations_acknowledged"] += len(chain.acked)
            stats["rotations_lost"] += chain.lost

        # Creates: every acknowledged one is known from now on.
        for created, groups in creates.acked:
            accounts[created["clientId"]] = Account(
                id=created["id"],
                client_id=created["clientId"],
                name=created["name"],
                groups=groups,
                current=created["clientSecret"],
            )
        stats["creates_acknowledged"] = len(creates.acked)
        stats["creates_lost"] = len(creates.lost)

        listed, total = list_all_accounts(http, user_token)
        by_client = {a["clientId"]: a for a in listed}
        assert len(by_client) == len(listed) == total, (
            f"listing pages through {len(listed)} accounts ({len(by_client)} distinct), "
            f"the workspace counts {total}"
        )
        missing = [cid for cid in accounts if cid not in by_client]
        assert not missing, f"acknowledged accounts gone after the restart: {missing}"
        for client_id, item in by_client.items():
            if client_id in accounts:
                continue
            # Nobody was told about it: only a create whose answer was lost may have made it.
            assert item["name"] in creates.lost, f"an account from nowhere: {item}"
            groups = creates.lost.pop(item["name"])
            accounts[client_id] = Account(
                id=item["id"], client_id=client_id, name=item["name"], groups=groups, current=None
            )
            stats["lost_create_committed"] += 1

        for client_id, account in accounts.items():
            assert created_rows[client_id] == 1, (client_id, created_rows[client_id])
            r = http.get(f"{ACCOUNTS}/{account.id}", headers=bearer(user_token))
            assert r.status_code == 200, r.text
            record = r.json()
            assert ACCOUNT_FIELDS <= record.keys(), record
            item = by_client[client_id]
            assert {k: record.get(k) for k in item} == item, (record, item)
            assert (record["clientId"], record["name"], record["status"]) == (
                client_id,
                account.name,
                "active",
            ), record
            assert record["workspace"] == WORKSPACE and record["scope"] == "openid", record
            assert sorted(record["groups"]) == sorted(account.groups), record
            assert record["createdAt"] and record["updatedAt"] and record["createdBy"], record
            if account.current is not None:
                # The token endpoint reads its own copy of the groups: it must agree.
                token = access_token(http, client_id, account.current)
                assert sorted(claims(token)["groups"]) == sorted(account.groups), client_id
                stats["secrets_working"] += 1
            for old in account.stale[-3:]:
                assert not secret_works(http, client_id, old), client_id
        assert len(created_rows) == len(accounts), "audit rows of creates nobody can see"
    assert check_store_invariants(env) == len(accounts)
    stats["accounts"] = len(accounts)
    return dict(stats)


def test_kill9_mid_flood_keeps_every_account_whole(
    backend_env: dict[str, str], launch: Launch
) -> None:
    env = backend_env
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    user_token = admin_token(env)
    (server,) = launch(env, extra=("--workers", str(ROUNDS[0][1])))

    accounts: dict[str, Account] = {}
    with http_client(server) as http:
        for i in range(ACCOUNTS_ROTATED):
            r = http.post(ACCOUNTS, headers=bearer(user_token), json={"name": f"rotated-{i}"})
            assert r.status_code == 201, r.text
            body = r.json()
            accounts[body["clientId"]] = Account(
                id=body["id"],
                client_id=body["clientId"],
                name=body["name"],
                groups=["api-users"],
                current=body["clientSecret"],
            )
    rotated = list(accounts.values())
    per_round = ACCOUNTS_ROTATED * ROTATIONS_PER_ACCOUNT + CREATE_THREADS * CREATES_PER_THREAD

    report = []
    for round_no, ((low, high), workers) in enumerate(ROUNDS):
        processes = 1 if workers == 1 else workers + 1  # the supervisor and its workers
        assert len(group_members(server.proc.pid)) >= processes, server.log_text()
        kill_after = int(per_round * rng.uniform(low, high))
        chains, creates, flood = flood_and_kill(server, user_token, rotated, round_no, kill_after)
        assert not flood.failures, (seed, flood.failures, server.log_text()[-3000:])
        assert flood.answered < per_round, "the kill came after the flood: nothing was in flight"
        # The same store, a new server (the next round's worker count; one for the last check).
        following = ROUNDS[round_no + 1][1] if round_no + 1 < len(ROUNDS) else 1
        (server,) = launch(env, extra=("--workers", str(following)))
        stats = check_after_restart(server, env, user_token, accounts, chains, creates)
        report.append(
            {
                "kill_after": kill_after,
                "workers": workers,
                "answered": flood.answered,
                "lost": flood.lost,
                "refused": flood.refused,
                **stats,
            }
        )
    print(f"seed={seed} rounds={report}")  # noqa: T201 (shown with -s / -rA)
