"""``centrali user token``'s quick path (cli.fast_token): on a SQLite store it reads with the
standard library's sqlite3, never imports SQLAlchemy, and mints the very token the full path
(the services) mints; anything unusual goes to the full path."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from centrali.cli import fast_token
from centrali.cli.base import open_store
from centrali.config import Settings
from centrali.services import keys as keys_svc
from centrali.services import users as users_svc
from centrali.services.issuer import token_issuer
from centrali.store.db import Database
from tests.cli.test_cli import Run, ok
from tests.cli.test_cli import db_url as db_url
from tests.cli.test_cli import run as run

ADMIN = "admin@acme-corp.test"
MASTER = base64.b64encode(bytes(range(32))).decode()


def full_path(settings: Settings, email: str, slug: str, now: float) -> tuple[str, str, str, str]:
    db = Database(settings.database_url)
    try:
        policy = keys_svc.KeyPolicy.from_settings(settings)
        keys = keys_svc.load_key_set(db, settings.signing_alg, policy, now=now)
        member = users_svc.get_member(db, email=email, workspace_slug=slug)
        issuer, audience, source = token_issuer(db, settings)
    finally:
        db.dispose()
    issued = users_svc.issue_user_token(
        member, keys=keys, issuer=issuer, audience=audience, ttl=settings.token_ttl, now=now
    )
    return issued.token, issuer, audience, source


def same_token(quick: str, full: str) -> None:
    assert jwt.get_unverified_header(quick) == jwt.get_unverified_header(full)
    a = jwt.decode(quick, options={"verify_signature": False})
    b = jwt.decode(full, options={"verify_signature": False})
    assert a.pop("jti") != b.pop("jti")
    assert a == b


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"CENTRALI_SIGNING_ALG": "EdDSA", "CENTRALI_MASTER_KEY": MASTER},
        {"CENTRALI_SIGNING_ALG": "ES256", "CENTRALI_ISSUER": "http://auth.example"},
    ],
    ids=["rs256", "eddsa-encrypted", "es256-issuer"],
)
def test_the_quick_path_mints_the_full_paths_token(
    run: Run, db_url: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(run("bootstrap", "--workspace", "acme-corp", "--admin", ADMIN, env=env))
    ok(
        run(
            "user",
            "create",
            "dev@acme-corp.test",
            "--workspace",
            "acme-corp",
            "--group",
            "developers",
            "--group",
            "api-users",
            env=env,
        )
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(database_url=db_url)
    if "CENTRALI_ISSUER" not in env:
        from centrali.services.issuer import publish_issuer

        db = open_store(Settings(database_url=db_url, port=8123))
        publish_issuer(db, Settings(database_url=db_url, port=8123))
        db.dispose()
    ok(run("keys", "rotate", "--lead-time", "0", env=env))  # two keys, the newer signs
    now = time.time()
    for email in (ADMIN, "DEV@acme-corp.test"):
        minted = fast_token.mint(settings, email, "acme-corp", now)
        assert minted is not None
        token, issuer, audience, source = full_path(settings, email, "acme-corp", now)
        same_token(minted.token, token)
        assert (minted.issuer, minted.audience, minted.source) == (issuer, audience, source)


@pytest.mark.parametrize(
    ("email", "slug"),
    [("ghost@acme-corp.test", "acme-corp"), (ADMIN, "globex"), ("not an email", "acme-corp")],
    ids=["unknown-user", "unknown-workspace", "bad-email"],
)
def test_anything_unusual_takes_the_full_path(run: Run, db_url: str, email: str, slug: str) -> None:
    ok(run("bootstrap", "--workspace", "acme-corp", "--admin", ADMIN))
    assert fast_token.mint(Settings(database_url=db_url), email, slug, time.time()) is None


def test_another_schema_or_algorithm_takes_the_full_path(
    run: Run, db_url: str, tmp_path: Path
) -> None:
    ok(run("bootstrap", "--workspace", "acme-corp", "--admin", ADMIN))
    settings = Settings(database_url=db_url)
    assert fast_token.mint(settings, ADMIN, "acme-corp", time.time()) is not None
    other_alg = Settings(database_url=db_url, signing_alg="EdDSA")
    assert fast_token.mint(other_alg, ADMIN, "acme-corp", time.time()) is None
    db = Database(db_url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    db.dispose()
    assert fast_token.mint(settings, ADMIN, "acme-corp", time.time()) is None
    for url in ("postgresql://u@127.0.0.1:1/x", f"sqlite:///{tmp_path}/none.db", "sqlite://"):
        assert fast_token.mint(Settings(database_url=url), ADMIN, "acme-corp", time.time()) is None


def test_constants_agree_with_the_services() -> None:
    assert fast_token.CLI_CLIENT_ID == users_svc.CLI_CLIENT_ID
    assert fast_token.CLOCK_SKEW_SECONDS == keys_svc.CLOCK_SKEW_SECONDS


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:////abs/dir/x.db", "/abs/dir/x.db"),
        ("sqlite+pysqlite:////abs/x.db", "/abs/x.db"),
        ("sqlite:///rel/x.db", "rel/x.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:////abs/x.db?mode=ro", None),
        ("postgresql://h/db", None),
    ],
)
def test_sqlite_path(url: str, path: str | None) -> None:
    assert fast_token.sqlite_path(url) == (None if path is None else Path(path).resolve())


def test_user_token_on_sqlite_loads_no_sqlalchemy(run: Run, db_url: str) -> None:
    ok(run("bootstrap", "--workspace", "acme-corp", "--admin", ADMIN))
    script = (
        "import json, sys\n"
        "from centrali.cli import cli\n"
        "try:\n"
        "    cli.main(sys.argv[1:], prog_name='centrali', standalone_mode=False)\n"
        "finally:\n"
        "    print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "        ('sqlalchemy', 'alembic', 'fastapi', 'uvicorn', 'httpx', 'argon2'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CENTRALI_")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "user",
            "token",
            ADMIN,
            "--workspace",
            "acme-corp",
            "--database-url",
            db_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    token, loaded = result.stdout.splitlines()
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    assert claims["groups"] == ["workspace-admins"]
    assert json.loads(loaded) == []
    assert "signed for issuer" in result.stderr
