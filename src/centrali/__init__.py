"""Centrali auth: authorization server, workspace API and Python client.

``import centrali`` loads the client only (httpx); the server lives in submodules.
"""

from __future__ import annotations

from centrali.client import CentraliClient

__version__ = "0.1.0"

__all__ = ["CentraliClient", "__version__"]
