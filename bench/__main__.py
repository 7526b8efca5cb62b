"""Token-endpoint and workspace-API load benchmark, side by side with node-oidc-provider.

    python -m bench                       # SQLite and PostgreSQL, 16 and 64 connections, 20 s
    python -m bench --stores sqlite --duration 10 --connections 64
    python -m bench --peer                # also node-oidc-provider (2 cluster workers)
    python -m bench --api                 # also GET /records/{id} with a service-account token
    python -m bench --scale 1000000       # PostgreSQL with 1,000,000 accounts: tokens/s, paging
    python -m bench --peer --api --connections 64 --rounds 5
                                          # 5 back-to-back pairs (ours, then the peer's, then
                                          # GET /records/{id}): medians of the per-pair ratios
    python -m bench --peer --ceiling      # also the stack's ceiling (bench/ceiling.py)

--rounds N measures every connection count N times. With --peer the peer is started once and
kept running; each round runs our token load and then, at once, the peer's, and the summary
after the table gives the N ratios (ours / peer's) and their median, per store and connection
count; with --api each round also runs GET /records/{id} right after the pair, summarised as
the median of records req/s / our token req/s of the same round. Single runs on a shared
machine swing by ±15 %: compare medians of pairs, not single runs.

--ceiling also measures, in each round right after the peer, a bare ASGI app on uvicorn
(bench/ceiling.py: served as ours is, the same workers, no access log)
that only reads the form and signs an RS256 JWT of our claims: no lookup, no checks. No
token endpoint on this stack answers more; the summary gives ceiling / peer (the most any
server on this stack could reach against the peer) and ours / ceiling (the share of it our
checks leave).

When openssl is on PATH, `openssl speed -multi <cores> -seconds 5 rsa2048` runs first: the
machine's RSA-2048 signing rate, the ceiling of an RS256 token endpoint; the summary gives our
median token rate as a share of it (RS256 runs without --reuse only).

The server runs with its access log on (--log-level info, as in production), written to a
temporary file; after each store the summary counts the file's POST /oidc/token lines against
the requests wrk counted (the pre-flight checks, warm-ups and requests in flight when wrk
stops are logged but not counted, so the log should hold at least as many).

Each store gets a fresh `centrali serve --workers N` (SQLite under a temporary data
directory; PostgreSQL in a private schema of CENTRALI_BENCH_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/test, dropped afterwards). The workspace and the
service accounts are made through the public CLI and API; the load comes from wrk
(bench/token_load.sh, which first checks that the answer is an RS256 JWT verified against
the JWKS). The 1,000,000 extra accounts of --scale are bulk-inserted with SQL (through the
API that would take hours); the measured account is still one made through the API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# A script that serves node-oidc-provider as a client-credentials peer (PORT, WORKERS,
# CLIENT_ID, CLIENT_SECRET in its environment); not part of this repository.
PEER_RUN = Path(
    os.environ.get(
        "CENTRALI_BENCH_PEER_RUN",
        ROOT.parent / "shared" / "bench" / "peer-oidc-provider" / "run.sh",
    )
)
CENTRALI = Path(sys.executable).parent / "centrali"
PG_URL = os.environ.get("CENTRALI_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    log("wrk not found: installing it from Debian's packages")
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    log_path: Path
    rss_samples: dict[int, int] = field(default_factory=dict)
    # lines of the server's log that are access lines for POST /oidc/token, counted once
    # the server has stopped (and the log file is gone)
    token_log_lines: int | None = None

    def worker_pids(self) -> list[int]:
        """The serving processes: the workers when there are any, else the server itself."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        children = [int(p) for p in out]
        # uvicorn's multiprocess mode also spawns a resource tracker; keep the python workers.
        workers = [p for p in children if "resource_tracker" not in _cmdline(p)]
        return workers or [self.process.pid]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(CENTRALI), *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"centrali {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


