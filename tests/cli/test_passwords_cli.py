"""Passwords and public clients from the admin CLI: ``user create --password-stdin``,
``user set-password``, ``bootstrap --password-stdin``, ``client create-public``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from centrali.cli import cli
from centrali.services.oidc import OidcStore
from centrali.services.users import check_password
from centrali.store.db import Database
from centrali.store.tables import User

Run = Callable[..., Result]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/c.db"


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    for name in list(os.environ):
        if name.startswith("CENTRALI_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def _run(*args: str, stdin: str | None = None) -> Result:
        result = runner.invoke(cli, [*args, "--database-url", db_url], input=stdin)
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
        return result

    yield _run


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(result: Result, *words: str, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if code == 2:
        lines = [line for line in lines if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture
def workspace(run: Run) -> str:
    ok(run("workspace", "create", "acme"))
    return "acme"


def test_user_create_with_a_password_from_stdin(run: Run, workspace: str, db: Database) -> None:
    out = ok(
        run(
            "user",
            "create",
            "ada@acme.test",
            "--workspace",
            workspace,
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
    )
    signed_in = check_password(db, email="ada@acme.test", password=PASSWORD)
    assert signed_in is not None
    assert signed_in.subject == out.strip()
    assert check_password(db, email="ada@acme.test", password=PASSWORD + "\n") is None
    with db.read() as session:
        stored = session.query(User).one().password_hash
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_windows_line_ending_is_not_part_of_the_password(
    run: Run, workspace: str, db: Database
) -> None:
    ok(
        run(
            "user",
            "create",
            "ada@acme.test",
            "--workspace",
            workspace,
            "--password-stdin",
            stdin=PASSWORD + "\r\n",
        )
    )
    assert check_password(db, email="ada@acme.test", password=PASSWORD) is not None


def test_user_create_without_a_password_cannot_sign_in(
    run: Run, workspace: str, db: Database
) -> None:
    ok(run("user", "create", "ada@acme.test", "--workspace", workspace))
    assert check_password(db, email="ada@acme.test", password="") is None
    assert check_password(db, email="ada@acme.test", password=PASSWORD) is None


@pytest.mark.parametrize(
    ("stdin", "code", "words"),
    [
        ("", 2, ["password"]),
        ("\n", 2, ["password"]),
        ("two\nlines\n", 2, ["one line"]),
        ("short\n", 1, ["at least 8"]),
        ("x" * 1025, 1, ["at most 1024"]),
        ("        \n", 1, ["at least 8"]),
    ],
    ids=["empty", "blank-line", "two-lines", "short", "long", "whitespace"],
)
def test_unusable_passwords_are_refused(
    run: Run, workspace: str, db: Database, stdin: str, code: int, words: list[str]
) -> None:
    result = run(
        "user",
        "create",
        "ada@acme.test",
        "--workspace",
        workspace,
        "--password-stdin",
        stdin=stdin,
    )
    fails(result, *words, code=code)
    with db.read() as session:
        assert session.query(User).count() == 0


def test_set_password(run: Run, workspace: str, db: Database) -> None:
    subject = ok(run("user", "create", "ada@acme.test", "--workspace", workspace)).strip()
    out = ok(run("user", "set-password", "ADA@acme.test", "--password-stdin", stdin=PASSWORD))
    assert out.strip() == subject
    assert check_password(db, email="ada@acme.test", password=PASSWORD) is not None
    ok(run("user", "set-password", "ada@acme.test", "--password-stdin", stdin="new password!\n"))
    assert check_password(db, email="ada@acme.test", password=PASSWORD) is None
    assert check_password(db, email="ada@acme.test", password="new password!") is not None


def test_set_password_refusals(run: Run, workspace: str) -> None:
    fails(
        run("user", "set-password", "nobody@acme.test", "--password-stdin", stdin=PASSWORD),
        "not found",
    )
    fails(
        run("user", "set-password", "not-an-email", "--password-stdin", stdin=PASSWORD),
        "malformed email",
    )
    fails(run("user", "set-password", "ada@acme.test", stdin=PASSWORD), "password-stdin", code=2)


def test_bootstrap_with_a_password_is_idempotent(run: Run, db: Database) -> None:
    args = ("bootstrap", "--workspace", "acme", "--admin", "root@acme.test", "--password-stdin")
    ok(run(*args, stdin=PASSWORD))
    assert check_password(db, email="root@acme.test", password=PASSWORD) is not None
    ok(run(*args, stdin="a second password"))
    assert check_password(db, email="root@acme.test", password="a second password") is not None
    ok(run("bootstrap", "--workspace", "acme", "--admin", "root@acme.test"))
    assert check_password(db, email="root@acme.test", password="a second password") is not None


def test_client_create_public(run: Run, db: Database) -> None:
    out = ok(
        run(
            "client",
            "create-public",
            "cli-tool",
            "--redirect-uri",
            "http://127.0.0.1:8765/callback",
            "--redirect-uri",
            "com.example.tool:/cb",
            "--post-logout-redirect-uri",
            "http://127.0.0.1:8765/bye",
            "--name",
            "The tool",
        )
    )
    assert out == "cli-tool\n"
    client = OidcStore(db, "http://testserver").find_public_client("cli-tool")
    assert client is not None
    assert client.redirect_uris == ("http://127.0.0.1:8765/callback", "com.example.tool:/cb")
    assert client.post_logout_redirect_uris == ("http://127.0.0.1:8765/bye",)
    assert client.name == "The tool"
    fails(
        run("client", "create-public", "cli-tool", "--redirect-uri", "https://x.example/cb"),
        "already exists",
    )


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["centrali-console", "--redirect-uri", "https://x.example/cb"], 1, ["built in"]),
        (["ci_abc", "--redirect-uri", "https://x.example/cb"], 1, ["client id"]),
        (["bad id", "--redirect-uri", "https://x.example/cb"], 1, ["client id"]),
        (["tool", "--redirect-uri", "http://x.example/cb"], 1, ["loopback"]),
        (["tool", "--redirect-uri", "https://x.example/cb#f"], 1, ["fragment"]),
        (["tool", "--redirect-uri", "javascript:alert(1)"], 1, ["redirect uri"]),
        (
            [
                "tool",
                "--redirect-uri",
                "https://x.example/cb",
                "--post-logout-redirect-uri",
                "http://x.example/",
            ],
            1,
            ["loopback"],
        ),
        (["tool"], 2, ["redirect-uri"]),
    ],
    ids=[
        "console",
        "sa-prefix",
        "space",
        "http-remote",
        "fragment",
        "javascript",
        "post-logout",
        "no-redirect",
    ],
)
def test_client_create_public_refusals(
    run: Run, args: list[str], code: int, words: list[str]
) -> None:
    fails(run("client", "create-public", *args), *words, code=code)
