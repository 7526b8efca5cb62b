"""PostgreSQL stopped and started again under load, behind one running ``centrali serve``.

The cluster is a private one (initdb in a temporary directory, its own port), never the
machine's shared server. Client threads keep asking for tokens, reading and writing records
and calling the management API while the cluster is stopped twice (``pg_ctl stop -m fast``,
then ``-m immediate``, the crash-like one) and started again. One scenario, run once for this
module, and one test per promise:

- while the store is down every answer comes within a few seconds, as a 503 (never a 500,
  never a hang): the token endpoint's RFC 6749 ``temporarily_unavailable`` with
  ``Retry-After``, the workspace API's JSON error;
- once the store is back, the same server process serves everything again within 10 s.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.faults.harness import (
    ACCOUNTS,
    API,
    access_token,
    admin_token,
    bearer,
    fault_env,
    http_client,
    private_postgres,
    serving,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DOWN_SECONDS = 3.0
RECOVERY_LIMIT = 10.0  # seconds after the cluster is up again
ANSWER_LIMIT = 5.0  # no request may take longer, in any phase
SUCCESS = {"token": 200, "records_read": 200, "records_write": 201, "manage": 200}


@dataclass
class Sample:
    kind: str
    t0: float
    t1: float
    status: int | None
    body: Any = None
    retry_after: str | None = None
    error: str | None = None  # no HTTP answer: the transport error
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS[self.kind]

    def __repr__(self) -> str:
        took = self.t1 - self.t0
        return f"<{self.kind} {self.status or self.error} in {took:.2f}s: {self.body!r:.160}>"


@dataclass
class Cycle:
    mode: str
    stopping: float  # pg_ctl stop called
    down: float  # pg_ctl stop returned: the cluster is gone
    starting: float  # pg_ctl start called
    up: float  # pg_ctl start returned: the cluster accepts connections


@dataclass
class Outage:
    samples: list[Sample] = field(default_factory=list)
    cycles: list[Cycle] = field(default_factory=list)
    same_process: bool = False
    log: str = ""

    def down_samples(self, kinds: set[str]) -> list[Sample]:
        """Requests sent after the cluster was stopped and answered before it was restarted."""
        return [
            s
            for s in self.samples
            if s.kind in kinds and any(c.down <= s.t0 and s.t1 <= c.starting for c in self.cycles)
        ]


def _load(
    kind: str, request: Callable[[httpx.Client], httpx.Response], base_url: str, stop: Any
) -> Callable[[list[Sample]], None]:
    def run(samples: list[Sample]) -> None:
        # A generous client timeout: the test, not httpx, judges how long is too long.
        with httpx.Client(base_url=base_url, trust_env=False, timeout=15.0) as http:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = request(http)
                except httpx.HTTPError as exc:
                    timed_out = isinstance(exc, httpx.TimeoutException)
                    samples.append(
                        Sample(kind, t0, time.monotonic(), None, None, None, repr(exc), timed_out)
                    )
                else:
                    try:
                        body = r.json()
                    except ValueError:
                        body = r.text[:300]
                    samples.append(
                        Sample(
                            kind,
                            t0,
                            time.monotonic(),
                            r.status_code,
                            body,
                            r.headers.get("retry-after"),
                        )
                    )
                stop.wait(0.05)

    return run


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    workdir = tmp_path_factory.mktemp("pg-outage")
    with private_postgres() as cluster:
        env = fault_env(workdir / "data", cluster.url)
        user_token = admin_token(env)
        with serving(env, workdir / "serve.log") as server, http_client(server) as http:
            admin = bearer(user_token)
            structure = {
                "slug": "products",
                "name": "Products",
                "fields": [
                    {"name": "name", "type": "string", "required": True},
                    {"name": "price", "type": "number", "required": True},
                ],
            }
            r = http.post(f"{API}/structures", headers=admin, json=structure)
            assert r.status_code == 201, r.text
            r = http.post(ACCOUNTS, headers=admin, json={"name": "Outage Client"})
            assert r.status_code == 201, r.text
            account = r.json()
            client_id, secret = account["clientId"], account["clientSecret"]
            sa = bearer(access_token(http, client_id, secret))
            form = {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            }
            manage_calls = [0]

            def manage(h: httpx.Client) -> httpx.Response:
                manage_calls[0] += 1
                if manage_calls[0] % 2:
                    return h.get(ACCOUNTS, params={"limit": 5}, headers=admin)
                return h.put(
                    f"{ACCOUNTS}/{account['id']}/description",
                    headers=admin,
                    json={"description": f"call {manage_calls[0]}"},
                )

            requests: dict[str, Callable[[httpx.Client], httpx.Response]] = {
                "token": lambda h: h.post("/oidc/token", data=form),
                "records_read": lambda h: h.get(
                    f"{API}/records", params={"recordSlug": "products", "limit": 5}, headers=sa
                ),
                "records_write": lambda h: h.post(
                    f"{API}/records",
                    headers=sa,
                    json={"recordSlug": "products", "data": {"name": "Lamp", "price": 9.5}},
                ),
                "manage": manage,
            }
            result = Outage()
            stop = threading.Event()
            per_kind: dict[str, list[Sample]] = {kind: [] for kind in requests}
            threads = [
                threading.Thread(
                    target=_load(kind, call, server.base_url, stop),
                    args=(per_kind[kind],),
                    daemon=True,
                )
                for kind, call in requests.items()
            ]
            pid = server.proc.pid
            for thread in threads:
                thread.start()
            try:
                time.sleep(1.5)  # all well before the first stop
                for mode in ("fast", "immediate"):
                    stopping = time.monotonic()
                    cluster.stop(mode)
                    down = time.monotonic()
                    time.sleep(DOWN_SECONDS)
                    starting = time.monotonic()
                    cluster.start()
                    up = time.monotonic()
                    result.cycles.append(Cycle(mode, stopping, down, starting, up))
                    # Until every kind has answered three times in a row, or the limit is gone.
                    while time.monotonic() < up + RECOVERY_LIMIT + 2:
                        tails = [
                            [s for s in samples if s.t0 >= up][-3:] for samples in per_kind.values()
                        ]
                        if all(len(t) == 3 and all(s.ok for s in t) for t in tails):
                            break
                        time.sleep(0.1)
                    time.sleep(1.0)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(20)
            assert not any(t.is_alive() for t in threads), "a load thread hung"
            result.samples = sorted((s for v in per_kind.values() for s in v), key=lambda s: s.t0)
            result.same_process = server.proc.poll() is None and server.proc.pid == pid
            result.log = server.log_text()
            yield result


def test_no_request_hangs_while_postgres_goes_down_and_up(outage: Outage) -> None:
    assert len(outage.samples) > 100, len(outage.samples)
    hung = [s for s in outage.samples if s.timed_out]
    assert not hung, hung[:5]
    slow = [s for s in outage.samples if s.t1 - s.t0 > ANSWER_LIMIT]
    assert not slow, slow[:5]


def test_token_endpoint_answers_503_temporarily_unavailable_while_down(outage: Outage) -> None:
    down = outage.down_samples({"token"})
    assert len(down) >= 5, "too few token requests while the store was down"
    for sample in down:
        assert sample.status == 503, sample
        assert sample.body["error"] == "temporarily_unavailable", sample
        assert sample.body.get("error_description"), sample
        assert sample.retry_after is not None and sample.retry_after.isdigit(), sample
    tokens = [s for s in outage.samples if s.kind == "token"]
    # Never a 500, never a dropped connection, before, during or after the outage.
    assert {s.status for s in tokens} <= {200, 503}, [s for s in tokens if s.status != 200][:5]


def test_workspace_api_answers_503_while_down(outage: Outage) -> None:
    kinds = {"records_read", "records_write", "manage"}
    down = outage.down_samples(kinds)
    assert {s.kind for s in down} == kinds, "too few API requests while the store was down"
    wrong = [
        s
        for s in down
        if s.status != 503 or not isinstance(s.body, dict) or not s.body.get("error")
    ]
    assert not wrong, f"{len(wrong)} of {len(down)} wrong, e.g. {wrong[:3]}"
    api = [s for s in outage.samples if s.kind in kinds]
    assert not [s for s in api if s.status == 500], "a 500 around the outage"
    # A 500 (an exception escaping the app) also makes uvicorn close the connection, which
    # can reset the client's next request on it: no answer at all is as wrong.
    assert not [s for s in api if s.status is None], "a dropped connection around the outage"


def test_server_recovers_by_itself_within_10_s(outage: Outage) -> None:
    assert outage.same_process, "the server process died or was replaced"
    ends = [c.stopping for c in outage.cycles[1:]] + [float("inf")]
    report = []
    for cycle, end in zip(outage.cycles, ends, strict=True):
        # Up to the next stop: a request still in flight when that began belongs to it.
        after_up = [s for s in outage.samples if cycle.up <= s.t0 and s.t1 < end]
        for kind in SUCCESS:
            mine = [s for s in after_up if s.kind == kind]
            first = next((i for i, s in enumerate(mine) if s.ok), None)
            assert first is not None, (cycle.mode, kind, mine[-5:], outage.log[-2000:])
            assert mine[first].t0 - cycle.up <= RECOVERY_LIMIT, (cycle.mode, kind, mine[:5])
            # From its first success on, a kind does not fall back (the store stays up).
            relapses = [s for s in mine[first:] if not s.ok]
            assert not relapses, (cycle.mode, kind, mine[first], relapses[:5])
            report.append(f"{cycle.mode}/{kind}: {mine[first].t0 - cycle.up:.2f}s")
    down = outage.down_samples(set(SUCCESS))
    print(  # noqa: T201 (shown with -s / -rA)
        f"requests={len(outage.samples)} while_down={len(down)} "
        f"statuses={dict(Counter(s.status for s in outage.samples))} recovered_after={report}"
    )
