"""One SQLite file, many writing processes: two ``centrali serve`` (one with two workers) and
the admin CLI, writing at once for about ten seconds.

SQLite allows one writer at a time; the store takes the write lock up front (``BEGIN
IMMEDIATE``) and waits its turn (``busy_timeout``), so no client may ever see "database is
locked", a 500 or a 503: every create, rotation and record write succeeds, on either server,
and the end state adds up (listing totals, audit rows, last secrets, record contents).
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Launch, cli_inproc, run_cli
from tests.faults.harness import (
    ACCOUNTS,
    API,
    WORKSPACE,
    access_token,
    admin_token,
    audit_events,
    bearer,
    check_store_invariants,
    claims,
    fault_env,
    http_client,
    list_all_accounts,
    secret_works,
)

pytestmark = pytest.mark.e2e

DURATION = 10.0
ROTATORS = 3
ACCOUNTS_PER_ROTATOR = 2
CREATORS = 2
RECORD_WRITERS = 2


@dataclass
class Tally:
    """What every thread did and saw; failures are anything but the expected answer."""

    failures: list[str] = field(default_factory=list)
    ops: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expect(self, what: str, r: httpx.Response, status: int) -> bool:
        with self.lock:
            self.ops[what] += 1
        if r.status_code == status:
            return True
        self.failures.append(f"{what}: {r.status_code} {r.text[:300]}")
        return False


def run_until(step: Callable[[int], None], deadline: float, tally: Tally) -> Callable[[], None]:
    """A thread body: ``step(0)``, ``step(1)``, ... until ``deadline`` (or too many failures)."""

    def run() -> None:
        i = 0
        while time.monotonic() < deadline and len(tally.failures) < 20:
            try:
                step(i)
            except Exception as exc:  # a timeout or a dropped connection is a failure too
                tally.failures.append(f"{step.__name__}: {exc!r}")
            i += 1

    return run


# The admin CLI as a third writing process: our click commands, invoked over and over in one
# interpreter (a new interpreter per command would spend the whole window importing).
CLI_LOOP = r"""
import sys, time
from click.testing import CliRunner
from centrali.cli import cli

workspace = sys.argv[1]
runner = CliRunner()
runner.invoke(cli, ["group", "list", "--workspace", workspace])  # import everything first
print("ready", flush=True)
deadline = time.monotonic() + float(sys.stdin.readline())
i = 0
while time.monotonic() < deadline:
    if i % 2 == 0:
        name = f"cli-group-{i}"
        args = ["group", "create", name, "--workspace", workspace, "--permission", "records:read"]
    else:
        name = f"cli-user-{i}"
        email = f"{name}@acme-corp.test"
        args = ["user", "create", email, "--workspace", workspace, "--group", f"cli-group-{i - 1}"]
    result = runner.invoke(cli, args)
    ok = result.exit_code == 0 and result.exception is None
    detail = (result.output + repr(result.exception or "")).replace("\n", " ")[:300]
    print("ok" if ok else "fail", name, detail, flush=True)
    i += 1
