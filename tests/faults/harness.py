"""Shared pieces of the fault tests: stores, servers, private PostgreSQL and Redis, API calls.

Everything here has a deadline: HTTP calls carry timeouts, subprocesses a ``timeout``, loops a
wall-clock limit, so a fault that makes the server hang fails a test instead of hanging it.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import (
    Server,
    ServerExited,
    _spawn,
    base_env,
    cli_inproc,
    free_port,
    stop,
    wait_ready,
)

WORKSPACE = "acme-corp"
ADMIN = "admin@acme-corp.test"
API = f"/workspace/{WORKSPACE}/api/v1"
ACCOUNTS = f"{API}/service-accounts"
ISSUER = "https://auth.centrali.localhost"
# Every field of an account as GET shows it; a half-written row would miss or null one.
ACCOUNT_FIELDS = {
    "id",
    "clientId",
    "name",
    "description",
    "workspace",
    "grant_types",
    "scope",
    "groups",
    "status",
    "createdAt",
    "createdBy",
    "updatedAt",
}
INVALID_CLIENT = {"error": "invalid_client", "error_description": "Invalid client credentials"}
# Per request: fail fast instead of hanging on a wedged server.
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


def fault_env(data_dir: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    """A server environment behind one fixed issuer (so tokens survive a restart on another
    port), with the token endpoint's abuse limits out of the way of the checks, which ask
    with many stale secrets from one address."""
    settings = {
        "CENTRALI_DATA_DIR": str(data_dir),
        "CENTRALI_ISSUER": ISSUER,
        # TLS would end at a proxy on this host (serve refuses an https:// issuer without).
        "CENTRALI_FORWARDED_ALLOW_IPS": "127.0.0.1",
        "CENTRALI_TOKEN_FAILURES_PER_IP": "0",
        "CENTRALI_TOKEN_FAILURES_PER_CLIENT_IP": "0",
        "CENTRALI_LOG_LEVEL": "warning",
    }
    if database_url:
        settings["CENTRALI_DATABASE_URL"] = database_url
    settings.update(extra)
    return base_env(**settings)


def admin_token(env: Mapping[str, str]) -> str:
    """The workspace, its admin, and the admin's user token, through our CLI."""
    cli_inproc(env, "bootstrap", "--workspace", WORKSPACE, "--admin", ADMIN)
    return cli_inproc(env, "user", "token", ADMIN, "--workspace", WORKSPACE).strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def http_client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, trust_env=False, timeout=HTTP_TIMEOUT)


def token_response(http: httpx.Client, client_id: str, secret: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": "openid",
    }
    return http.post("/oidc/token", data=form)


def secret_works(http: httpx.Client, client_id: str, secret: str) -> bool:
    """True on 200, False on 401 invalid_client; anything else fails the test."""
    r = token_response(http, client_id, secret)
    if r.status_code == 200:
        return True
    assert r.status_code == 401 and r.json() == INVALID_CLIENT, (r.status_code, r.text)
    return False


def access_token(http: httpx.Client, client_id: str, secret: str) -> str:
    r = token_response(http, client_id, secret)
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def claims(token: str) -> dict[str, Any]:
    """The token's payload, unverified (the server under test has verified it)."""
    import jwt

    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def list_all_accounts(http: httpx.Client, user_token: str) -> tuple[list[dict[str, Any]], int]:
    """Every page of the listing, and the ``total`` the first page claims."""
    items: list[dict[str, Any]] = []
    total = None
    for page in range(1, 1000):
        r = http.get(ACCOUNTS, params={"page": page, "limit": 100}, headers=bearer(user_token))
        assert r.status_code == 200, r.text
        body = r.json()
        total = body["total"] if total is None else total
        assert body["total"] == total, "the total moved while nothing was writing"
        if not body["data"]:
            break
        items.extend(body["data"])
    assert total is not None
    return items, total


