"""The ``centrali`` command: serve, and admin commands that talk to the store directly."""

from __future__ import annotations

from centrali.cli import audit, bootstrap, client, db, group, keys, serve, user, workspace  # noqa: F401  (registers)
from centrali.cli.base import cli


def main() -> None:
    cli(prog_name="centrali")


__all__ = ["cli", "main"]
