"""Timing: a token request with an unknown client_id costs the same as one with a known
client_id and a wrong secret, so the answer's timing does not tell whether a client exists
(README "Design choices": every failure costs the same work).

The layer measured is ``prepare_token_request`` + ``complete_token_request`` with the real
``SqlClientStore`` on the test database: the work that differs between the two failures is
exactly there (the indexed lookup, a hit or a miss, and the hash compare, against the stored
hash or the dummy one), while the ASGI dispatcher, the middleware and the form parser in front
of it do the same thing for both and would only dilute it: a request through the ASGI app
costs ~180 µs here against ~20 µs for the lookup and the hash on SQLite, so a difference of
several microseconds would hide inside a 10 % tolerance (at that layer today's difference
measures 2-3 %).

A SHA-256 of the secret is ~1.5 µs, a few percent of even the SQLite lookup, so whether a
skipped hash shows against the store's cost depends on what else differs between a hit and a
miss (today it does: 12-22 %, from a residual 7-8 %). The second test therefore measures the
same two failures through ``authenticate_client`` with an in-memory store of constant cost, where
the hash and the compare are most of the work: a skipped hash there is a 60 % difference (both
checked by monkeypatching ``verify_secret`` in a throwaway run).

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
from typing import Any, cast

import pytest

from centrali.config import Settings
from centrali.oauth.client_auth import ClientCredentials, authenticate_client
from centrali.oauth.credentials import generate_client_secret, hash_secret
from centrali.oauth.errors import InvalidClientError
from centrali.oauth.ports import ClientRecord
from centrali.oauth.token_endpoint import (
    TokenRequest,
    complete_token_request,
    prepare_token_request,
)
from centrali.store.client_store import SqlClientStore
from centrali.web.runtime import SystemClock
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


@pytest.fixture
def store(factory: Factory) -> Iterator[tuple[SqlClientStore, str]]:
    """The token endpoint's store on the test database, and a known client_id in it."""
    factory.workspace()
    account = factory.service_account(factory.admin())
    clients = SqlClientStore(factory.db.autocommit_engine)
    yield clients, account["clientId"]
    clients.close()


def test_unknown_client_costs_the_same_as_a_wrong_secret(
    store: tuple[SqlClientStore, str], factory: Factory
) -> None:
    clients, client_id = store
    runtime = cast(Any, factory.client.app).app.state.runtime  # the endpoint's issuer config
    clock = SystemClock()
    wrong_secret = generate_client_secret()

    def request(cid: str) -> Callable[[], object]:
        form = {
            "grant_type": "client_credentials",
            "client_id": cid,
            "client_secret": wrong_secret,
        }
        token_request = TokenRequest(form=form)
        return lambda: complete_token_request(
            prepare_token_request(token_request),
            clients=clients,
            config=runtime.issuer_config,
            clock=clock,
        )

    assert_same_cost(known=_refused(request(client_id)), unknown=_refused(request(UNKNOWN_ID)))


class _ConstantCostStore:
    """A ``ClientStore`` whose hit and miss cost the same: one dict probe."""

    def __init__(self, record: ClientRecord) -> None:
        self._records = {record.client_id: record}

    def find_client(self, client_id: str) -> ClientRecord | None:
        return self._records.get(client_id)


def test_unknown_client_is_hashed_and_compared_like_a_wrong_secret() -> None:
    known = ClientRecord(
        client_id="ci_0123456789abcdefghij",
        secret_hash=hash_secret(generate_client_secret()),
        active=True,
        workspace="acme-corp",
        grant_types=("client_credentials",),
        scopes=("openid",),
        groups=("api-users",),
    )
    clients = _ConstantCostStore(known)
    wrong_secret = generate_client_secret()

    def attempt(cid: str) -> Callable[[], object]:
        creds = ClientCredentials(cid, wrong_secret, "client_secret_post")
        return lambda: authenticate_client(creds, clients)

    assert_same_cost(
        known=_refused(attempt(known.client_id)), unknown=_refused(attempt(UNKNOWN_ID))
    )