def audit_events(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """The workspace's whole audit log, read with our CLI straight from the store."""
    events: list[dict[str, Any]] = []
    for page in range(1, 1000):
        out = cli_inproc(
            env, "audit", "list", "--workspace", WORKSPACE, "--page", str(page), "--limit", "100"
        )
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        if not lines:
            break
        events.extend(lines)
    return events


def store_url(env: Mapping[str, str]) -> str:
    """The database the servers of ``env`` use."""
    if env.get("CENTRALI_DATABASE_URL"):
        return env["CENTRALI_DATABASE_URL"]
    return f"sqlite:///{(Path(env['CENTRALI_DATA_DIR']) / 'centrali.db').resolve()}"


def check_store_invariants(env: Mapping[str, str]) -> int:
    """Straight from the store, for every account (also those whose secret no client knows):
    the token endpoint's copy of the groups equals the association rows, a live account has
    a secret hash, and each workspace's account count equals its live accounts. Returns how
    many account rows there are."""
    from sqlalchemy import select

    from centrali.store.db import Database
    from centrali.store.tables import (
        Group,
        ServiceAccount,
        ServiceAccountGroup,
        ServiceAccountSecret,
        Workspace,
    )

    db = Database(store_url(env))
    try:
        with db.read() as session:
            sa = ServiceAccount
            accounts = session.execute(
                select(sa.id, sa.workspace_id, sa.status, sa.secrets, sa.group_names)
            ).all()
            secret_rows = session.execute(
                select(ServiceAccountSecret.service_account_id, ServiceAccountSecret.id)
            ).all()
            links = session.execute(
                select(ServiceAccountGroup.service_account_id, Group.name).join(
                    Group, Group.id == ServiceAccountGroup.group_id
                )
            ).all()
            counts = session.execute(select(Workspace.id, Workspace.service_account_count)).all()
    finally:
        db.dispose()
    linked: dict[int, list[str]] = {}
    for account_id, name in links:
        linked.setdefault(account_id, []).append(name)
    live: dict[int, int] = {}
    held: dict[int, set[int]] = {}
    for account_id, secret_id in secret_rows:
        held.setdefault(account_id, set()).add(secret_id)
    for account_id, workspace_id, status, copy, group_names in accounts:
        names = json.loads(group_names) if isinstance(group_names, str) else group_names
        assert sorted(names or []) == sorted(linked.get(account_id, [])), (
            f"account {account_id}: group_names {names}, groups {linked.get(account_id)}"
        )
        copy = json.loads(copy) if isinstance(copy, str) else copy
        copied = {entry[0] for entry in copy or [] if entry[0]}
        # The token endpoint's copy names exactly the account's secrets (none expire here).
        assert copied == held.get(account_id, set()), (account_id, copied, held.get(account_id))
        if status != "deleted":
            assert copied, f"live account {account_id} without a secret"
            live[workspace_id] = live.get(workspace_id, 0) + 1
    for workspace_id, count in counts:
        assert count == live.get(workspace_id, 0), (workspace_id, count, live.get(workspace_id))
    return len(accounts)


def kill_server(server: Server, members: list[int] | None = None) -> list[int]:
    """SIGKILL to the server's whole process group (supervisor and every worker) at once;
    returns the pids that were in it (``members``, if listed beforehand to lose no time),
    all gone (or zombies) when this returns."""
    if members is None:
        members = group_members(server.proc.pid)
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in members):
        time.sleep(0.05)
    assert not [pid for pid in members if _alive(pid)], "a worker outlived SIGKILL"
    return members


