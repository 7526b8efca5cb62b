"""Centrali auth: authorization server, workspace API and Python client.

``import centrali`` loads nothing else: the client (httpx) is loaded when first named
(``centrali.CentraliClient``, ``from centrali import CentraliClient``), so that the
``centrali`` command starts without it. The server lives in submodules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from centrali.client import (
        AsyncCentraliClient,
        AsyncTokenProvider,
        CentraliAPIError,
        CentraliAuth,
        CentraliAuthError,
        CentraliClient,
        CentraliCredentialError,
        CentraliError,
        TokenProvider,
    )

__version__ = "0.1.0"

# The Python client as the README and docs/python-client.md show it (tests pin this list).
__all__ = [
    "AsyncCentraliClient",
    "AsyncTokenProvider",
    "CentraliAPIError",
    "CentraliAuth",
    "CentraliAuthError",
    "CentraliClient",
    "CentraliCredentialError",
    "CentraliError",
    "TokenProvider",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        from centrali import client

        return getattr(client, name)
    raise AttributeError(f"module 'centrali' has no attribute {name!r}")
