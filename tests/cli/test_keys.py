"""``centrali keys list|rotate|retire|encrypt`` through click's CliRunner, each test its own
store. Failures are one line on stderr: exit 1, or 2 for a bad or missing master key."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import select

from centrali.cli import cli
from centrali.cli.base import open_store
from centrali.config import Settings
from centrali.oauth.keys import SUPPORTED_ALGS, load_signing_key
from centrali.oauth.keywrap import MasterKeyError
from centrali.services import keys as svc_keys
from centrali.services.ticket_key import SETTING as TICKET_SETTING
from centrali.services.ticket_key import load_ticket_key
from centrali.store.db import Database
from centrali.store.tables import ServerSetting, SigningKeyRow
from tests.cli.test_cli import Run, assert_fails, ok

MASTER = base64.b64encode(bytes(range(32))).decode()
OTHER_MASTER = base64.b64encode(bytes(range(1, 33))).decode()
KID = re.compile(r"^[A-Za-z0-9_-]{43}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/k.db"


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """``run("keys", "list")`` against this test's store; Ed25519 keys (fast to make) unless
    ``CENTRALI_SIGNING_ALG`` is given in ``env``."""
    for name in list(os.environ):
        if name.startswith("CENTRALI_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    served: list[bool] = []

    def _run(*args: str, env: dict[str, str] | None = None) -> Result:
        env = {"CENTRALI_SIGNING_ALG": "EdDSA", **(env or {})}
        if not served:
            # `keys list` only reads: the store is made first, as `centrali serve` makes it.
            served.append(True)
            settings = Settings(
                database_url=db_url,
                signing_alg=env["CENTRALI_SIGNING_ALG"],
                master_key=env.get("CENTRALI_MASTER_KEY", ""),
            )
            open_store(settings).dispose()
        result = runner.invoke(cli, [*args, "--database-url", db_url], env=env)
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
        return result

    yield _run


@pytest.fixture
def store(db_url: str) -> Iterator[Database]:
    db = Database(db_url)
    yield db
    db.dispose()


def listed(run: Run, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(run("keys", "list", "--json", env=env)).splitlines()]


def stored_keys(store: Database) -> dict[str, str]:
    with store.read() as session:
        return {r.kid: r.private_pem for r in session.scalars(select(SigningKeyRow))}


def age_keys(store: Database, by: timedelta) -> None:
    """Move every key's times into the past, as if ``by`` had gone by since."""
    with store.write() as session:
        for row in session.scalars(select(SigningKeyRow)):
            row.created_at -= by
            if row.activates_at is not None:
                row.activates_at -= by


def rotate(run: Run, *args: str, env: dict[str, str] | None = None) -> str:
    out = ok(run("keys", "rotate", *args, env=env))
    assert out.count("\n") == 1 and KID.match(out.strip()), out
    return out.strip()


def test_list_shows_the_first_key_active(run: Run) -> None:
    lines = ok(run("keys", "list")).splitlines()
    assert len(lines) == 1
    kid, alg, generation, state, created, activates, retire_after, at_rest = lines[0].split("\t")
    assert KID.match(kid) and ISO.match(created)
    assert (alg, generation, state, activates, retire_after, at_rest) == (
        "EdDSA",
        "1",
        "active",
        "-",
        "-",
        "plaintext",
    )
    (shown,) = listed(run)
    assert shown["kid"] == kid and shown["state"] == "active" and shown["activatesAt"] is None


def test_rotate_prints_the_new_kid_published_but_pending(run: Run) -> None:
    (first,) = listed(run)
    result = run("keys", "rotate", "--lead-time", "600")
    new = ok(result).strip()
    assert KID.match(new) and new != first["kid"]
    assert f"key {new} published now, signs from 20" in result.stderr
    assert "warning" not in result.stderr
    pending, active = listed(run)
    assert (pending["kid"], pending["state"], pending["generation"]) == (new, "pending", 2)
    assert (active["kid"], active["state"], active["retireAfter"]) == (first["kid"], "active", None)
    lead = datetime.fromisoformat(pending["activatesAt"]) - datetime.fromisoformat(
        pending["createdAt"]
    )
    assert abs(lead - timedelta(seconds=600)) <= timedelta(seconds=1)


def test_lead_time_defaults_to_the_setting(run: Run) -> None:
    rotate(run, env={"CENTRALI_KEY_LEAD_TIME": "3600"})
    pending, _ = listed(run)
    lead = datetime.fromisoformat(pending["activatesAt"]) - datetime.fromisoformat(
        pending["createdAt"]
    )
    assert abs(lead - timedelta(hours=1)) <= timedelta(seconds=1)


