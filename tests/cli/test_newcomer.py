"""What a newcomer tripped on (issue 13): the store's one issuer, a port already in use, the
store a command uses, read-only commands that create nothing, database URLs, bootstrap in
one transaction, ``--version`` and ``doctor``."""

from __future__ import annotations

import base64
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner, Result

from centrali.cli import cli
from centrali.config import Settings
from centrali.services import users as users_svc
from centrali.services.issuer import served_issuer
from centrali.store.db import Database
from tests.cli.test_cli import Run, assert_fails, claims, ok
from tests.cli.test_cli import db_url as db_url
from tests.cli.test_cli import run as run

ADMIN = "admin@acme-corp.test"


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """``serve`` up to the server start (uvicorn.run records its options instead)."""
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(options))
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    environ = dict(os.environ)
    yield started
    os.environ.clear()
    os.environ.update(environ)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert (result.exit_code, result.output) == (0, "centrali 0.1.0\n")


# --- 1. the issuer is one stable property of a store --------------------------------------


def test_the_first_served_issuer_stays_the_stores(
    run: Run, serving: list[dict[str, Any]], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("centrali.cli.serve.port_taken", lambda host, port: None)
    environ = dict(os.environ)

    def serve(*args: str, env: dict[str, str] | None = None) -> Result:
        try:  # each serve is its own process: what it exports for its workers goes with it
            return run("serve", *args, env=env)
        finally:
            os.environ.clear()
            os.environ.update(environ)

    ok(run("bootstrap", "--workspace", "acme-corp", "--admin", ADMIN))
    ok(serve("--port", "8101"))
    second = serve("--port", "8102")
    ok(second)
    notices = [line for line in second.stderr.splitlines() if "store's issuer" in line]
    assert notices == [
        "centrali: this server's issuer is http://127.0.0.1:8102 (its own address, this run "
        "only); the store's issuer stays http://127.0.0.1:8101, which `centrali user token` "
        "signs for (--issuer http://127.0.0.1:8102 for this server; CENTRALI_ISSUER sets one "
        "for good)"
    ]
    # The first server's address again: nothing to say.
    assert "store's issuer" not in serve("--port", "8101").stderr

    token = run("user", "token", ADMIN, "--workspace", "acme-corp")
    assert claims(ok(token))["iss"] == claims(token.stdout)["aud"] == "http://127.0.0.1:8101"
    assert token.stderr == "centrali: signed for issuer http://127.0.0.1:8101 (the store's)\n"

    other = run("user", "token", ADMIN, "--workspace", "acme-corp", "--issuer", "http://h:1")
    assert claims(ok(other))["iss"] == "http://h:1"
    assert other.stderr == "centrali: signed for issuer http://h:1 (given)\n"

    # A configured issuer is the deliberate name: recorded, and user tokens follow it.
    ok(serve("--port", "8103", env={"CENTRALI_ISSUER": "http://auth.example"}))
    token = run("user", "token", ADMIN, "--workspace", "acme-corp")
    assert claims(ok(token))["iss"] == "http://auth.example"
    settings = Settings(database_url=db_url, port=8104)
    db = Database(db_url)
    try:
        assert served_issuer(db, settings) == ("http://auth.example", "http://auth.example")
    finally:
        db.dispose()


# --- 2. a port in use is one plain line -------------------------------------------------


def test_a_port_in_use_is_one_line_naming_it(run: Run, serving: list[dict[str, Any]]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = assert_fails(run("serve", "--port", str(port)), f"port {port}", "already in use")
    assert line == (
        f"Error: port {port} on 127.0.0.1: address already in use (another server?): stop it, "
        "or serve on another --port"
    )
    assert serving == []


def test_a_free_port_is_not_refused() -> None:
    from centrali.cli.serve import port_taken

    assert port_taken("127.0.0.1", free_port()) is None


# --- 5. the store a command uses; read-only commands create nothing ------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("user", "token", ADMIN, "--workspace", "acme-corp"),
        ("audit", "list", "--workspace", "acme-corp"),
        ("audit", "failures"),
        ("keys", "list"),
        ("group", "list", "--workspace", "acme-corp"),
    ],
    ids=["user-token", "audit-list", "audit-failures", "keys-list", "group-list"],
)
def test_read_only_commands_create_no_store(
    run: Run, tmp_path: Path, command: tuple[str, ...]
) -> None:
    default = tmp_path / ".centrali" / "centrali.db"
    line = assert_fails(run(*command, store=False), "no store at", "nothing created")
    assert f"sqlite:///{default}" in line
    assert not (tmp_path / ".centrali").exists()
    explicit = tmp_path / "x.db"
    assert_fails(
        run(*command, "--database-url", f"sqlite:///{explicit}", store=False), str(explicit)
    )
    assert not explicit.exists()