def group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` (Linux /proc)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 3 and int(fields[2]) == pgid:
            found.append(int(Path(stat).parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


# --- a private PostgreSQL cluster, to stop and start at will --------------------------------


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or the one on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    return None


@dataclass
class PrivatePostgres:
    """A throwaway cluster in its own directory and port. PostgreSQL refuses to run as root,
    so under root (CI) every command runs as the ``postgres`` OS user."""

    bindir: Path
    root: Path
    port: int
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        argv = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert result.returncode == 0, f"{tool} {args}: {result.stdout}\n{result.stderr}"

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.root / "data"), "-U", "postgres", "--auth=trust", "-N",
            "-E", "UTF8", "--locale=C",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.root / "data"), "-o", options, "-l", str(self.log),
            "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "-t", "30", "stop")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Start a private cluster; yield it; stop it and remove it, whatever happened."""
    import pytest

    bindir = postgres_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
    # Not under pytest's tmp_path: that is private to root, and the cluster runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="centrali-faults-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root and there is no postgres OS user")
        os.chown(root, pg_user.pw_uid, pg_user.pw_gid)
    cluster = PrivatePostgres(bindir=bindir, root=root, port=free_port())
    try:
        cluster.init()
        for attempt in range(3):
            try:
                cluster.start()
                break
            except AssertionError:
                # Lost the race for the free port: another one.
                if attempt == 2:
                    raise
                cluster.port = free_port()
        yield cluster
    finally:
        if (root / "data" / "postmaster.pid").exists():
            try:
                cluster.stop("immediate")
            except (AssertionError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(root, ignore_errors=True)


# --- a private Redis --------------------------------------------------------------------------


@contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on a free port; yields its URL."""
    import pytest
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    log = (workdir / "redis.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    log_text = (workdir / "redis.log").read_text()
                    pytest.fail(f"redis-server did not start: {log_text}")
                time.sleep(0.05)
            finally:
                client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def redis_commands(url: str) -> int:
    """How many commands the Redis at ``url`` has processed so far (including this one)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


@contextmanager
def serving(env: Mapping[str, str], log: Path, extra: tuple[str, ...] = ()) -> Iterator[Server]:
    """One ``centrali serve`` outside the function-scoped ``launch`` fixture (for a scenario
    shared by several tests); stopped, with its workers, on the way out."""
    import pytest

    for _ in range(3):
        server = _spawn(env, log, free_port(), extra)
        try:
            wait_ready(server, 60.0)
        except ServerExited as exc:
            stop(server)
            if "address already in use" in server.log_text().lower():
                continue  # lost the race for the free port
            pytest.fail(f"{exc}:\n{server.log_text()}")
        except BaseException:
            stop(server)
            raise
        try:
            yield server
        finally:
            stop(server)
        return
    pytest.fail("centrali serve found no free port in 3 attempts")


# --- a flood of requests, killed midway -------------------------------------------------------


class Stopped(Exception):
    """This thread sends no more: the server is gone, or an answer was wrong (recorded)."""


class Lost(Stopped):
    """The request was sent and its answer never came: it may or may not have committed."""


@dataclass
class Flood:
    """The round's shared bookkeeping: answers so far, and anything unexpected."""

    answered: int = 0
    lost: int = 0  # sent, but the answer never came
    refused: int = 0  # never reached a server (connection refused after the kill)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    progress: threading.Condition = field(init=False)
    go: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.progress = threading.Condition(self.lock)

    def count(self, outcome: str) -> None:
        with self.progress:
            setattr(self, outcome, getattr(self, outcome) + 1)
            self.progress.notify_all()

    def send(
        self, http: httpx.Client, request: httpx.Request, expected: int, what: str
    ) -> httpx.Response:
        """The answer to ``request``, counted, when its status is ``expected``; else Stopped
        (never sent: counted as refused; another status: recorded as a failure) or Lost
        (sent, its answer never came: counted as lost)."""
        try:
            r = http.send(request)
        except httpx.ConnectError:  # the server is gone; this one was never sent
            self.count("refused")
            raise Stopped() from None
        except httpx.TransportError:
            self.count("lost")
            raise Lost() from None
        if r.status_code != expected:
            self.failures.append(f"{what}: {r.status_code} {r.text}")
            raise Stopped()
        self.count("answered")
        return r
