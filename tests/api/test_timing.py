"""Timing: a token request with an unknown client_id costs the same as one with a known
client_id and a wrong secret, so the answer's timing does not tell whether a client exists
(README "Design choices": every failure costs the same work).

The layer measured is the lookup (the real ``SqlClientStore`` on the test database) and the
secret method's ``verify``: the work that differs between the failures is exactly there (the
indexed lookup, a hit or a miss, and the hash compared with the stored hashes, one or five,
or with dummies), while the ASGI dispatcher, the middleware and the form parser in front
of it do the same thing for both and would only dilute it: a request through the ASGI app
costs ~180 µs here against ~20 µs for the lookup and the hash on SQLite, so a difference of
several microseconds would hide inside a 10 % tolerance (at that layer today's difference
measures 2-3 %).

A SHA-256 of the secret is ~1.5 µs, a few percent of even the SQLite lookup, so whether a
skipped hash shows against the store's cost depends on what else differs between a hit and a
miss (today it does: 12-22 %, from a residual 7-8 %). The second test therefore measures the
same failures with an in-memory store of constant cost, where the hash and the compares are
most of the work: a skipped hash there is a 60 % difference (checked by monkeypatching the
hash in a throwaway run), and so would be one comparison per stored secret instead of a fixed
number.

Robust on a loaded 2-core machine: warm-up first, garbage collector off while measuring, the two
cases interleaved in alternating order (AB, BA, ...) so drift hits both alike, the verdict from
the median of the per-pair differences, and up to three measurements before failing.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from centrali.config import Settings
from centrali.oauth.client_auth import METHODS, POST, ClientCredentials
from centrali.oauth.credentials import generate_client_secret, hash_secret
from centrali.oauth.errors import InvalidClientError
from centrali.oauth.ports import ClientRecord, StoredSecret
from centrali.store.client_store import SqlClientStore
from tests.conftest import ISSUER
from tests.factories import Factory

TRIES = 2000  # of each case
WARM_UP = 200
ATTEMPTS = 3
TOLERANCE = 0.10
UNKNOWN_ID = "ci_zzzzzzzzzzzzzzzzzzzz"  # the shape of a real id, in no store


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """No abuse limits: thousands of failures from one address must not be throttled."""
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        issuer=ISSUER,
        token_failures_per_ip=0,
        token_failures_per_client_ip=0,
    )


def _refused(call: Callable[[], object]) -> Callable[[], int]:
    """``call`` as a timed probe: nanoseconds until it raised InvalidClientError."""

    def probe() -> int:
        start = time.perf_counter_ns()
        try:
            call()
        except InvalidClientError:
            return time.perf_counter_ns() - start
        raise AssertionError("the request was not refused as invalid_client")

    return probe


def _paired_medians(a: Callable[[], int], b: Callable[[], int]) -> tuple[float, float, float]:
    """Median of ``a``, of ``b``, and of the per-pair differences ``a - b``."""
    for _ in range(WARM_UP):
        a(), b()
    times_a: list[int] = []
    times_b: list[int] = []
    gc.collect()
    gc.disable()
    try:
        for i in range(TRIES):
            if i % 2:
                tb = b()
                ta = a()
            else:
                ta = a()
                tb = b()
            times_a.append(ta)
            times_b.append(tb)
    finally:
        gc.enable()
    differences = [x - y for x, y in zip(times_a, times_b, strict=True)]
    return statistics.median(times_a), statistics.median(times_b), statistics.median(differences)


def assert_same_cost(known: Callable[[], int], unknown: Callable[[], int]) -> None:
    verdicts = []
    for _ in range(ATTEMPTS):
        median_known, median_unknown, median_difference = _paired_medians(known, unknown)
        relative = abs(median_difference) / min(median_known, median_unknown)
        verdicts.append(
            f"known {median_known / 1000:.1f} µs, unknown {median_unknown / 1000:.1f} µs, "
            f"paired difference {median_difference / 1000:+.1f} µs ({relative:.0%})"
        )
        if relative <= TOLERANCE:
            return
    pytest.fail("failures cost different times: " + "; ".join(verdicts))


def _account_with_secrets(factory: Factory, extra: int) -> str:
    """A service account made over HTTP, with ``extra`` more secrets than the one it got."""
    account = factory.service_account(factory.admin())
    headers = {"Authorization": f"Bearer {factory.admin()}"}
    base = f"/workspace/{account['workspace']}/api/v1/service-accounts/{account['id']}"
    for _ in range(extra):
        r = factory.client.post(f"{base}/secrets", headers=headers, json={})
        assert r.status_code == 201, r.text
    return str(account["clientId"])


@pytest.fixture
def store(factory: Factory) -> Iterator[tuple[SqlClientStore, str, str]]:
    """The token endpoint's store on the test database, and two known client_ids in it: one
    with 1 secret, one with 5."""
    factory.workspace()
    one = _account_with_secrets(factory, 0)
    five = _account_with_secrets(factory, 4)
    clients = SqlClientStore(factory.db.autocommit_engine)
    yield clients, one, five
    clients.close()


def _lookup_and_verify(
    find: Callable[[str], ClientRecord | None], client_id: str, secret: str
) -> Callable[[], object]:
    """The work that differs between the failures: the lookup, then the secret check."""
    method = METHODS[POST]
    credentials = ClientCredentials(client_id, secret, POST)

    def call() -> object:
        # The secret method never suspends: run its coroutine to the end right here, with
        # no event loop in the measurement.
        step = method.verify(credentials, find(client_id), time.time())
        try:
            step.send(None)
        except StopIteration as done:
            return done.value
        finally:
            step.close()
        raise AssertionError("the secret check waited for something")

    return call


@pytest.mark.parametrize("secrets", ["one-secret", "five-secrets"])
def test_unknown_client_costs_the_same_as_a_wrong_secret(
    store: tuple[SqlClientStore, str, str], secrets: str
) -> None:
    clients, one, five = store
    client_id = one if secrets == "one-secret" else five
    wrong_secret = generate_client_secret()

    def find(cid: str) -> ClientRecord | None:
        return clients.find_clients([cid])[0]

    assert_same_cost(
        known=_refused(_lookup_and_verify(find, client_id, wrong_secret)),
        unknown=_refused(_lookup_and_verify(find, UNKNOWN_ID, wrong_secret)),
    )


def test_five_secrets_cost_the_same_as_one(store: tuple[SqlClientStore, str, str]) -> None:
    clients, one, five = store
    wrong_secret = generate_client_secret()

    def find(cid: str) -> ClientRecord | None:
        return clients.find_clients([cid])[0]

    assert_same_cost(
        known=_refused(_lookup_and_verify(find, five, wrong_secret)),
        unknown=_refused(_lookup_and_verify(find, one, wrong_secret)),
    )


def _record(client_id: str, secrets: int) -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        secrets=tuple(
            StoredSecret(i + 1, hash_secret(generate_client_secret())) for i in range(secrets)
        ),
        active=True,
        workspace="acme-corp",
        grant_types=("client_credentials",),
        scopes=("openid",),
        groups=("api-users",),
    )


@pytest.mark.parametrize(
    ("known_secrets", "other_secrets", "other_id"),
    [
        pytest.param(1, 0, UNKNOWN_ID, id="one-secret-vs-unknown"),
        pytest.param(5, 0, UNKNOWN_ID, id="five-secrets-vs-unknown"),
        pytest.param(5, 1, "ci_1111111111aaaaaaaaaa", id="five-secrets-vs-one"),
    ],
)
def test_secret_check_costs_the_same_whatever_the_client_holds(
    known_secrets: int, other_secrets: int, other_id: str
) -> None:
    """With a store of constant cost (one dict probe), the hash and the comparisons are most
    of the work: a skipped hash, or a comparison per stored secret, would show here."""
    known = _record("ci_0123456789abcdefghij", known_secrets)
    records = {known.client_id: known}
    if other_secrets:
        records[other_id] = _record(other_id, other_secrets)
    wrong_secret = generate_client_secret()
    assert_same_cost(
        known=_refused(_lookup_and_verify(records.get, known.client_id, wrong_secret)),
        unknown=_refused(_lookup_and_verify(records.get, other_id, wrong_secret)),
    )