def test_rotate_warns_when_caches_may_outlast_the_lead_time(run: Run) -> None:
    result = run("keys", "rotate", "--lead-time", "60")
    assert result.exit_code == 0 and "warning: a lead time under 310 s" in result.stderr


def test_immediate_rotation_supersedes_the_old_key_until_its_tokens_expire(run: Run) -> None:
    (first,) = listed(run)
    new = rotate(run, "--lead-time", "0")
    active, superseded = listed(run)
    assert (active["kid"], active["state"]) == (new, "active")
    assert (superseded["kid"], superseded["state"]) == (first["kid"], "superseded")
    keep = datetime.fromisoformat(superseded["retireAfter"]) - datetime.fromisoformat(
        active["createdAt"]
    )
    # The token lifetime (25200 s), one reread interval (10 s) and clock skew (60 s).
    assert abs(keep - timedelta(seconds=25270)) <= timedelta(seconds=1)


def test_rotating_in_another_algorithm_signs_at_once(run: Run) -> None:
    new = rotate(run, "--alg", "ES256", "--lead-time", "600")
    shown = {k["kid"]: k for k in listed(run)}
    assert (shown[new]["alg"], shown[new]["state"], shown[new]["activatesAt"]) == (
        "ES256",
        "active",
        None,
    )


@pytest.mark.parametrize(
    "args",
    [("--lead-time", "-1"), ("--lead-time", "soon"), ("--alg", "HS256")],
    ids=["negative-lead", "word-lead", "unknown-alg"],
)
def test_rotate_with_bad_options_is_a_usage_error(run: Run, args: tuple[str, ...]) -> None:
    assert_fails(run("keys", "rotate", *args), code=2)
    assert len(listed(run)) == 1


def test_retire_refuses_the_signing_key_and_a_key_with_live_tokens(run: Run) -> None:
    (first,) = listed(run)
    new = rotate(run, "--lead-time", "0")
    assert_fails(run("keys", "retire", new), "active", "rotate first")
    assert_fails(run("keys", "retire", new, "--force"), "active EdDSA key")
    assert_fails(run("keys", "retire", first["kid"]), "valid until", "--force")
    assert_fails(run("keys", "retire", "no-such-kid"), "no signing key no-such-kid")
    assert [k["state"] for k in listed(run)] == ["active", "superseded"]

    assert ok(run("keys", "retire", first["kid"], "--force")) == f"{first['kid']}\n"
    assert [k["state"] for k in listed(run)] == ["active", "retired"]


def ed25519_pem_with_kid_prefix(prefix: str) -> tuple[str, str]:
    """The first Ed25519 key (seeds 0, 1, …) whose kid starts with ``prefix``, and that kid."""
    for n in range(1_000_000):
        key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(str(n).encode()).digest())
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
        kid = load_signing_key(pem, "EdDSA").kid
        if kid.startswith(prefix):
            return pem, kid
    raise AssertionError(f"no seed gives a kid starting with {prefix!r}")


