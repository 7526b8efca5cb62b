"""``python -m centrali`` is the ``centrali`` command."""

from centrali.cli import main

main()
