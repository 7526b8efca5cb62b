"""``centrali audit list`` filters and ``centrali audit failures``, through click's CliRunner,
each test with its own SQLite store."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from centrali.cli import cli
from centrali.services import audit
from centrali.services import service_accounts as accounts
from centrali.services.context import Actor
from centrali.services.token_failures import TokenFailureCounter
from centrali.services.workspaces import require_workspace
from centrali.store.db import Database

Run = Callable[..., Result]
T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/c.db"


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """``run("audit", "list", ...)`` against this test's store."""
    for name in list(os.environ):
        if name.startswith("CENTRALI_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def _run(*args: str) -> Result:
        result = runner.invoke(cli, [*args, "--database-url", db_url])
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
        return result

    yield _run


@pytest.fixture
def db(run: Run, db_url: str) -> Iterator[Database]:
    """The store, migrated, with workspaces acme-corp and globex."""
    ok(run("workspace", "create", "acme-corp"))
    ok(run("workspace", "create", "globex"))
    database = Database(db_url)
    yield database
    database.dispose()


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(result: Result, *words: str) -> str:
    """Exit 1, nothing on stdout, one line on stderr holding ``words``."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


SEEDED = [
    ("service_account.created", "alice", "ci_a", at(0)),
    ("service_account.renamed", "alice", "ci_a", at(1)),
    ("service_account.created", "bob", "ci_b", at(2)),
    ("service_account.rotated", "bob", "ci_a", at(3)),
]


def seed(db: Database, workspace: str = "acme-corp") -> None:
    for action, actor, target, when in SEEDED:
        with db.write() as session:
            audit.record(
                session,
                workspace_id=require_workspace(session, workspace).id,
                action=action,
                actor=Actor(actor, None, when),
                target=target,
            )


def actions(out: str) -> list[tuple[str, str, str]]:
    return [(e["action"], e["actor"], e["target"]) for e in lines(out)]


def test_list_filters(run: Run, db: Database) -> None:
    seed(db)
    seed(db, "globex")
    base = ("audit", "list", "--workspace", "acme-corp")
    assert len(lines(ok(run(*base)))) == 4
    assert actions(ok(run(*base, "--action", "service_account.created"))) == [
        ("service_account.created", "bob", "ci_b"),
        ("service_account.created", "alice", "ci_a"),
    ]
    assert [e[0] for e in actions(ok(run(*base, "--actor", "alice")))] == [
        "service_account.renamed",
        "service_account.created",
    ]
    assert [e[1] for e in actions(ok(run(*base, "--target", "ci_a")))] == ["bob", "alice", "alice"]
    since_until = ok(run(*base, "--since", "2026-03-01T10:01:00Z", "--until", "2026-03-01T10:03Z"))
    assert [e[0] for e in actions(since_until)] == [
        "service_account.created",
        "service_account.renamed",
    ]
    combined = ok(
        run(*base, "--actor", "bob", "--target", "ci_a", "--since", "2026-03-01T11:00+01:00")
    )
    assert actions(combined) == [("service_account.rotated", "bob", "ci_a")]
    assert ok(run(*base, "--action", "nothing")) == ""


def test_list_json_prints_one_page_object(run: Run, db: Database) -> None:
    seed(db)
    out = ok(run("audit", "list", "--workspace", "acme-corp", "--json", "--limit", "3"))
    assert out.count("\n") == 1
    body = json.loads(out)
    assert (body["page"], body["limit"], body["total"]) == (1, 3, 4)
    assert [e["action"] for e in body["data"]] == [
        "service_account.rotated",
        "service_account.created",
        "service_account.renamed",
    ]
    assert all(type(e["id"]) is int for e in body["data"])
    empty = json.loads(ok(run("audit", "list", "--workspace", "globex", "--json")))
    assert empty == {"data": [], "page": 1, "limit": 20, "total": 0}


@pytest.mark.parametrize(
    ("flags", "word"),
    [
        (("--since", "2026-03-01T10:00:00"), "since"),
        (("--until", "2026-03-01"), "until"),
        (("--since", "soon"), "since"),
        (("--since", "2026-03-02T00:00Z", "--until", "2026-03-01T00:00Z"), "until"),
        (("--action", ""), "action"),
        (("--actor", "a\x01b"), "actor"),
        (("--target", "t" * 129), "target"),
        (("--page", "0"), "page"),
    ],
    ids=["naive", "date", "garbage", "reversed", "empty", "control", "long", "page"],
)
def test_list_bad_filter_fails_in_one_line(
    run: Run, db: Database, flags: tuple[str, ...], word: str
) -> None:
    fails(run("audit", "list", "--workspace", "acme-corp", *flags), word)


def test_failures(run: Run, db: Database) -> None:
    actor = Actor("cli:test")
    acme = accounts.create(db, workspace_slug="acme-corp", actor=actor, name="a").client_id
    globex = accounts.create(db, workspace_slug="globex", actor=actor, name="g").client_id
    clock = [at(5)]
    counter = TokenFailureCounter(clock=lambda: clock[0].timestamp())
    counter.record(acme, "wrong_secret")
    counter.record(acme, "wrong_secret")
    counter.record(globex, "revoked")
    counter.record("ci_" + "n" * 20, "unknown_client")
    clock[0] = at(65)
    counter.record(acme, "rate_limited")
    assert counter.flush(db, at(66)) == 5

    everything = lines(ok(run("audit", "failures")))
    assert [(r["clientId"], r["reason"], r["count"], r["workspace"]) for r in everything] == [
        (acme, "rate_limited", 1, "acme-corp"),
        *sorted(
            [
                (acme, "wrong_secret", 2, "acme-corp"),
                (globex, "revoked", 1, "globex"),
                ("unknown", "unknown_client", 1, None),
            ]
        ),
    ]
    assert everything[0] == {
        "clientId": acme,
        "reason": "rate_limited",
        "windowStart": "2026-03-01T11:00:00Z",
        "count": 1,
        "lastSeenAt": "2026-03-01T11:05:00Z",
        "workspace": "acme-corp",
    }
    acme_only = lines(ok(run("audit", "failures", "--workspace", "acme-corp")))
    assert {(r["clientId"], r["reason"]) for r in acme_only} == {
        (acme, "rate_limited"),
        (acme, "wrong_secret"),
    }
    unknown = lines(ok(run("audit", "failures", "--client-id", "unknown")))
    assert [(r["clientId"], r["count"]) for r in unknown] == [("unknown", 1)]
    earlier = lines(ok(run("audit", "failures", "--until", "2026-03-01T11:00:00Z")))
    assert len(earlier) == 3
    page = json.loads(ok(run("audit", "failures", "--json", "--limit", "1", "--page", "2")))
    assert (len(page["data"]), page["total"]) == (1, 4)


def test_failures_of_an_unknown_workspace_fail(run: Run, db: Database) -> None:
    fails(run("audit", "failures", "--workspace", "nope"), "workspace")
    fails(run("audit", "failures", "--since", "yesterday"), "since")
    assert ok(run("audit", "failures")) == ""
