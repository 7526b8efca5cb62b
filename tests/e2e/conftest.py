"""Real ``centrali serve`` processes on free ports, each with its own store, and the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

import centrali.cli.base as cli_base
from centrali.cli import cli
from centrali.store.db import Database, normalize_url

CENTRALI = Path(sys.executable).parent / "centrali"
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 30.0
PG_URL = os.environ.get("CENTRALI_TEST_DATABASE_URL", "")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(**settings: str) -> dict[str, str]:
    """The test's environment without any ``CENTRALI_*`` or proxy setting, plus ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CENTRALI_") and k.lower() not in {"http_proxy", "https_proxy"}
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(settings)
    return env


def run_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``centrali ARGS`` as a user would run it; never a traceback, whatever the outcome."""
    result = subprocess.run(
        [str(CENTRALI), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def cli_ok(env: Mapping[str, str], *args: str) -> str:
    result = run_cli(env, *args)
    assert result.returncode == 0, f"centrali {' '.join(args)}: {result.stderr}"
    return result.stdout


def cli_inproc(env: Mapping[str, str], *args: str) -> str:
    """Our CLI in this process with ``env``'s settings: the same commands, without the
    second or more a new interpreter needs to import them. For setup, not for the CLI's own
    tests; the stores it opens are closed afterwards."""
    opened: list[Database] = []

    class _Closable(Database):
        def __init__(self, url: str, **engine_kwargs: object) -> None:
            super().__init__(url, **engine_kwargs)
            opened.append(self)

    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CENTRALI_")}
    overrides.update({k: v for k, v in env.items() if k.startswith("CENTRALI_")})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli_base, "Database", _Closable)
        try:
            result = CliRunner().invoke(cli, list(args), env=overrides)
        finally:
            for db in opened:
                db.dispose()
    assert result.exit_code == 0 and result.exception is None, (result.output, result.exc_info)
    return result.stdout


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, trust_env=False, timeout=10.0)


def _spawn(env: Mapping[str, str], log: Path, port: int, extra: tuple[str, ...]) -> Server:
    with log.open("wb") as out:
        # Its own session, so that stopping it also stops uvicorn's worker processes.
        proc = subprocess.Popen(
            [str(CENTRALI), "serve", "--port", str(port), *extra],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(proc=proc, port=port, env=dict(env), log=log)


def wait_ready(server: Server, timeout: float = STARTUP_TIMEOUT) -> None:
    """Until discovery answers 200; fails with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    url = f"{server.base_url}/.well-known/openid-configuration"
    with httpx.Client(trust_env=False, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise ServerExited(server)
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(f"centrali serve not ready after {timeout} s:\n{server.log_text()}")


class ServerExited(Exception):
    def __init__(self, server: Server) -> None:
        super().__init__(f"centrali serve exited with {server.proc.returncode}")
        self.server = server


def stop(server: Server) -> None:
    """SIGTERM to the server's process group, SIGKILL if it lingers."""
    if server.proc.poll() is None:
        try:
            os.killpg(server.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            server.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(STOP_TIMEOUT)
    # Workers of a stopped supervisor must not outlive it.
    try:
        os.killpg(server.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


Launch = Callable[..., list[Server]]


@contextmanager
def launcher(tmp_path: Path, startup_timeout: float = STARTUP_TIMEOUT) -> Iterator[Launch]:
    """Start servers (all at once, each on a free port) and wait until each answers.

    ``launch(env, env, ..., extra=("--workers", "2"))``; every server is stopped on exit.
    """
    started: list[Server] = []

    def _launch(*envs: Mapping[str, str], extra: tuple[str, ...] = ()) -> list[Server]:
        def spawn(env: Mapping[str, str]) -> Server:
            server = _spawn(env, tmp_path / f"serve-{len(started)}.log", free_port(), extra)
            started.append(server)
            return server

        ready: list[Server] = []
        for server in [spawn(env) for env in envs]:
            for _ in range(3):
                try:
                    wait_ready(server, startup_timeout)
                    break
                except ServerExited as exc:
                    log = server.log_text()
                    # Lost the race for the free port: try another one; anything else fails.
                    if "address already in use" not in log.lower():
                        pytest.fail(f"{exc}:\n{log}")
                    server = spawn(server.env)
            else:
                pytest.fail("centrali serve found no free port in 3 attempts")
            ready.append(server)
        return ready

    try:
        yield _launch
    finally:
        for server in reversed(started):
            stop(server)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    with launcher(tmp_path) as start:
        yield start


@pytest.fixture
def store_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh SQLite store under ``tmp_path``, issuer left to default."""
    return base_env(CENTRALI_DATA_DIR=str(tmp_path / "data"))


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """A private, empty schema in the test PostgreSQL database, dropped afterwards."""
    if not PG_URL:
        pytest.skip("CENTRALI_TEST_DATABASE_URL is not set")
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(PG_URL))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
