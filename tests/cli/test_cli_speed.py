"""A quick CLI: ``centrali --help`` and ``--version`` import click and nothing of the server.

Each subcommand's module (and the settings, the store, the services) is loaded when that
subcommand runs (``cli.base.LazyGroup``); these tests pin that import graph. The figures are
in the README (Performance: the CLI).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from centrali.cli.base import COMMANDS, cli

# Never loaded by ``import centrali.cli``, ``--help`` or ``--version``.
HEAVY = (
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "pydantic_settings",
    "httpx",
    "jwt",
    "cryptography",
    "redis",
    "argon2",
    "centrali.config",
    "centrali.client",
    "centrali.services",
    "centrali.store",
    "centrali.web",
    "centrali.oauth",
)

_SCRIPT = """
import json, sys
from centrali.cli import cli
argv = json.loads(sys.argv[1])
code = 0
if argv is not None:
    try:
        cli.main(argv, prog_name="centrali", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
sys.stdout.flush()
print("\\n" + json.dumps(sorted(sys.modules)))
"""


def loaded_after(argv: list[str] | None) -> tuple[str, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    output, _, modules = result.stdout.rstrip("\n").rpartition("\n")
    return output, set(json.loads(modules))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize(
    "argv", [None, ["--help"], ["--version"]], ids=["import", "help", "version"]
)
def test_the_cli_entry_loads_nothing_of_the_server(argv: list[str] | None) -> None:
    output, modules = loaded_after(argv)
    assert heavy(modules) == []
    # No subcommand module either: they load when run.
    assert sorted(m for m in modules if m.startswith("centrali.cli.")) == ["centrali.cli.base"]
    if argv == ["--version"]:
        assert output.strip() == "centrali 0.1.0"
    if argv == ["--help"]:
        for name in COMMANDS:
            assert f"\n  {name} " in output, output


@pytest.mark.parametrize("group", ["user", "audit", "workspace", "keys"])
def test_a_group_help_loads_its_module_but_not_the_store(group: str) -> None:
    _output, modules = loaded_after([group, "--help"])
    assert f"centrali.cli.{group}" in modules
    assert not [m for m in modules if m.split(".")[0] in ("sqlalchemy", "fastapi", "uvicorn")]


def test_every_listed_command_loads_and_its_help_matches_the_listing() -> None:
    for name, (module, attribute, short) in COMMANDS.items():
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None and command.name == name, (module, attribute)
        assert short.endswith("."), short


def listed_commands(help_text: str) -> list[str]:
    rows = help_text.split("Commands:")[1].splitlines()
    return [row.split()[0] for row in rows if row.startswith("  ") and row[2] != " "]


def test_the_help_lists_the_same_commands_once_loaded() -> None:
    from click.testing import CliRunner

    before = CliRunner().invoke(cli, ["--help"]).output
    for name in COMMANDS:
        cli.get_command(None, name)  # type: ignore[arg-type]
    after = CliRunner().invoke(cli, ["--help"]).output
    assert listed_commands(before) == listed_commands(after) == sorted(COMMANDS)


def test_the_keys_choices_are_the_signing_algorithms() -> None:
    from centrali.cli.keys import SUPPORTED_ALGS
    from centrali.oauth.keys import SUPPORTED_ALGS as ALGS

    assert tuple(SUPPORTED_ALGS) == tuple(ALGS)


def test_the_schema_head_read_from_the_files_is_alembics() -> None:
    from centrali.store.migrate import head_revision, known_revisions

    revisions, head = known_revisions()
    assert head == head_revision()
    assert head in revisions
