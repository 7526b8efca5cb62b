"""The click group, the settings flags every command takes, and one-line error reporting.

The CLI starts fast: this module imports click and the standard library only. Each
subcommand's module is loaded when that subcommand runs (``LazyGroup``), and the settings
(pydantic), the store (SQLAlchemy) and the services are imported by the commands that use
them, so ``centrali --help`` and ``--version`` load none of them (tests/cli/test_cli_speed.py).
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from centrali import __version__

if TYPE_CHECKING:
    from centrali.config import Settings
    from centrali.services.context import Actor
    from centrali.store.db import Database

F = TypeVar("F", bound=Callable[..., Any])

# Subcommand name -> (module, attribute, one-line help): the help is here so that
# ``centrali --help`` lists every command without importing any of them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "audit": ("centrali.cli.audit", "audit", "Read the audit log."),
    "bootstrap": ("centrali.cli.bootstrap", "bootstrap", "A workspace and its first admin."),
    "client": ("centrali.cli.client", "client", "Manage OpenID Connect clients."),
    "db": ("centrali.cli.db", "db", "Manage the store."),
    "doctor": ("centrali.cli.doctor", "doctor", "Check a configuration without serving."),
    "group": ("centrali.cli.group", "group", "Manage groups and their permissions."),
    "keys": ("centrali.cli.keys", "keys", "Signing keys: list, rotate, retire, encrypt."),
    "serve": ("centrali.cli.serve", "serve", "Serve the auth server and the workspace API."),
    "user": ("centrali.cli.user", "user", "Manage users."),
    "workspace": ("centrali.cli.workspace", "workspace", "Manage workspaces."),
}

# Where a command's store is, for "not found" messages (set by the open_* functions).
_STORE_KEY = "centrali.store"


class LazyGroup(click.Group):
    """click's lazy-loading group: a subcommand's module is imported when it is run (or its
    own help is asked for); the listing in ``--help`` comes from ``COMMANDS``.

    Expected failures become one line on stderr and exit 1, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute, _help = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{attribute} is not a click command")
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            loaded = self.commands.get(name)
            if loaded is not None:
                rows.append((name, loaded.get_short_help_str(formatter.width - 6 - len(name))))
            else:
                rows.append((name, COMMANDS[name][2]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as exc:
            translated = _one_line(exc, ctx)
            if translated is None:
                raise
            raise translated from None


def _one_line(exc: Exception, ctx: click.Context) -> click.ClickException | None:
    """The one-line error for an expected failure, or None. Only modules already loaded are
    looked at: an exception of a library that was never imported cannot be this one."""
    errors = sys.modules.get("centrali.services.errors")
    if errors is not None and isinstance(exc, errors.ApiError):
        store = ctx.meta.get(_STORE_KEY)
        if isinstance(exc, errors.NotFoundError) and store:
            return click.ClickException(f"{exc.message} in {store}")
        return click.ClickException(exc.message)
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError):
        reason = str(exc.__cause__ or exc).strip().splitlines()[0][:200]
        return click.ClickException(f"the store failed: {reason}")
    if isinstance(exc, OSError):
        return click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}")
    keywrap = sys.modules.get("centrali.oauth.keywrap")
    if keywrap is not None and isinstance(exc, keywrap.MasterKeyError):
        return SettingError(str(exc))
    return None


class SettingError(click.ClickException):
    """A bad setting (flag or environment): one line, exit 2 like other usage errors."""

    exit_code = 2


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="centrali", message="%(prog)s %(version)s")
def cli() -> None:
    """Centrali auth: authorization server, workspace API and admin tools."""


def main() -> None:
    cli(prog_name="centrali")


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
    from pydantic import ValidationError

    from centrali.config import Settings

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

    from centrali.services.context import Actor

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor(subject=f"cli:{who}")


def __getattr__(name: str) -> Any:
    # ``Database`` on first use (tests put a subclass here: tests/e2e/conftest.py).
    if name == "Database":
        from centrali.store.db import Database

        return Database
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _database_class() -> type[Database]:
    cls: type[Database] = getattr(sys.modules[__name__], "Database")  # noqa: B009
    return cls


def _remember_store(url: str) -> None:
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.find_root().meta[_STORE_KEY] = store_name(url)


def checked_database_url(settings: Settings) -> str:
    """The settings' database URL if this server can use it, else one line (exit 2): only
    SQLite and PostgreSQL, a PostgreSQL database name, an existing directory for a SQLite
    file (the data directory excepted: it is made on first use)."""
    from centrali.store.db import DatabaseUrlError, check_database_url

    url = settings.database_url
    default = f"sqlite:///{(settings.data_dir / 'centrali.db').resolve()}"
    try:
        check_database_url(url, create_dir=url == default)
    except DatabaseUrlError as exc:
        raise SettingError(f"invalid setting database_url: {exc}") from None
    return url


def open_store(settings: Settings) -> Database:
    """The store at the latest schema, with a signing key (made, migrated when needed)."""
    from centrali.services.keys import KeyPolicy
    from centrali.web.app import prepare_store

    url = checked_database_url(settings)
    policy = KeyPolicy.from_settings(settings)  # a malformed master key fails before the store
    db = _database_class()(url)
    _remember_store(db.url)
    prepare_store(db, settings.signing_alg, policy)
    return db


def open_existing_store(settings: Settings) -> Database:
    """The store as it is, for commands that only read: nothing is created (no file, no
    directory, no schema, no key); a missing or unmigrated store is one line naming it."""
    from centrali.store.db import StoreMissingError, require_existing_store
    from centrali.store.migrate import schema_problem

    url = checked_database_url(settings)
    _remember_store(url)
    try:
        require_existing_store(url)
    except StoreMissingError as exc:
        raise click.ClickException(str(exc)) from None
    db = _database_class()(url, create=False)
    problem = schema_problem(db.engine)
    if problem is not None:
        db.dispose()
        raise click.ClickException(f"{problem}: {store_name(url)}")
    return db


def store_name(url: str) -> str:
    """The store's URL as shown to people (no password)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
