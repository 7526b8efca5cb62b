"""``centrali keys``: list, rotate, retire and encrypt the signing keys.

Keys are shared by every workspace, so these commands write no workspace audit row; each
change is logged (logger ``centrali.keys``) and reported on stderr.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from centrali.cli.base import open_existing_store, open_store, with_settings

if TYPE_CHECKING:
    from centrali.config import Settings
    from centrali.services import keys as svc

# oauth.keys.SUPPORTED_ALGS, spelt out so that the help needs no cryptography import
# (tests/cli/test_cli_speed.py checks that they agree).
SUPPORTED_ALGS = ("RS256", "ES256", "EdDSA")

# A verifier may hold the JWKS this long (the Cache-Control of /oidc/jwks).
_JWKS_MAX_AGE = 300


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _as_dict(view: svc.KeyView) -> dict[str, Any]:
    return {
        "kid": view.kid,
        "alg": view.alg,
        "generation": view.generation,
        "state": view.state,
        "createdAt": _time(view.created_at),
        "activatesAt": _time(view.activates_at),
        "retireAfter": _time(view.retire_after),
        "encrypted": view.encrypted,
    }


def _line(view: svc.KeyView) -> str:
    cells = [
        view.kid,
        view.alg,
        str(view.generation),
        view.state,
        _time(view.created_at) or "-",
        _time(view.activates_at) or "-",
        _time(view.retire_after) or "-",
        "encrypted" if view.encrypted else "plaintext",
    ]
    return "\t".join(cells)


@click.group()
def keys() -> None:
    """Signing keys: list, rotate without downtime, retire, encrypt at rest."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of tab-separated text")
@with_settings
def list_(settings: Settings, as_json: bool) -> None:
    """One line per key, newest first: kid, alg, generation, state (pending, active,
    superseded, retired), created, activates, retire-after, at rest."""
    from centrali.services import keys as svc

    db = open_existing_store(settings)
    policy = svc.KeyPolicy.from_settings(settings)
    try:
        svc.load_key_set(db, settings.signing_alg, policy)  # the master key opens them
    except RuntimeError:
        pass  # no key of this algorithm: listed all the same
    for view in svc.list_signing_keys(db, policy):
        click.echo(json.dumps(_as_dict(view), sort_keys=True) if as_json else _line(view))


@keys.command("rotate")
@click.option(
    "--lead-time",
    type=click.IntRange(min=0),
    help="Seconds the new key is published before it signs (CENTRALI_KEY_LEAD_TIME, 900)",
)
@click.option(
    "--alg",
    type=click.Choice(SUPPORTED_ALGS),
    help="Algorithm of the new key (default CENTRALI_SIGNING_ALG)",
)
@with_settings
def rotate(settings: Settings, lead_time: int | None, alg: str | None) -> None:
    """Add a new signing key; print its kid. The old key signs until the new one activates
    and verifies until its last token has expired."""
    from centrali.services import keys as svc

    policy = svc.KeyPolicy.from_settings(settings)
    lead = policy.lead_time if lead_time is None else lead_time
    view = svc.rotate_signing_key(
        open_store(settings), alg or settings.signing_alg, policy, lead_time=lead
    )
    click.echo(view.kid)
    starts = _time(view.activates_at) or "now"
    click.echo(f"centrali: key {view.kid} published now, signs from {starts}", err=True)
    if view.activates_at is not None and lead < _JWKS_MAX_AGE + settings.key_refresh_seconds:
        click.echo(
            f"centrali: warning: a lead time under {_JWKS_MAX_AGE + settings.key_refresh_seconds:g}"
            " s lets verifiers holding a cached JWKS meet the new kid before they refetch",
            err=True,
        )


# A kid is a base64url thumbprint, so one in 64 starts with "-": unknown options pass through as
# KID instead of failing as "No such option". No short options here, or click would take
# matching letters out of such a kid.
@keys.command("retire", context_settings={"ignore_unknown_options": True})
@click.argument("kid", required=False)
@click.option("--force", is_flag=True, help="Retire KID even if its tokens may still be valid")
@with_settings
def retire(settings: Settings, kid: str | None, force: bool) -> None:
    """Retire KID, or without KID every superseded key whose tokens have all expired;
    print the kids retired. The active signing key is never retired.

    A kid is base64url and may start with '-': give it as it is (keys retire -abc...)."""
    from centrali.services import keys as svc

    retired = svc.retire_signing_keys(
        open_store(settings),
        settings.signing_alg,
        svc.KeyPolicy.from_settings(settings),
        kid=kid,
        force=force,
    )
    for retired_kid in retired:
        click.echo(retired_kid)


@keys.command("encrypt")
@with_settings
def encrypt(settings: Settings) -> None:
    """Encrypt every plaintext private key under CENTRALI_MASTER_KEY (one transaction),
    and the login-ticket key; print the kids encrypted."""
    from centrali.services import keys as svc

    policy = svc.KeyPolicy.from_settings(settings)
    db = open_store(settings)
    for kid in svc.encrypt_signing_keys(db, policy):
        click.echo(kid)
    if policy.master_key is not None:
        from centrali.services.ticket_key import encrypt_ticket_key

        encrypt_ticket_key(db, policy.master_key)
