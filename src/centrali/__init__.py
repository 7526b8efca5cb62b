"""Centrali auth: authorization server, workspace API and Python client.

``import centrali`` loads the client only (httpx); the server lives in submodules, and the
token verifier in ``centrali.verify``.
"""

from __future__ import annotations

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
