"""The admin CLI through click's CliRunner: what it prints, how it fails, each test its own store.

Expected failures are one line on stderr and exit 1 (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import uvicorn
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect, text

from centrali.cli import cli
from centrali.config import Settings
from centrali.store.db import Database
from centrali.store.tables import ServerSetting
from centrali.web.app import create_app

JWT_LINE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$")
ISSUER = "http://testserver"

Run = Callable[..., Result]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/c.db"


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """``run("workspace", "create", "acme")`` against this test's store, flags appended."""
    for name in list(os.environ):
        if name.startswith("CENTRALI_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # the default data dir, ./.centrali, lands here if used
    runner = CliRunner()

    def _run(*args: str, store: bool = True, env: dict[str, str] | None = None) -> Result:
        argv = [*args, "--database-url", db_url] if store else list(args)
        result = runner.invoke(cli, argv, env=env)
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
        return result

    yield _run


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def assert_fails(result: Result, *words: str, code: int = 1) -> str:
    """Exit ``code``, nothing on stdout, exactly one line on stderr; returns that line."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if code == 2:  # click's usage errors also print "Usage:" and "Try --help" lines
        lines = [line for line in lines if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]


def claims(token_output: str) -> dict[str, Any]:
    assert JWT_LINE.match(token_output), token_output
    decoded: dict[str, Any] = jwt.decode(token_output.strip(), options={"verify_signature": False})
    return decoded


def test_workspace_create_prints_slug(run: Run) -> None:
    result = run("workspace", "create", "acme-corp")
    assert ok(result) == "acme-corp\n"
    assert result.stderr == ""
    assert ok(run("workspace", "create", "globex", "--name", "Globex Corporation")) == "globex\n"


def test_workspace_create_duplicate_fails(run: Run) -> None:
    ok(run("workspace", "create", "acme-corp"))
    assert_fails(run("workspace", "create", "acme-corp"), "acme-corp", "exists")


@pytest.mark.parametrize(
    "slug",
    ["Bad Slug", "UPPER", "dot.slug", "dash-last-", "under_score", "x" * 65],
    ids=["space", "upper", "dot", "trailing-dash", "underscore", "too-long"],
)
def test_workspace_create_bad_slug_fails(run: Run, slug: str) -> None:
    assert_fails(run("workspace", "create", slug), "slug")
    # Nothing was created: the list of an unknown workspace still fails.
    assert_fails(run("audit", "list", "--workspace", slug))


def test_user_create_prints_subject(run: Run) -> None:
    ok(run("workspace", "create", "acme-corp"))
    out = ok(run("user", "create", "dev@acme-corp.test", "--workspace", "acme-corp"))
    assert out.count("\n") == 1
    uuid.UUID(out.strip())


def test_user_create_unknown_workspace_fails(run: Run) -> None:
    assert_fails(run("user", "create", "dev@acme.test", "--workspace", "nope"), "workspace")


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "a@b", "two@@acme.test", "sp ace@acme.test", "@acme.test", ""],
    ids=["no-at", "no-dot", "double-at", "space", "no-local", "empty"],
)
def test_user_create_malformed_email_fails(run: Run, email: str) -> None:
    ok(run("workspace", "create", "acme-corp"))
    assert_fails(run("user", "create", email, "--workspace", "acme-corp"), "email")


@pytest.mark.parametrize(
    "again", ["dev@acme-corp.test", "DEV@Acme-Corp.test"], ids=["same", "other-case"]
)
def test_user_create_duplicate_fails(run: Run, again: str) -> None:
    ok(run("workspace", "create", "acme-corp"))
    ok(run("user", "create", "dev@acme-corp.test", "--workspace", "acme-corp"))
    assert_fails(run("user", "create", again, "--workspace", "acme-corp"), "exists")


def test_user_create_with_repeated_group_joins_each(run: Run) -> None:
    ok(run("workspace", "create", "acme-corp"))
    email = "dev@acme-corp.test"
    args = ("--workspace", "acme-corp")
    subject = ok(
        run("user", "create", email, *args, "--group", "developers", "--group", "api-users")
    )
    token = claims(ok(run("user", "token", email, *args)))
    assert sorted(token["groups"]) == ["api-users", "developers"]
    assert token["sub"] == subject.strip()


def test_user_create_without_group_is_in_none(run: Run) -> None:
    ok(run("workspace", "create", "acme-corp"))
    ok(run("user", "create", "dev@acme-corp.test", "--workspace", "acme-corp"))
    token = claims(ok(run("user", "token", "dev@acme-corp.test", "--workspace", "acme-corp")))
    assert token["groups"] == []


def test_user_create_unknown_group_fails_and_creates_nothing(run: Run) -> None:
    ok(run("workspace", "create", "acme-corp"))
    email, args = "dev@acme-corp.test", ("--workspace", "acme-corp")
    result = run("user", "create", email, *args, "--group", "developers", "--group", "nope")
    assert_fails(result, "nope")
    assert_fails(run("user", "token", email, *args))
    ok(run("user", "create", email, *args, "--group", "developers"))


def test_user_token_is_one_jwt_line(run: Run) -> None:
    ok(run("workspace", "create", "acme-corp"))
    subject = ok(run("user", "create", "dev@acme-corp.test", "--workspace", "acme-corp"))
    result = run("user", "token", "dev@acme-corp.test", "--workspace", "acme-corp")
    token = claims(ok(result))
    # stdout is the JWT alone; stderr says which issuer it was signed for.
    assert result.stderr == (
        "centrali: signed for issuer http://127.0.0.1:8000 "
        "(the default: no server has recorded one)\n"
    )
    header = jwt.get_unverified_header(result.stdout.strip())
    assert header["alg"] == "RS256" and header["kid"]
    assert token["sub"] == subject.strip()
    assert token["isServiceAccount"] == "false"
    assert token["workspace"] == "acme-corp"
    assert token["groups"] == []
    assert token["exp"] - token["iat"] == 25200
    assert token["iss"] == token["aud"] == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("email", "workspace"),
    [("ghost@acme-corp.test", "acme-corp"), ("dev@globex.test", "acme-corp"), ("x@y.z", "nope")],
    ids=["unknown-user", "member-of-other-workspace", "unknown-workspace"],
)
def test_user_token_for_non_member_fails(run: Run, email: str, workspace: str) -> None:
    ok(run("workspace", "create", "acme-corp"))
    ok(run("workspace", "create", "globex"))
    ok(run("user", "create", "dev@globex.test", "--workspace", "globex"))
    assert_fails(run("user", "token", email, "--workspace", workspace))


def test_user_token_settings_flags_win_over_environment(run: Run) -> None:
    ok(run("workspace", "create", "acme-corp"))
    ok(run("user", "create", "dev@acme-corp.test", "--workspace", "acme-corp"))
    env = {"CENTRALI_TOKEN_TTL": "900", "CENTRALI_ISSUER": "https://env.example"}
    args = ("user", "token", "dev@acme-corp.test", "--workspace", "acme-corp")
    from_env = claims(ok(run(*args, env=env)))
    assert from_env["exp"] - from_env["iat"] == 900
    assert from_env["iss"] == from_env["aud"] == "https://env.example"
    flags = ("--token-ttl", "600", "--issuer", "https://flag.example", "--audience", "api")
    from_flags = claims(ok(run(*args, *flags, env=env)))
    assert from_flags["exp"] - from_flags["iat"] == 600
    assert (from_flags["iss"], from_flags["aud"]) == ("https://flag.example", "api")


def test_bootstrap_is_idempotent(run: Run) -> None:
    args = ("bootstrap", "--workspace", "acme-corp", "--admin", "admin@acme-corp.test")
    first, second = ok(run(*args)), ok(run(*args))
    assert "acme-corp" in first and "admin@acme-corp.test" in first
    assert first == second
    token = claims(ok(run("user", "token", "admin@acme-corp.test", "--workspace", "acme-corp")))
    assert token["groups"] == ["workspace-admins"]
    assert_fails(run("workspace", "create", "acme-corp"), "exists")


def test_bootstrap_makes_an_existing_member_admin(run: Run) -> None:
    ok(run("workspace", "create", "acme-corp"))
    email, ws = "lead@acme-corp.test", ("--workspace", "acme-corp")
    subject = ok(run("user", "create", email, *ws, "--group", "developers"))
    ok(run("bootstrap", *ws, "--admin", email))
    token = claims(ok(run("user", "token", email, *ws)))
    assert token["sub"] == subject.strip()
    assert sorted(token["groups"]) == ["developers", "workspace-admins"]


def test_bootstrap_with_bad_input_fails(run: Run) -> None:
    assert_fails(run("bootstrap", "--workspace", "Bad Slug", "--admin", "a@acme.test"), "slug")
    assert_fails(run("bootstrap", "--workspace", "acme-corp", "--admin", "nope"), "email")


def test_db_upgrade_migrates_an_empty_store(run: Run, db_url: str) -> None:
    first = ok(run("db", "upgrade"))
    assert re.fullmatch(r"schema at \S+\n", first), first
    assert ok(run("db", "upgrade")) == first  # idempotent
    engine = create_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert {"alembic_version", "workspaces"} <= tables
    assert first == f"schema at {revision}\n"
    assert ok(run("workspace", "create", "acme-corp")) == "acme-corp\n"


def test_audit_list_prints_json_lines_newest_first(run: Run, db_url: str, tmp_path: Path) -> None:
    ok(run("bootstrap", "--workspace", "acme-corp", "--admin", "admin@acme-corp.test"))
    assert ok(run("audit", "list", "--workspace", "acme-corp")) == ""
    user = ok(
        run("user", "token", "admin@acme-corp.test", "--workspace", "acme-corp", "--issuer", ISSUER)
    )
    admin = claims(user)["sub"]
    settings = Settings(database_url=db_url, data_dir=tmp_path, issuer=ISSUER)
    base = "/workspace/acme-corp/api/v1/service-accounts"
    headers = {"Authorization": f"Bearer {user.strip()}"}
    with TestClient(create_app(settings), base_url=ISSUER) as client:
        r = client.post(base, json={"name": "Audited"}, headers=headers)
        assert r.status_code == 201, r.text
        account = r.json()
        r = client.put(f"{base}/{account['id']}/name", json={"name": "Renamed"}, headers=headers)
        assert r.status_code == 200, r.text
        r = client.post(f"{base}/{account['id']}/rotate", headers=headers)
        assert r.status_code == 200, r.text
        new_secret = r.json()["clientSecret"]

    out = ok(run("audit", "list", "--workspace", "acme-corp"))
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["action"] for e in events] == [
        "service_account.rotated",
        "service_account.renamed",
        "service_account.created",
    ]
    for event in events:
        assert {"id", "action", "actor", "target", "createdAt"} <= event.keys()
        assert event["actor"] == admin
    assert account["clientSecret"] not in out and new_secret not in out
    assert user.strip() not in out

    page = ok(run("audit", "list", "--workspace", "acme-corp", "--limit", "1", "--page", "2"))
    assert [json.loads(line)["action"] for line in page.splitlines()] == ["service_account.renamed"]


def test_audit_list_unknown_workspace_fails_naming_the_store(run: Run, db_url: str) -> None:
    ok(run("workspace", "create", "acme-corp"))
    line = assert_fails(run("audit", "list", "--workspace", "nope"), "workspace")
    assert line == f"Error: Workspace not found in {db_url}"


@pytest.mark.parametrize(
    ("page", "limit"), [("0", "20"), ("1", "101"), ("x", "20")], ids=["page-0", "limit", "nan"]
)
def test_audit_list_bad_page_fails(run: Run, page: str, limit: str) -> None:
    ok(run("workspace", "create", "acme-corp"))
    result = run("audit", "list", "--workspace", "acme-corp", "--page", page, "--limit", limit)
    assert_fails(result)


@pytest.mark.parametrize(
    "flags",
    [("--token-ttl", "0"), ("--token-ttl", "99999999")],
    ids=["ttl-too-short", "ttl-too-long"],
)
def test_invalid_setting_flag_fails_before_touching_the_store(
    run: Run, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    result = run("workspace", "create", "acme-corp", *flags)
    assert_fails(result, "token_ttl", code=2)
    assert not (tmp_path / "c.db").exists()


def test_invalid_setting_in_environment_fails_with_one_line(run: Run, tmp_path: Path) -> None:
    result = run("workspace", "create", "acme-corp", env={"CENTRALI_TOKEN_TTL": "0"})
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "token_ttl" in lines[0].lower()
    assert not (tmp_path / "c.db").exists()


def test_token_ttl_takes_one_second_and_up(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, token_ttl=1).token_ttl == 1
    with pytest.raises(ValidationError, match="token_ttl"):
        Settings(data_dir=tmp_path, token_ttl=0)


@pytest.fixture
def serve_in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """``serve`` up to the server start: uvicorn.run records its call instead of serving."""
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(options))
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    # Port 8000 may be in use on this machine: the probe is tested on its own.
    monkeypatch.setattr("centrali.cli.serve.port_taken", lambda host, port: None)
    environ = dict(os.environ)  # serve hands its settings to the workers through it
    yield started
    os.environ.clear()
    os.environ.update(environ)


def other_warnings(result: Result) -> list[str]:
    """The start-up warnings but the master key's (these tests run without one)."""
    return [
        line
        for line in result.stderr.splitlines()
        if "WARNING" in line and "CENTRALI_MASTER_KEY is not set" not in line
    ]


@pytest.mark.parametrize(("ttl", "warned"), [("1", True), ("59", True), ("60", False)])
def test_serve_warns_once_when_tokens_live_under_a_minute(
    run: Run, serve_in_process: list[dict[str, Any]], ttl: str, warned: bool
) -> None:
    result = run("serve", "--token-ttl", ttl, env={"CENTRALI_SIGNING_ALG": "EdDSA"})
    ok(result)
    assert len(serve_in_process) == 1
    warnings = other_warnings(result)
    if warned:
        assert len(warnings) == 1, result.stderr
        assert f"CENTRALI_TOKEN_TTL is {ttl} s" in warnings[0]
        assert "testing expiry" in warnings[0]
    else:
        assert warnings == [], result.stderr


def test_unreachable_database_fails_with_one_line(run: Run) -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    result = run("workspace", "create", "acme-corp", "--database-url", url, store=False)
    assert_fails(result, "the store failed")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("nonsense://x", ("unsupported database 'nonsense'", "SQLite or PostgreSQL")),
        ("not a url", ("not a database URL",)),
        ("mysql://root@127.0.0.1/centrali", ("unsupported database 'mysql'",)),
        ("mysql+pymysql://root@127.0.0.1/centrali", ("unsupported database 'mysql+pymysql'",)),
        ("postgresql://127.0.0.1:5432/", ("no database name",)),
        ("postgresql+psycopg://u:secret@127.0.0.1", ("no database name", "***")),
        ("sqlite:////nonexistent/dir/x.db", ("no such directory", "/nonexistent/dir")),
    ],
    ids=["unknown", "unparsable", "mysql", "mysql-driver", "pg-no-db", "pg-no-db-pw", "sqlite-dir"],
)
def test_unusable_database_url_is_one_line_and_touches_nothing(
    run: Run, url: str, words: tuple[str, ...]
) -> None:
    for command in (
        ("workspace", "create", "acme-corp"),
        ("user", "token", "a@b.test", "--workspace", "acme-corp"),
    ):
        result = run(*command, "--database-url", url, store=False)
        line = assert_fails(result, "invalid setting database_url", *words, code=2)
        assert "secret" not in line
    assert not Path("/nonexistent").exists()


