"""Import hygiene: the protocol core stays framework-free, ``import centrali`` stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import centrali

OAUTH_DIR = Path(centrali.__file__).parent / "oauth"
FORBIDDEN = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "centrali.store",
    "centrali.services",
    "centrali.web",
    "centrali.cli",
)
HEAVY = ("fastapi", "starlette", "sqlalchemy")


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` imports (relative imports resolved against ``package``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # ``from centrali import web`` imports the submodule centrali.web.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def forbidden_imports(source: str, package: str = "centrali.oauth") -> set[str]:
    return {
        module
        for module in imported_modules(source, package)
        if any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)
    }


@pytest.mark.parametrize(
    "source",
    [
        "import fastapi",
        "from fastapi import Request",
        "import starlette.requests",
        "from sqlalchemy.orm import Session",
        "from centrali.store.db import Database",
        "from centrali import services",
        "import centrali.web.app",
        "from ..store import db",
        "from .. import web",
        "def f():\n    import sqlalchemy\n",
        "if TYPE_CHECKING:\n    from centrali.services.errors import ApiError\n",
    ],
    ids=[
        "import",
        "from-import",
        "dotted",
        "from-submodule",
        "our-store",
        "from-package-import-submodule",
        "our-web-dotted",
        "relative",
        "relative-package",
        "inside-function",
        "type-checking-block",
    ],
)
def test_the_checker_catches_forbidden_imports(source: str) -> None:
    assert forbidden_imports(source)


@pytest.mark.parametrize(
    "source",
    [
        "import jwt",
        "from cryptography.hazmat.primitives import hashes",
        "from centrali.oauth.errors import OAuthError",
        "from .errors import OAuthError",
        "import fastapi_like",
        "from centrali.webhooks import x",
    ],
    ids=["jwt", "cryptography", "own-package", "relative-own", "prefix-lookalike", "name-prefix"],
)
def test_the_checker_lets_allowed_imports_through(source: str) -> None:
    assert forbidden_imports(source) == set()


def test_oauth_core_imports_no_framework_store_or_services() -> None:
    sources = sorted(OAUTH_DIR.glob("*.py"))
    names = {path.name for path in sources}
    assert {"token_endpoint.py", "client_auth.py", "tokens.py", "ports.py"} <= names
    offenders = {
        path.name: sorted(bad)
        for path in sources
        if (bad := forbidden_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


EXPORTED = [
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


def test_import_centrali_loads_no_server_framework() -> None:
    script = (
        "import json, sys\n"
        "import centrali\n"
        "print(json.dumps({'all': centrali.__all__, 'loaded': sorted(\n"
        f"    m for m in sys.modules if m.split('.')[0] in {HEAVY!r})}}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    # The SDK client (what the README and docs/python-client.md import from `centrali`)
    # and the version, nothing of the server.
    assert report["all"] == EXPORTED


def test_every_exported_name_exists() -> None:
    assert all(hasattr(centrali, name) for name in centrali.__all__)
    assert isinstance(centrali.__version__, str)
    assert centrali.__version__