def test_a_store_with_no_schema_is_not_migrated_by_a_read(run: Run, tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    url = f"sqlite:///{empty}"
    line = assert_fails(run("keys", "list", "--database-url", url, store=False), "no schema")
    assert url in line
    assert empty.stat().st_size == 0


def test_not_found_names_the_store(run: Run, db_url: str) -> None:
    ok(run("workspace", "create", "acme-corp"))
    line = assert_fails(run("user", "token", "x@y.test", "--workspace", "globex"))
    assert line == f"Error: Workspace not found in {db_url}"
    line = assert_fails(run("user", "token", "x@y.test", "--workspace", "acme-corp"))
    assert line.endswith(f"is not a member of workspace 'acme-corp' in {db_url}"), line


# --- 8. database URLs (see also test_cli.test_unusable_database_url_…) -----------------------


def test_the_default_data_dir_is_made_on_first_use(run: Run, tmp_path: Path) -> None:
    ok(run("workspace", "create", "acme-corp", store=False))
    assert (tmp_path / ".centrali" / "centrali.db").is_file()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@127.0.0.1:1/centrali",
        "postgresql+psycopg://u@127.0.0.1:1/centrali",
        "postgres://u@127.0.0.1:1/centrali",
        "sqlite+pysqlite:///{tmp}/p.db",
    ],
    ids=["postgresql", "psycopg", "postgres", "pysqlite"],
)
def test_supported_urls_and_their_driver_variants_pass_the_check(url: str, tmp_path: Path) -> None:
    from centrali.store.db import check_database_url

    check_database_url(url.format(tmp=tmp_path))


# --- 9. bootstrap checks first, then writes in one transaction --------------------------------


@pytest.mark.parametrize(
    ("workspace", "email", "word"),
    [("acme-corp", "not-an-email", "email"), ("Bad Slug", ADMIN, "slug")],
    ids=["email", "slug"],
)
def test_bootstrap_with_bad_input_writes_nothing(
    run: Run, tmp_path: Path, workspace: str, email: str, word: str
) -> None:
    assert_fails(run("bootstrap", "--workspace", workspace, "--admin", email), word)
    assert not (tmp_path / "c.db").exists()  # the store was not even opened
    ok(run("db", "upgrade"))
    assert_fails(run("bootstrap", "--workspace", workspace, "--admin", email), word)
    assert_fails(run("audit", "list", "--workspace", "acme-corp"), "workspace not found")


def test_bootstrap_is_one_transaction(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(users_svc, "_join", broken)
    assert_fails(run("bootstrap", "--workspace", "acme-corp", "--admin", ADMIN), "no space")
    monkeypatch.undo()
    # Neither the workspace nor the user was left behind.
    assert_fails(run("audit", "list", "--workspace", "acme-corp"), "workspace not found")
    ok(run("workspace", "create", "acme-corp"))
    ok(run("user", "create", ADMIN, "--workspace", "acme-corp"))


# --- doctor ---------------------------------------------------------------------------------

MASTER = base64.b64encode(bytes(range(32))).decode()


def doctor_lines(
    run: Run, *args: str, env: dict[str, str] | None = None, store: bool = True
) -> tuple[int, list[str]]:
    result = run("doctor", *args, env=env, store=store)
    assert result.stderr == ""
    return result.exit_code, result.stdout.splitlines()


def test_doctor_on_a_good_store(run: Run) -> None:
    env = {"CENTRALI_MASTER_KEY": MASTER}
    ok(run("bootstrap", "--workspace", "acme-corp", "--admin", ADMIN, env=env))
    code, lines = doctor_lines(run, env=env)
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == [
        "ok    database url",
        "ok    store",
        "ok    schema",
        "ok    keys",
        "ok    issuer",
        "ok    redis",
    ]
    assert "decryptable" in lines[3]
    assert "migrated (revision" in lines[2]


@pytest.mark.parametrize(
    ("env", "check", "words"),
    [
        ({}, "keys", "set CENTRALI_MASTER_KEY"),
        ({"CENTRALI_MASTER_KEY": base64.b64encode(bytes(32)).decode()}, "keys", "decrypt"),
        (
            {"CENTRALI_MASTER_KEY": MASTER, "CENTRALI_ISSUER": "https://auth.example"},
            "issuer",
            "CENTRALI_FORWARDED_ALLOW_IPS",
        ),
        (
            {"CENTRALI_MASTER_KEY": MASTER, "CENTRALI_ISSUER": "ftp://x"},
            "issuer",
            "not an http(s) URL",
        ),
        (
            {"CENTRALI_MASTER_KEY": MASTER, "CENTRALI_REDIS_URL": "redis://127.0.0.1:1/0"},
            "redis",
            "cannot reach",
        ),
    ],
    ids=["no-master-key", "wrong-master-key", "proxy", "issuer-url", "redis"],
)
def test_doctor_fails_a_bad_check_with_one_line_and_exit_1(
    run: Run, env: dict[str, str], check: str, words: str
) -> None:
    ok(
        run(
            "bootstrap",
            "--workspace",
            "acme-corp",
            "--admin",
            ADMIN,
            env={"CENTRALI_MASTER_KEY": MASTER},
        )
    )
    code, lines = doctor_lines(run, env=env)
    assert code == 1, lines
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith(f"FAIL  {check}: "), lines
    assert words in failed[0]
    assert MASTER not in "\n".join(lines)


def test_doctor_without_a_store_creates_none(run: Run, tmp_path: Path) -> None:
    code, lines = doctor_lines(run, "--database-url", f"sqlite:///{tmp_path}/none.db", store=False)
    assert code == 1
    assert lines[0].startswith("ok    database url")
    assert lines[1].startswith("FAIL  store: no store at")
    assert len(lines) == 2
    assert not (tmp_path / "none.db").exists()
    code, lines = doctor_lines(run, "--database-url", "mysql://x/y", store=False)
    assert (code, len(lines)) == (1, 1) and lines[0].startswith("FAIL  database url: unsupported")