def test_unusable_data_dir_fails_with_one_line(run: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    data_dir = str(blocker / "data")
    result = run("workspace", "create", "acme-corp", "--data-dir", data_dir, store=False)
    assert_fails(result)


def test_data_dir_from_environment_holds_the_store(run: Run, tmp_path: Path) -> None:
    env = {"CENTRALI_DATA_DIR": str(tmp_path / "data")}
    assert ok(run("workspace", "create", "acme-corp", store=False, env=env)) == "acme-corp\n"
    assert (tmp_path / "data" / "centrali.db").is_file()
    assert_fails(run("workspace", "create", "acme-corp", store=False, env=env), "exists")
    # A different store does not see it.
    assert ok(run("workspace", "create", "acme-corp")) == "acme-corp\n"


def test_missing_required_option_is_a_usage_error(run: Run) -> None:
    assert_fails(run("user", "create", "dev@acme-corp.test"), "--workspace", code=2)


# --- behind a TLS proxy: the client's address, or one budget for everyone ---------------------


def test_serve_refuses_an_https_issuer_without_tls_or_forwarded_allow_ips(
    run: Run, serve_in_process: list[dict[str, Any]]
) -> None:
    """TLS ends at a proxy, whose address every request would carry: a hundred bad token
    requests a minute from anyone would shut every client out."""
    result = run("serve", "--issuer", "https://auth.example")
    line = assert_fails(result, "CENTRALI_FORWARDED_ALLOW_IPS", "CENTRALI_PROXY_CHECK", code=2)
    assert "https://auth.example" in line
    assert serve_in_process == []  # nothing started


@pytest.mark.parametrize(
    ("env", "forwarded"),
    [
        ({"CENTRALI_FORWARDED_ALLOW_IPS": "10.0.0.1"}, "10.0.0.1"),
        ({"CENTRALI_FORWARDED_ALLOW_IPS": "10.0.0.0/24,10.1.0.1"}, "10.0.0.0/24,10.1.0.1"),
        ({"CENTRALI_PROXY_CHECK": "false"}, None),  # the explicit opt-out
    ],
    ids=["proxy", "proxies", "opt-out"],
)
def test_serve_behind_a_tls_proxy_starts_with_its_address_or_the_opt_out(
    run: Run, serve_in_process: list[dict[str, Any]], env: dict[str, str], forwarded: str | None
) -> None:
    ok(run("serve", "--issuer", "https://auth.example", env=env))
    (options,) = serve_in_process
    assert options["proxy_headers"] is (forwarded is not None)
    assert options["forwarded_allow_ips"] == forwarded


def test_serve_opt_out_of_the_proxy_check_is_said_at_start(
    run: Run, serve_in_process: list[dict[str, Any]]
) -> None:
    result = run("serve", "--issuer", "https://auth.example", env={"CENTRALI_PROXY_CHECK": "0"})
    ok(result)
    warnings = other_warnings(result)
    assert len(warnings) == 1 and "CENTRALI_FORWARDED_ALLOW_IPS" in warnings[0], result.stderr


@pytest.mark.parametrize(
    "values",
    [
        {"issuer": "http://auth.example"},  # no proxy with TLS in front
        {"issuer": ""},  # the default issuer, http://127.0.0.1:<port>
        {"issuer": "https://auth.example", "ssl_certfile": "cert.pem"},  # TLS here
        {"issuer": "https://auth.example", "forwarded_allow_ips": "127.0.0.1"},
    ],
    ids=["http", "default", "tls", "forwarded"],
)
def test_the_proxy_check_passes_everything_else(values: dict[str, Any], tmp_path: Path) -> None:
    from centrali.cli.serve import proxy_address_refusal

    defaults: dict[str, Any] = {"ssl_certfile": "", "forwarded_allow_ips": ""}  # not the shell's
    settings = Settings(data_dir=tmp_path, **{**defaults, **values})
    assert proxy_address_refusal(settings) is None


# --- private keys at rest: the store's files, the master key -----------------------------------


@pytest.mark.parametrize(
    ("master_key", "warned"),
    [("", True), (base64.b64encode(bytes(range(32))).decode(), False)],
    ids=["no-master-key", "master-key"],
)
def test_serve_warns_once_without_a_master_key(
    run: Run, serve_in_process: list[dict[str, Any]], master_key: str, warned: bool
) -> None:
    env = {"CENTRALI_SIGNING_ALG": "EdDSA"}
    if master_key:
        env["CENTRALI_MASTER_KEY"] = master_key
    result = run("serve", env=env)
    ok(result)
    assert len(serve_in_process) == 1
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    if warned:
        assert len(warnings) == 1, result.stderr
        assert warnings[0].startswith("centrali: WARNING: CENTRALI_MASTER_KEY is not set")
        assert "centrali keys encrypt" in warnings[0]
    else:
        assert warnings == [], result.stderr


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most hosts run with (0022: files 0644, directories 0755 unless told)."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.usefixtures("usual_umask")
def test_a_new_sqlite_store_is_for_the_servers_user_only(run: Run, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"CENTRALI_DATA_DIR": str(data), "CENTRALI_SIGNING_ALG": "EdDSA"}
    ok(run("workspace", "create", "acme-corp", store=False, env=env))
    database = data / "centrali.db"
    assert file_mode(data) == 0o700
    assert file_mode(database) == 0o600
    # A server writing: SQLite's -wal and -shm files (there while a connection is open).
    db = Database(Settings(data_dir=data).database_url)
    try:
        with db.write() as session:
            session.add(ServerSetting(name="test-write", value="x"))
        for suffix in ("-wal", "-shm"):
            assert file_mode(Path(f"{database}{suffix}")) == 0o600, suffix
    finally:
        db.dispose()


@pytest.mark.usefixtures("usual_umask")
def test_a_store_made_readable_before_loses_group_and_other_access(
    run: Run, tmp_path: Path
) -> None:
    """Stores made before this fix are 0644: the next start takes that away. The directory,
    maybe the operator's, keeps its mode (nothing in it is readable through it)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    env = {"CENTRALI_DATA_DIR": str(data), "CENTRALI_SIGNING_ALG": "EdDSA"}
    ok(run("workspace", "create", "acme-corp", store=False, env=env))
    database = data / "centrali.db"
    os.chmod(database, 0o644)
    ok(run("workspace", "create", "globex", store=False, env=env))
    assert file_mode(database) == 0o600
    assert file_mode(data) == 0o755
