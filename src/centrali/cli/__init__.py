"""The ``centrali`` command: serve, and admin commands that talk to the store directly.

Each subcommand's module is imported when it runs (``base.LazyGroup``): ``import
centrali.cli`` loads click and nothing of the server.
"""

from __future__ import annotations

from centrali.cli.base import cli, main

__all__ = ["cli", "main"]