@pytest.mark.parametrize("prefix", ["-", "--"], ids=["dash", "double-dash"])
def test_a_kid_starting_with_a_dash_is_an_argument_not_an_option(
    run: Run, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    pem, kid = ed25519_pem_with_kid_prefix(prefix)
    listed(run)  # the store's first key
    monkeypatch.setattr(svc_keys, "generate_private_key_pem", lambda alg: pem)
    assert rotate(run, "--lead-time", "0") == kid
    assert_fails(run("keys", "retire", kid), "active", "rotate first")
    monkeypatch.undo()

    rotate(run, "--lead-time", "0")
    assert ok(run("keys", "retire", kid, "--force")) == f"{kid}\n"
    assert ok(run("keys", "retire", "--force", kid)) == f"{kid}\n"  # retired already: the same
    assert [k["state"] for k in listed(run) if k["kid"] == kid] == ["retired"]


def test_retire_cancels_a_pending_rotation(run: Run) -> None:
    pending = rotate(run, "--lead-time", "600")
    assert ok(run("keys", "retire", pending)) == f"{pending}\n"
    assert [k["state"] for k in listed(run)] == ["retired", "active"]


def test_retire_without_kid_takes_only_keys_past_their_last_token(
    run: Run, store: Database
) -> None:
    (first,) = listed(run)
    rotate(run, "--lead-time", "0")
    assert ok(run("keys", "retire")) == ""
    age_keys(store, timedelta(hours=7, minutes=1))  # less than 25200 + 70 s ago
    assert ok(run("keys", "retire")) == ""
    age_keys(store, timedelta(seconds=20))
    assert ok(run("keys", "retire")) == f"{first['kid']}\n"
    assert ok(run("keys", "retire")) == ""
    assert [k["state"] for k in listed(run)] == ["active", "retired"]


def test_a_master_key_encrypts_new_keys_and_they_still_sign(run: Run, store: Database) -> None:
    env = {"CENTRALI_MASTER_KEY": MASTER}
    (shown,) = listed(run, env)
    assert shown["encrypted"] is True
    (pem,) = stored_keys(store).values()
    assert pem.startswith("enc:v1:") and "PRIVATE KEY" not in pem

    ok(run("bootstrap", "--workspace", "acme-corp", "--admin", "a@acme.test", env=env))
    result = run("user", "token", "a@acme.test", "--workspace", "acme-corp", env=env)
    token = ok(result).strip()
    assert jwt.get_unverified_header(token)["kid"] == shown["kid"]
    with store.read() as session:
        jwk = session.scalars(select(SigningKeyRow.public_jwk)).one()
    key = jwt.PyJWK.from_dict(jwk).key
    assert jwt.decode(token, key, algorithms=["EdDSA"], options={"verify_aud": False})
    assert MASTER not in result.output


@pytest.mark.parametrize(
    ("master_key", "words"),
    [
        (None, ("is encrypted", "set CENTRALI_MASTER_KEY")),
        (OTHER_MASTER, ("does not decrypt",)),
        ("bm90IDMyIGJ5dGVz", ("base64 of exactly 32",)),
        ("not base64!", ("base64 of exactly 32",)),
    ],
    ids=["missing", "wrong", "short", "not-base64"],
)
def test_a_bad_master_key_is_one_line_and_exit_2(
    run: Run, master_key: str | None, words: tuple[str, ...]
) -> None:
    listed(run, {"CENTRALI_MASTER_KEY": MASTER})  # the store's key, encrypted
    env = {} if master_key is None else {"CENTRALI_MASTER_KEY": master_key}
    for command in (("keys", "list"), ("user", "token", "a@b.test", "--workspace", "acme")):
        line = assert_fails(run(*command, env=env), *words, code=2)
        assert MASTER not in line and (master_key is None or master_key not in line)


def test_encrypt_rewrites_every_plaintext_key(run: Run, store: Database) -> None:
    rotate(run, "--lead-time", "0")
    before = stored_keys(store)
    assert all("PRIVATE KEY" in pem for pem in before.values())
    assert_fails(run("keys", "encrypt"), "set CENTRALI_MASTER_KEY", code=2)

    env = {"CENTRALI_MASTER_KEY": MASTER}
    assert sorted(ok(run("keys", "encrypt", env=env)).split()) == sorted(before)
    after = stored_keys(store)
    assert all(pem.startswith("enc:v1:") and "PRIVATE KEY" not in pem for pem in after.values())
    assert ok(run("keys", "encrypt", env=env)) == ""
    assert [k["encrypted"] for k in listed(run, env)] == [True, True]
    assert_fails(run("keys", "list"), "is encrypted", code=2)


def test_encrypt_encrypts_the_login_ticket_key_too(run: Run, store: Database) -> None:
    listed(run)  # the store, with its ticket key in clear (no master key)

    def stored() -> str:
        with store.read() as session:
            row = session.get(ServerSetting, TICKET_SETTING)
            assert row is not None
            return row.value

    before = load_ticket_key(store, None)
    assert not stored().startswith("enc:v1:")
    env = {"CENTRALI_MASTER_KEY": MASTER}
    ok(run("keys", "encrypt", env=env))
    assert stored().startswith("enc:v1:")
    assert load_ticket_key(store, base64.b64decode(MASTER)) == before  # the same key
    with pytest.raises(MasterKeyError):
        load_ticket_key(store, None)
    ok(run("keys", "encrypt", env=env))  # nothing left to encrypt: unchanged
    assert load_ticket_key(store, base64.b64decode(MASTER)) == before


def test_every_algorithm_can_be_rotated_in(run: Run) -> None:
    for alg in SUPPORTED_ALGS:
        rotate(run, "--alg", alg, "--lead-time", "0")
    assert sorted({k["alg"] for k in listed(run) if k["state"] == "active"}) == sorted(
        SUPPORTED_ALGS
    )
