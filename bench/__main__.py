"""Token-endpoint and workspace-API load benchmark, side by side with node-oidc-provider.

    python -m bench                       # SQLite and PostgreSQL, 16 and 64 connections, 20 s
    python -m bench --stores sqlite --duration 10 --connections 64
    python -m bench --peer                # also node-oidc-provider (2 cluster workers)
    python -m bench --api                 # also GET /records/{id} with a service-account token
    python -m bench --scale 1000000       # PostgreSQL with 1,000,000 accounts: tokens/s, paging

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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
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
    rss_samples: dict[int, int] = field(default_factory=dict)

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
    port = free_port()
    env = {**env, **(extra_env or {})}
    process = subprocess.Popen(
        [
            str(CENTRALI),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    server = Server(process, url, env)
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
                raise RuntimeError("centrali serve did not start")
            time.sleep(0.3)
        # every worker answers discovery before the load starts
        for _ in range(workers * 4):
            httpx.get(f"{url}/.well-known/openid-configuration", timeout=5)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


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


def run_peer(workers: int, connections: list[int], duration: int) -> list[dict[str, Any]]:
    if not PEER_RUN.exists() or not shutil.which("node"):
        log("node-oidc-provider peer not available; skipped")
        return []
    port = free_port()
    env = {**os.environ, "PORT": str(port), "WORKERS": str(workers)}
    process = subprocess.Popen(
        ["bash", str(PEER_RUN)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                httpx.get(f"{url}/oidc/jwks", timeout=2)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("peer did not start") from None
                time.sleep(0.5)
        for c in connections:
            rec = token_load(
                url,
                "bench-client",
                "bench-secret-0123456789abcdef0123456789abcdef",
                connections=c,
                duration=duration,
                server_pid=process.pid,
                label=f"peer-oidc-provider-w{workers}",
            )
            rows.append({"target": f"node-oidc-provider ({workers} workers)", "conns": c, **rec})
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    return rows


def bench_store(kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with store(kind) as env, serve(env, args.workers, _speedups(args)) as server:
        log(f"{kind}: serving at {server.url} with {args.workers} worker(s)")
        user_token, account = setup_workspace(server, args.accounts)
        cid, secret = account["clientId"], account["clientSecret"]
        for c in args.connections:
            with sample_rss(server) as rss:
                rec = token_load(
                    server.url,
                    cid,
                    secret,
                    connections=c,
                    duration=args.duration,
                    server_pid=server.process.pid,
                    label=f"centrali-{kind}",
                )
            rows.append(
                {
                    "target": f"centrali {kind}",
                    "conns": c,
                    "rss_mb": round(max(rss.values(), default=0) / 1024, 1),
                    **rec,
                }
            )
        if args.assertions:
            rows += bench_assertions(server, user_token, kind, args)
        if args.api:
            rows += bench_api(server, user_token, account, kind, args)
        if args.scale and kind == "postgres":
            rows += bench_scale(server, env, user_token, account, args)
    return rows


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


def bench_api(
    server: Server, user_token: str, account: dict[str, Any], kind: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
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
        token = http.post(
            f"{server.url}/oidc/token",
            data={
                "grant_type": "client_credentials",
                "client_id": account["clientId"],
                "client_secret": account["clientSecret"],
            },
        ).json()["access_token"]
        record = http.post(
            f"{base}/records",
            headers={"Authorization": f"Bearer {token}"},
            json={"recordSlug": "products", "data": {"name": "Laptop Pro", "price": 1299.99}},
        ).json()
    rows = []
    for c in args.connections:
        with sample_rss(server) as rss:
            rec = get_load(
                f"{base}/records/{record['id']}", token, connections=c, duration=args.duration
            )
        rows.append(
            {
                "target": f"centrali {kind} GET /records/{{id}}",
                "conns": c,
                "rss_mb": round(max(rss.values(), default=0) / 1024, 1),
                **rec,
            }
        )
    return rows


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


def print_table(rows: list[dict[str, Any]]) -> None:
    header = "| target | conns | req/s | p50 ms | p99 ms | errors | peak RSS/worker MB |"
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        errors = int(
            r.get("non2xx", 0)
            + r.get("err_connect", 0)
            + r.get("err_read", 0)
            + r.get("err_write", 0)
            + r.get("err_timeout", 0)
        )
        print(
            f"| {r['target']} | {r['conns']} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {errors} | {r.get('rss_mb', '-')} |"
        )
    extras = [r for r in rows if "page1_ms" in r]
    for r in extras:
        print(
            f"\npaging ({r['target']}): page 1 {r['page1_ms']:.1f} ms, "
            f"page 10,000 {r['page10000_ms']:.1f} ms; keyset (?after=) page 1 "
            f"{r['keyset1_ms']:.1f} ms, page 10,000 {r['keyset10000_ms']:.1f} ms (median of 20)"
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
    parser.add_argument("--peer", action="store_true", help="also node-oidc-provider")
    parser.add_argument("--api", action="store_true", help="also GET /records/{id}")
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
    args.connections = [int(c) for c in args.connections.split(",")]
    ensure_wrk()
    rows: list[dict[str, Any]] = []
    if args.peer:
        rows += run_peer(2, args.connections, args.duration)
    for kind in args.stores.split(","):
        rows += bench_store(kind.strip(), args)
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, wrk 1 thread, "
        f"{args.duration} s per run, centrali --workers {args.workers}"
        + (f", CENTRALI_SIGNING_ALG={args.alg}" if args.alg else "")
        + (f", CENTRALI_TOKEN_REUSE_SECONDS={args.reuse}" if args.reuse else "")
        + "\n"
    )
    print_table(rows)
    if args.json:
        with args.json.open("a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