@contextlib.contextmanager
def store(kind: str) -> Iterator[dict[str, str]]:
    """Environment for a fresh store of this kind."""
    data_dir = Path(tempfile.mkdtemp(prefix="centrali-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CENTRALI_")}
    env["CENTRALI_DATA_DIR"] = str(data_dir)
    schema = None
    if kind == "postgres":
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in PG_URL else "?"
        env["CENTRALI_DATABASE_URL"] = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        yield env
    finally:
        if schema:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def serve(
    env: dict[str, str], workers: int, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """``centrali serve`` with its access log on (--log-level info, as in production), its
    stdout and stderr in a temporary file; on exit the file's POST /oidc/token lines are
    counted into ``token_log_lines`` and the file is deleted."""
    port = free_port()
    env = {**env, **(extra_env or {})}
    log_dir = Path(tempfile.mkdtemp(prefix="centrali-bench-log-"))
    log_path = log_dir / "serve.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [
            str(CENTRALI),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "info",
        ],
        env=env,
        stdout=log_file,
        stderr=log_file,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    server = Server(process, url, env, log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if (
                    httpx.get(f"{url}/.well-known/openid-configuration", timeout=2).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"centrali serve did not start: {_tail(log_path)}")
            time.sleep(0.3)
        # every worker answers discovery before the load starts
        for _ in range(workers * 4):
            httpx.get(f"{url}/.well-known/openid-configuration", timeout=5)
        yield server
    finally:
        stop_group(process)
        log_file.close()
        server.token_log_lines = count_token_lines(log_path)
        shutil.rmtree(log_dir, ignore_errors=True)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to a server started in its own session (its workers too), SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_until_up(
    process: subprocess.Popen[bytes], url: str, timeout: float, why: Callable[[], str]
) -> None:
    """Until ``url`` answers; RuntimeError(why()) if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(why()) from None
            time.sleep(0.3)


def count_token_lines(path: Path) -> int:
    """Access lines for POST /oidc/token (JSON or text: both hold "POST /oidc/token")."""
    with path.open(encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if "POST /oidc/token" in line)


def _tail(path: Path, chars: int = 800) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


def rsa_sign_rate() -> tuple[int, float] | None:
    """(processes, RSA-2048 signatures per second) from ``openssl speed -multi <cores>``."""
    if not shutil.which("openssl"):
        log("openssl not on PATH: the machine's RSA-2048 signing rate is not measured")
        return None
    cores = os.cpu_count() or 1
    log(f"openssl speed -multi {cores} -seconds 5 rsa2048 (about 10 s)")
    try:
        proc = subprocess.run(
            ["openssl", "speed", "-multi", str(cores), "-seconds", "5", "rsa2048"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        log("openssl speed took over 120 s: skipped")
        return None
    # "                  sign    verify    sign/s verify/s"
    # "rsa 2048 bits 0.000151s 0.000010s   6642.0  96808.2"
    columns: list[str] = []
    for line in proc.stdout.splitlines():
        words = line.split()
        if "sign/s" in words:
            columns = words
        match = re.match(r"rsa\s+2048\s+bits\s+(.*)", line.strip())
        if match:
            values = match.group(1).split()
            index = columns.index("sign/s") if "sign/s" in columns else 2
            try:
                return cores, float(values[index])
            except (IndexError, ValueError):
                break
    log(f"no 'rsa 2048 bits' line in openssl speed's output: {proc.stdout[-400:]!r}")
    return None


@contextlib.contextmanager
def sample_rss(server: Server) -> Iterator[dict[int, int]]:
    """Peak RSS (kB) of each worker while the block runs."""
    peaks: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in server.worker_pids():
                peaks[pid] = max(peaks.get(pid, 0), _rss_kb(pid))
            stop.wait(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def setup_workspace(server: Server, accounts: int) -> tuple[str, dict[str, Any]]:
    """Workspace, admin and service accounts through the public CLI and API."""
    cli(server.env, "bootstrap", "--workspace", "bench", "--admin", "admin@bench.test")
    user_token = cli(server.env, "user", "token", "admin@bench.test", "--workspace", "bench")
    headers = {"Authorization": f"Bearer {user_token}"}
    base = f"{server.url}/workspace/bench/api/v1/service-accounts"
    first: dict[str, Any] = {}
    with httpx.Client(timeout=30) as http:
        for i in range(accounts):
            r = http.post(base, json={"name": f"bench {i}"}, headers=headers)
            r.raise_for_status()
            if i == 0:
                first = r.json()
    return user_token, first


def token_load(
    server_url: str,
    client_id: str,
    client_secret: str,
    *,
    connections: int,
    duration: int,
    server_pid: int | None,
    label: str,
    expect_alg: str = "RS256",
) -> dict[str, Any]:
    results = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    env = {
        **os.environ,
        "CONNECTIONS": str(connections),
        "DURATION": str(duration),
        "LABEL": label,
        "RESULTS_FILE": str(results),
        "BENCH_PYTHON": sys.executable,
        "IDLE_WAIT": "20",
        "EXPECT_ALG": expect_alg,
    }
    if server_pid:
        env["SERVER_PID"] = str(server_pid)
    proc = subprocess.run(
        ["bash", str(HERE / "token_load.sh"), server_url, client_id, client_secret],
        env=env,
        capture_output=True,
        text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(("jwt-check: signature", "RESULT", "CPU")):
            log(line)
    if proc.returncode != 0:
        raise RuntimeError(f"token_load.sh failed ({proc.returncode}): {proc.stdout[-800:]}")
    record: dict[str, Any] = json.loads(results.read_text().splitlines()[-1])
    results.unlink()
    return record


def get_load(url: str, token: str, *, connections: int, duration: int) -> dict[str, Any]:
    """wrk GET with a bearer token; parses the RESULT line of bench/get_load.lua."""
    env = {**os.environ, "BEARER": token}
    subprocess.run(
        ["wrk", "-t1", f"-c{connections}", "-d3s", "-s", str(HERE / "get_load.lua"), url],
        env=env,
        capture_output=True,
        check=False,
    )
    proc = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "get_load.lua"),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    log(line)
    return {k: _num(v) for k, v in (p.split("=", 1) for p in line.split()[1:] if "=" in p)}


def _num(value: str) -> Any:
    try:
        return float(value)
    except ValueError:
        return value


def bulk_accounts(env: dict[str, str], count: int) -> None:
    """Insert ``count`` more service accounts into the bench workspace with one SQL statement."""
    import psycopg

    url = env["CENTRALI_DATABASE_URL"]
    log(f"bulk-inserting {count:,} service accounts")
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO service_accounts (workspace_id, client_id, secrets, name, description,
                grant_types, scope, status, tokens_cutoff_ms, created_at, created_by, updated_at)
            SELECT w.id, 'ci_' || substr(md5(g::text || 'bulk'), 1, 20),
                   json_build_array(json_build_array(0, 'sha256$' || md5(g::text), 0)),
                   'bulk ' || g, NULL, '["client_credentials"]',
                   'openid', 'active', 0, now(), 'bench', now()
            FROM generate_series(1, %s) AS g, workspaces w WHERE w.slug = 'bench'
            """,
            (count,),
        )
        conn.execute("ANALYZE service_accounts")
    log(f"bulk insert took {time.monotonic() - started:.0f} s")


