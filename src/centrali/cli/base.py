"""The click group, the settings flags every command takes, and one-line error reporting."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from centrali.config import Settings
from centrali.oauth.keywrap import MasterKeyError
from centrali.services.context import Actor
from centrali.services.errors import ApiError
from centrali.store.db import Database

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Expected failures become one line on stderr and exit 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            raise click.ClickException(exc.message) from None
        except SQLAlchemyError as exc:
            reason = str(exc.__cause__ or exc).strip().splitlines()[0][:200]
            raise click.ClickException(f"the store failed: {reason}") from None
        except OSError as exc:
            raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}") from None
        except MasterKeyError as exc:
            raise SettingError(str(exc)) from None


class SettingError(click.ClickException):
    """A bad setting (flag or environment): one line, exit 2 like other usage errors."""

    exit_code = 2


@click.group(cls=_Group)
@click.version_option(package_name="centrali")
def cli() -> None:
    """Centrali auth: authorization server, workspace API and admin tools."""


def settings_options(func: F) -> F:
    """Add the settings flags; they win over the ``CENTRALI_*`` environment."""
    options = [
        click.option("--data-dir", type=click.Path(path_type=Path), help="CENTRALI_DATA_DIR"),
        click.option("--database-url", help="CENTRALI_DATABASE_URL"),
        click.option("--issuer", help="CENTRALI_ISSUER"),
        click.option("--audience", help="CENTRALI_AUDIENCE"),
        click.option("--token-ttl", type=int, help="CENTRALI_TOKEN_TTL (seconds)"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_SETTING_NAMES = (
    "data_dir",
    "database_url",
    "issuer",
    "audience",
    "token_ttl",
    "host",
    "port",
    "workers",
    "log_level",
    "ssl_certfile",
    "ssl_keyfile",
)


def build_settings(kwargs: dict[str, Any]) -> Settings:
    """Settings from flags over environment; pops the setting flags out of ``kwargs``."""
    given = {k: kwargs.pop(k) for k in _SETTING_NAMES if k in kwargs}
    try:
        return Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "settings"
        raise SettingError(f"invalid setting {name}: {first['msg']}") from None


def with_settings(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the settings flags into a ``settings`` argument."""

    @settings_options
    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        settings = build_settings(kwargs)
        return func(settings=settings, **kwargs)

    return wrapper


def cli_actor() -> Actor:
    """The audit actor of admin-CLI actions."""
    import getpass

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor(subject=f"cli:{who}")


def open_store(settings: Settings) -> Database:
    """The store at the latest schema, with a signing key."""
    from centrali.services.keys import KeyPolicy
    from centrali.web.app import prepare_store

    policy = KeyPolicy.from_settings(settings)  # a malformed master key fails before the store
    db = Database(settings.database_url)
    prepare_store(db, settings.signing_alg, policy)
    return db