"""


@contextmanager
def admin_cli_loop(env: dict[str, str], seconds: float, log: Path) -> Iterator[list[str]]:
    """Start the CLI loop, wait until it is ready, let it write for ``seconds``; the lines it
    printed ("ok NAME ..." / "fail NAME ...") are complete once the block is left."""
    lines: list[str] = []
    ready = threading.Event()
    with log.open("w") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI_LOOP, WORKSPACE],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    assert proc.stdin is not None and proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:
        for line in stdout:
            if line.strip() == "ready":
                ready.set()
            elif line.strip():
                lines.append(line.strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.wait(0.2):
            assert proc.poll() is None, f"the CLI loop died: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the CLI loop did not start in 60 s"
        proc.stdin.write(f"{seconds}\n")
        proc.stdin.flush()
        yield lines
        proc.wait(seconds + 30)
        reader.join(10)
        assert proc.returncode == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdin.close()
        stdout.close()


def test_two_servers_and_the_cli_write_one_sqlite_file(launch: Launch, tmp_path: Path) -> None:
    env = fault_env(tmp_path / "data")
    user_token = admin_token(env)
    # Three server processes (a supervisor's two workers, and a single-process server).
    servers = launch(env, extra=("--workers", "2")) + launch(env)
    clients = [http_client(s) for s in servers]
    try:
        run(env, clients, user_token, tmp_path)
    finally:
        for client in clients:
            client.close()
    for server in servers:
        assert "database is locked" not in server.log_text()


def run(env: dict[str, str], clients: list[httpx.Client], user_token: str, log_dir: Path) -> None:
    admin = bearer(user_token)
    a = clients[0]
    structure = {
        "slug": "products",
        "name": "Products",
        "fields": [
            {"name": "name", "type": "string", "required": True},
            {"name": "price", "type": "number", "required": True},
        ],
    }
    assert a.post(f"{API}/structures", headers=admin, json=structure).status_code == 201
    rotated: list[dict[str, Any]] = []
    for i in range(ROTATORS * ACCOUNTS_PER_ROTATOR):
        r = a.post(ACCOUNTS, headers=admin, json={"name": f"rotated-{i}"})
        assert r.status_code == 201, r.text
        rotated.append({**r.json(), "secrets": [r.json()["clientSecret"]]})
    r = a.post(ACCOUNTS, headers=admin, json={"name": "record writer"})
    assert r.status_code == 201, r.text
    writer_token = bearer(access_token(a, r.json()["clientId"], r.json()["clientSecret"]))

    tally = Tally()
    created: list[dict[str, Any]] = []
    records: dict[int, dict[str, Any] | None] = {}  # id -> last data, None once deleted
    cli_groups: list[str] = []
    cli_users: list[str] = []
    steps: list[Callable[[int], None]] = []

    def on(i: int) -> httpx.Client:
        return clients[i % 2]  # every thread alternates between the two servers

    for t in range(ROTATORS):
        mine = rotated[t * ACCOUNTS_PER_ROTATOR : (t + 1) * ACCOUNTS_PER_ROTATOR]

        def rotate(i: int, mine: list[dict[str, Any]] = mine) -> None:
            account = mine[i % len(mine)]
            server = i // len(mine)  # each account is rotated on both servers in turn
            r = on(server).post(f"{ACCOUNTS}/{account['id']}/rotate", headers=admin)
            if tally.expect("rotate", r, 200):
                account["secrets"].append(r.json()["clientSecret"])
                if i % 3 == 0:  # the other server takes the new secret and refuses the old
                    other = on(server + 1)
                    ok = secret_works(other, account["clientId"], account["secrets"][-1])
                    old = secret_works(other, account["clientId"], account["secrets"][-2])
                    if not ok or old:
                        tally.failures.append(f"rotation of {account['id']} not seen at once")

        steps.append(rotate)

    for t in range(CREATORS):

        def create(i: int, t: int = t) -> None:
            body: dict[str, Any] = {"name": f"created-{t}-{i}"}
            if i % 2:
                body["groups"] = ["developers"]
            r = on(i).post(ACCOUNTS, headers=admin, json=body)
            if tally.expect("create", r, 201):
                created.append({**r.json(), "expected_groups": body.get("groups", ["api-users"])})

        steps.append(create)

    for t in range(RECORD_WRITERS):
        rng = random.Random(t)

        def write_records(i: int, t: int = t, rng: random.Random = rng) -> None:
            data = {"name": f"item-{t}-{i}", "price": float(i)}
            r = on(i).post(
                f"{API}/records",
                headers=writer_token,
                json={"recordSlug": "products", "data": data},
            )
            if not tally.expect("record_create", r, 201):
                return
            record_id = r.json()["id"]
            records[record_id] = data
            data = {"name": f"item-{t}-{i}-v2", "price": float(i) + 0.5}
            r = on(i + 1).put(
                f"{API}/records/{record_id}", headers=writer_token, json={"data": data}
            )
            if tally.expect("record_update", r, 200):
                records[record_id] = data
            if rng.random() < 0.3:
                r = on(i).delete(f"{API}/records/{record_id}", headers=writer_token)
                if tally.expect("record_delete", r, 204):
                    records[record_id] = None

        steps.append(write_records)

    with admin_cli_loop(env, DURATION, log_dir / "cli-loop.log") as cli_loop:
        deadline = time.monotonic() + DURATION
        threads = [
            threading.Thread(target=run_until(step, deadline, tally), daemon=True) for step in steps
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DURATION + 45)
        assert not any(t.is_alive() for t in threads), "a writer hung"
    for line in cli_loop:
        status, name, detail = (line.split(" ", 2) + [""])[:3]
        tally.ops["cli_" + name.rsplit("-", 1)[0].removeprefix("cli-")] += 1
        if status != "ok":
            tally.failures.append(f"centrali ... {name}: {detail}")
        elif name.startswith("cli-group-"):
            cli_groups.append(name)
        else:
            cli_users.append(name)
    assert not tally.failures, (len(tally.failures), tally.failures[:5])
    print(f"ops={dict(tally.ops)}")  # noqa: T201 (shown with -s / -rA)
    assert tally.ops["cli_group"] and tally.ops["cli_user"], tally.ops
    assert tally.ops["rotate"] and tally.ops["create"] and tally.ops["record_create"]

    # The end state, seen alike through both servers.
    events = audit_events(env)
    actions = Counter(e["action"] for e in events)
    assert actions["service_account.created"] == len(rotated) + 1 + len(created), actions
    assert actions["service_account.rotated"] == tally.ops["rotate"], actions
    for http in clients:
        listed, total = list_all_accounts(http, user_token)
        assert total == len(listed) == len(rotated) + 1 + len(created), (total, len(listed))
        by_id = {item["id"]: item for item in listed}
        for account in created:
            item = by_id[account["id"]]
            assert item["clientId"] == account["clientId"] and item["name"] == account["name"]
            assert item["groups"] == account["expected_groups"], item
    a, b = clients
    for account in rotated:
        *old, last = account["secrets"]
        assert secret_works(b, account["clientId"], last), account["id"]
        assert not any(secret_works(a, account["clientId"], s) for s in old[-3:]), account["id"]
    for account in created[:: max(1, len(created) // 10)]:
        assert secret_works(b, account["clientId"], account["clientSecret"]), account["id"]

    live = {rid: data for rid, data in records.items() if data is not None}
    seen: dict[int, Any] = {}
    for page in range(1, 1000):
        r = b.get(
            f"{API}/records",
            params={"recordSlug": "products", "page": page, "limit": 100},
            headers=writer_token,
        )
        assert r.status_code == 200, r.text
        if not r.json()["data"]:
            assert r.json()["total"] == len(live), (r.json()["total"], len(live))
            break
        seen.update({item["id"]: item["data"] for item in r.json()["data"]})
    assert seen == live

    assert check_store_invariants(env) == len(rotated) + 1 + len(created)

    out = run_cli(env, "group", "list", "--workspace", WORKSPACE)
    assert out.returncode == 0, out.stderr
    listed_groups = {line.split("\t")[0] for line in out.stdout.splitlines()}
    assert set(cli_groups) <= listed_groups, set(cli_groups) - listed_groups
    # The CLI's last user is whole: a member, in the group it was created with.
    user = cli_users[-1]
    token = cli_inproc(env, "user", "token", f"{user}@acme-corp.test", "--workspace", WORKSPACE)
    group = f"cli-group-{int(user.rsplit('-', 1)[1]) - 1}"
    assert claims(token.strip())["groups"] == [group], claims(token.strip())