def keyset_cursor(env: dict[str, str], offset: int) -> int:
    """The ``after`` a client walking the list by keyset holds before page offset/20 + 1:
    the id of the live account at position ``offset`` (looked up once, with SQL)."""
    import psycopg

    with psycopg.connect(env["CENTRALI_DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT sa.id FROM service_accounts sa JOIN workspaces w ON w.id = sa.workspace_id "
            "WHERE w.slug = 'bench' AND sa.status <> 'deleted' ORDER BY sa.id "
            "OFFSET %s LIMIT 1",
            (offset - 1,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def time_get(url: str, headers: dict[str, str], repeat: int = 20) -> float:
    """Median latency in ms of a GET over one kept-alive connection."""
    times = []
    with httpx.Client(timeout=30) as http:
        http.get(url, headers=headers).raise_for_status()
        for _ in range(repeat):
            t = time.perf_counter()
            http.get(url, headers=headers).raise_for_status()
            times.append((time.perf_counter() - t) * 1000)
    return sorted(times)[len(times) // 2]


PEER_CLIENT_ID = "bench-client"
PEER_CLIENT_SECRET = "bench-secret-0123456789abcdef0123456789abcdef"


@dataclass
class Peer:
    url: str
    pid: int
    workers: int

    @property
    def target(self) -> str:
        return f"node-oidc-provider ({self.workers} workers)"


@contextlib.contextmanager
def peer_server(workers: int) -> Iterator[Peer | None]:
    """node-oidc-provider, started once and kept running until the block ends; None when
    the peer's script or node is missing."""
    if not PEER_RUN.exists() or not shutil.which("node"):
        log("node-oidc-provider peer not available; skipped")
        yield None
        return
    port = free_port()
    env = {**os.environ, "PORT": str(port), "WORKERS": str(workers)}
    out = Path(tempfile.mkstemp(prefix="centrali-bench-peer-", suffix=".log")[1])
    with out.open("wb") as out_file:
        process = subprocess.Popen(
            ["bash", str(PEER_RUN)],
            env=env,
            stdout=out_file,
            stderr=out_file,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # the first start runs npm ci: give it time
        wait_until_up(process, f"{url}/oidc/jwks", 600, lambda: f"peer did not start: {_tail(out)}")
        log(f"node-oidc-provider serving at {url} with {workers} worker(s)")
        yield Peer(url, process.pid, workers)
    finally:
        stop_group(process)
        out.unlink(missing_ok=True)


@contextlib.contextmanager
def ceiling_server(workers: int) -> Iterator[Peer]:
    """bench/ceiling.py on uvicorn with ``workers`` workers, its key made here."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    port = free_port()
    env = {**os.environ, "BENCH_CEILING_KEY": key.decode()}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.ceiling",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=HERE.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{url}/oidc/jwks", 60, lambda: "bench/ceiling.py did not start")
        for _ in range(workers * 4):
            httpx.get(f"{url}/oidc/jwks", timeout=5)
        log(f"ceiling (bench/ceiling.py) serving at {url} with {workers} worker(s)")
        yield Peer(url, process.pid, workers)
    finally:
        stop_group(process)


def ceiling_load(ceiling: Peer, *, connections: int, duration: int) -> dict[str, Any]:
    """One token load against the ceiling app."""
    return token_load(
        ceiling.url,
        "ci_ceiling",
        "not-checked",
        connections=connections,
        duration=duration,
        server_pid=ceiling.pid,
        label=f"ceiling-w{ceiling.workers}",
    )


def peer_load(peer: Peer, *, connections: int, duration: int) -> dict[str, Any]:
    """One token load against the running peer."""
    return token_load(
        peer.url,
        PEER_CLIENT_ID,
        PEER_CLIENT_SECRET,
        connections=connections,
        duration=duration,
        server_pid=peer.pid,
        label=f"peer-oidc-provider-w{peer.workers}",
    )


@dataclass
class Round:
    """One round at one connection count: our token load, the peer's right after it, the
    ceiling's, then GET /records/{id} (each None when not measured)."""

    ours: dict[str, Any]
    peer: dict[str, Any] | None = None
    ceiling: dict[str, Any] | None = None
    records: dict[str, Any] | None = None


@dataclass
class StoreResult:
    kind: str
    rows: list[dict[str, Any]]
    rounds: dict[int, list[Round]]  # connections -> rounds
    token_requests: int  # wrk's measured requests to our POST /oidc/token, all runs
    token_log_lines: int | None


def bench_store(
    kind: str, args: argparse.Namespace, peer: Peer | None, ceiling: Peer | None = None
) -> StoreResult:
    rows: list[dict[str, Any]] = []
    by_conns: dict[int, list[Round]] = {}
    token_requests = 0
    with store(kind) as env, serve(env, args.workers, _speedups(args)) as server:
        log(f"{kind}: serving at {server.url} with {args.workers} worker(s)")
        user_token, account = setup_workspace(server, args.accounts)
        cid, secret = account["clientId"], account["clientSecret"]
        record_url = setup_records(server, user_token, account) if args.api else None
        for c in args.connections:
            for n in range(1, args.rounds + 1):
                log(f"{kind} @{c}: round {n} of {args.rounds}")
                with sample_rss(server) as rss:
                    rec = token_load(
                        server.url,
                        cid,
                        secret,
                        connections=c,
                        duration=args.duration,
                        server_pid=server.process.pid,
                        label=f"centrali-{kind}",
                        expect_alg=args.alg or "RS256",
                    )
                ours = {
                    "target": f"centrali {kind}",
                    "conns": c,
                    "round": n,
                    "rss_mb": round(max(rss.values(), default=0) / 1024, 1),
                    **rec,
                }
                rows.append(ours)
                token_requests += int(rec.get("requests", 0))
                this = Round(ours)
                if peer:
                    rec = peer_load(peer, connections=c, duration=args.duration)
                    this.peer = {
                        "target": peer.target,
                        "conns": c,
                        "round": n,
                        "paired_with": f"centrali {kind}",
                        **rec,
                    }
                    rows.append(this.peer)
                if ceiling:
                    rec = ceiling_load(ceiling, connections=c, duration=args.duration)
                    this.ceiling = {
                        "target": "ceiling (bench/ceiling.py)",
                        "conns": c,
                        "round": n,
                        "paired_with": f"centrali {kind}",
                        **rec,
                    }
                    rows.append(this.ceiling)
                if record_url:
                    this.records = records_load(
                        server, account, record_url, kind, c, n, args.duration
                    )
                    rows.append(this.records)
                by_conns.setdefault(c, []).append(this)
        if args.assertions:
            assertion_rows = bench_assertions(server, user_token, kind, args)
            token_requests += sum(int(r.get("requests", 0)) for r in assertion_rows)
            rows += assertion_rows
        if args.scale and kind == "postgres":
            scale_rows = bench_scale(server, env, user_token, account, args)
            token_requests += sum(int(r.get("requests", 0)) for r in scale_rows)
            rows += scale_rows
    return StoreResult(kind, rows, by_conns, token_requests, server.token_log_lines)


def bench_assertions(
    server: Server, user_token: str, kind: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """POST /oidc/token with private_key_jwt: an account with an Ed25519 key (signing is
    cheap, so enough single-use assertions are made beforehand), each request its own."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from jwt.algorithms import OKPAlgorithm

    key = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    base = f"{server.url}/workspace/bench/api/v1/service-accounts"
    user = {"Authorization": f"Bearer {user_token}"}
    with httpx.Client(timeout=30) as http:
        account = http.post(base, headers=user, json={"name": "bench keys"}).json()
        added = http.post(f"{base}/{account['id']}/keys", headers=user, json={"jwk": jwk})
        added.raise_for_status()
    kid, client_id = added.json()["kid"], account["clientId"]
    rows = []
    for c in args.connections:
        count = int(args.duration * 8000) + 24_000  # more than the server can use up
        path = Path(tempfile.mkstemp(suffix=".bodies")[1])
        now = int(time.time())
        with path.open("w") as out:
            for _ in range(count):
                claims = {
                    "iss": client_id,
                    "sub": client_id,
                    "aud": f"{server.url}/oidc/token",
                    "iat": now,
                    "exp": now + 540,
                    "jti": uuid.uuid4().hex,
                }
                signed = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})
                out.write(
                    "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams"
                    f"%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={signed}\n"
                )
        env = {**os.environ, "ASSERTION_FILE": str(path)}
        url = f"{server.url}/oidc/token"
        proc = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{c}",
                f"-d{args.duration}s",
                "--timeout",
                "10s",
                "-s",
                str(HERE / "assertion_load.lua"),
                url,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        path.unlink()
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        log(line)
        rec = {k: _num(v) for k, v in (p.split("=", 1) for p in line.split()[1:] if "=" in p)}
        rows.append({"target": f"centrali {kind} private_key_jwt (EdDSA)", "conns": c, **rec})
    return rows


def _speedups(args: argparse.Namespace) -> dict[str, str]:
    extra = {}
    if args.alg:
        extra["CENTRALI_SIGNING_ALG"] = args.alg
    if args.reuse:
        extra["CENTRALI_TOKEN_REUSE_SECONDS"] = str(args.reuse)
    return extra


def _client_token(server: Server, account: dict[str, Any]) -> str:
    r = httpx.post(
        f"{server.url}/oidc/token",
        data={
            "grant_type": "client_credentials",
            "client_id": account["clientId"],
            "client_secret": account["clientSecret"],
        },
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def setup_records(server: Server, user_token: str, account: dict[str, Any]) -> str:
    """A structure and one record; the record's URL."""
    base = f"{server.url}/workspace/bench/api/v1"
    with httpx.Client(timeout=30) as http:
        user = {"Authorization": f"Bearer {user_token}"}
        http.post(
            f"{base}/structures",
            headers=user,
            json={
                "slug": "products",
                "name": "Products",
                "fields": [
                    {"name": "name", "type": "string", "required": True},
                    {"name": "price", "type": "number"},
                ],
            },
        ).raise_for_status()
        token = _client_token(server, account)
        record = http.post(
            f"{base}/records",
            headers={"Authorization": f"Bearer {token}"},
            json={"recordSlug": "products", "data": {"name": "Laptop Pro", "price": 1299.99}},
        )
        record.raise_for_status()
    return f"{base}/records/{record.json()['id']}"


def records_load(
    server: Server,
    account: dict[str, Any],
    url: str,
    kind: str,
    connections: int,
    round_no: int,
    duration: int,
) -> dict[str, Any]:
    """GET /records/{id} with a service-account token (a fresh one: rounds can outlast one)."""
    token = _client_token(server, account)
    with sample_rss(server) as rss:
        rec = get_load(url, token, connections=connections, duration=duration)
    return {
        "target": f"centrali {kind} GET /records/{{id}}",
        "conns": connections,
        "round": round_no,
        "rss_mb": round(max(rss.values(), default=0) / 1024, 1),
        **rec,
    }


def bench_scale(
    server: Server,
    env: dict[str, str],
    user_token: str,
    account: dict[str, Any],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    rows = []
    base = f"{server.url}/workspace/bench/api/v1/service-accounts"
    user = {"Authorization": f"Bearer {user_token}"}
    before = {
        "page1_ms": time_get(f"{base}?page=1", user),
        "page10000_ms": time_get(f"{base}?page=10000", user) if args.accounts >= 200_000 else None,
    }
    log(f"paging with {args.accounts:,} accounts: {before}")
    bulk_accounts(env, args.scale)
    after = {
        "page1_ms": time_get(f"{base}?page=1", user),
        "page10000_ms": time_get(f"{base}?page=10000", user),
        "keyset1_ms": time_get(f"{base}?after=0", user),
        "keyset10000_ms": time_get(f"{base}?after={keyset_cursor(env, 199_980)}", user),
    }
    log(f"paging with {args.accounts + args.scale:,} accounts: {after}")
    rec = token_load(
        server.url,
        account["clientId"],
        account["clientSecret"],
        connections=64,
        duration=args.duration,
        server_pid=server.process.pid,
        label="centrali-postgres-scale",
        expect_alg=args.alg or "RS256",
    )
    rows.append(
        {
            "target": f"centrali postgres, {args.accounts + args.scale:,} accounts",
            "conns": 64,
            **rec,
            **after,
        }
    )
    return rows


def _errors(r: dict[str, Any]) -> int:
    return int(
        r.get("non2xx", 0)
        + r.get("err_connect", 0)
        + r.get("err_read", 0)
        + r.get("err_write", 0)
        + r.get("err_timeout", 0)
    )


def print_table(rows: list[dict[str, Any]], with_round: bool = False) -> None:
    rnd = " round |" if with_round else ""
    print(f"| target | conns |{rnd} req/s | p50 ms | p99 ms | errors | peak RSS/worker MB |")
    print("|---|---:|" + ("---:|" if with_round else "") + "---:|---:|---:|---:|---:|")
    for r in rows:
        cell = f" {r.get('round', '-')} |" if with_round else ""
        print(
            f"| {r['target']} | {r['conns']} |{cell} {r['rps']:,.0f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {_errors(r)} | {r.get('rss_mb', '-')} |"
        )
    extras = [r for r in rows if "page1_ms" in r]
    for r in extras:
        print(
            f"\npaging ({r['target']}): page 1 {r['page1_ms']:.1f} ms, "
            f"page 10,000 {r['page10000_ms']:.1f} ms; keyset (?after=) page 1 "
            f"{r['keyset1_ms']:.1f} ms, page 10,000 {r['keyset10000_ms']:.1f} ms (median of 20)"
        )


def _medians(runs: list[dict[str, Any]]) -> str:
    rps = statistics.median(r["rps"] for r in runs)
    p99 = statistics.median(r["p99_ms"] for r in runs)
    return f"{rps:,.0f} req/s p99 {p99:.0f} ms"


def print_summary(
    results: list[StoreResult], rsa: tuple[int, float] | None, args: argparse.Namespace
) -> None:
    """Per store and connection count: the medians over the rounds (of the pair ratios with
    --peer, of records/token with --api), then the access-log count of each store."""
    signs = rsa[1] if rsa and args.alg in ("", "RS256") and not args.reuse else None
    print()
    for res in results:
        for c, rounds in res.rounds.items():
            ours = [r.ours for r in rounds]
            ours_rps = statistics.median(r["rps"] for r in ours)
            errors = sum(_errors(r) for r in ours)
            share = (
                f"; {ours_rps / signs * 100:.0f} % of the machine's RSA-2048 signing rate"
                if signs
                else ""
            )
            failed = f"; {errors} errors" if errors else ""
            peers = [r.peer for r in rounds if r.peer]
            if peers and len(peers) == len(rounds):
                ratios = [r.ours["rps"] / r.peer["rps"] for r in rounds if r.peer]
                print(
                    f"{res.kind} @{c}: ratio per pair "
                    + " ".join(f"{x:.2f}" for x in ratios)
                    + f" -> median {statistics.median(ratios):.2f}x (ours median "
                    f"{_medians(ours)}; peer median {_medians(peers)}){share}{failed}"
                )
            else:
                print(
                    f"{res.kind} @{c}: ours per round "
                    + " ".join(f"{r['rps']:,.0f}" for r in ours)
                    + f" -> median {_medians(ours)}{share}{failed}"
                )
            ceilings = [r.ceiling for r in rounds if r.ceiling]
            if ceilings and len(ceilings) == len(rounds):
                shares = [r.ours["rps"] / r.ceiling["rps"] for r in rounds if r.ceiling]
                line = (
                    f"{res.kind} @{c}: ours/ceiling per round "
                    + " ".join(f"{x:.2f}" for x in shares)
                    + f" -> median {statistics.median(shares):.2f} (ceiling median "
                    f"{_medians(ceilings)})"
                )
                if peers and len(peers) == len(rounds):
                    tops = [
                        r.ceiling["rps"] / r.peer["rps"] for r in rounds if r.ceiling and r.peer
                    ]
                    line += f"; ceiling/peer median {statistics.median(tops):.2f}x"
                print(line)
            records = [r.records for r in rounds if r.records]
            if records and len(records) == len(rounds):
                ratios = [r.records["rps"] / r.ours["rps"] for r in rounds if r.records]
                bad = sum(_errors(r) for r in records)
                print(
                    f"{res.kind} @{c}: records/token per round "
                    + " ".join(f"{x:.2f}" for x in ratios)
                    + f" -> median {statistics.median(ratios):.2f}x (records median "
                    f"{_medians(records)})" + (f"; {bad} errors" if bad else "")
                )
    for res in results:
        if res.token_log_lines is None:
            continue
        # token_load.sh's 3 s warm-ups (wrk's report discarded) and pre-flight checks, and
        # the requests in flight when wrk stops, are answered and logged but not counted.
        verdict = (
            "wrk's measured requests; the warm-ups, pre-flight checks and requests in flight "
            "when wrk stopped are answered and logged too but not counted"
            if res.token_log_lines >= res.token_requests
            else "FEWER LINES THAN MEASURED REQUESTS: access lines were lost"
        )
        print(
            f"{res.kind} access log: {res.token_log_lines:,} lines for ≥ "
            f"{res.token_requests:,} token requests answered ({verdict})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--accounts",
        type=int,
        default=1000,
        help="service accounts made through the API before the load",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each connection count this many times (with --peer: back-to-back "
        "pairs, ours then the peer's) and report the medians",
    )
    parser.add_argument("--peer", action="store_true", help="also node-oidc-provider")
    parser.add_argument("--api", action="store_true", help="also GET /records/{id}")
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also a bare sign-only app on uvicorn (bench/ceiling.py): the stack's ceiling",
    )
    parser.add_argument(
        "--assertions", action="store_true", help="also POST /oidc/token by private_key_jwt"
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=0,
        help="PostgreSQL: bulk-insert this many more accounts, measure again",
    )
    parser.add_argument("--alg", default="", help="CENTRALI_SIGNING_ALG for the server")
    parser.add_argument("--reuse", type=int, default=0, help="CENTRALI_TOKEN_REUSE_SECONDS")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON lines here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.connections = [int(c) for c in args.connections.split(",")]
    ensure_wrk()
    rsa = rsa_sign_rate()
    results: list[StoreResult] = []
    peer_cm = peer_server(2) if args.peer else contextlib.nullcontext(None)
    ceiling_cm = ceiling_server(args.workers) if args.ceiling else contextlib.nullcontext(None)
    with peer_cm as peer, ceiling_cm as ceiling:
        for kind in args.stores.split(","):
            results.append(bench_store(kind.strip(), args, peer, ceiling))
    rows = [r for res in results for r in res.rows]
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, wrk 1 thread, "
        f"{args.duration} s per run, centrali --workers {args.workers}"
        + (f", {args.rounds} rounds" if args.rounds > 1 else "")
        + ", access log on"
        + (f", CENTRALI_SIGNING_ALG={args.alg}" if args.alg else "")
        + (f", CENTRALI_TOKEN_REUSE_SECONDS={args.reuse}" if args.reuse else "")
    )
    if rsa:
        print(f"openssl speed -multi {rsa[0]} rsa2048: {rsa[1]:,.0f} signs/s")
    print()
    print_table(rows, with_round=args.rounds > 1)
    print_summary(results, rsa, args)
    if args.json:
        with args.json.open("a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
