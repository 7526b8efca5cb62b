"""``/console``: the web console, static files shipped in the package (``web/console``).

The console is a public OpenID Connect client (``centrali-console``, PKCE) that runs in the
browser and calls only the public management API with the signed-in user's token; this
router merely hands out its files. Every console path (``/console``, ``/console/callback``
and the client-side routes under it) answers with the same ``index.html``, under a strict
Content-Security-Policy: scripts and styles from this origin only, nothing inline, no
framing. The assets live under a content-hash path, so they may be cached for good.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

router = APIRouter(tags=["console"], include_in_schema=False)

CONSOLE_PACKAGE = "centrali.web"
CONSOLE_DIR = "console"
INDEX = "index.html"
ASSETS_PLACEHOLDER = "{{assets}}"

# No inline script or style anywhere; Trusted Types make any HTML-string sink
# (innerHTML, document.write) throw, so the DOM is built from nodes and text only.
CONSOLE_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)
HTML_HEADERS = {"Content-Security-Policy": CONSOLE_CSP, "Cache-Control": "no-store"}
IMMUTABLE = "public, max-age=31536000, immutable"

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Bundle:
    """The console's files by name, and a version that changes when any of them does."""

    version: str
    assets: dict[str, bytes]
    index: str


@cache
def load_bundle() -> Bundle:
    """Read the console's files once; the version is a hash of all of them."""
    folder = files(CONSOLE_PACKAGE).joinpath(CONSOLE_DIR)
    contents = {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and _suffix(entry.name) in _TYPES
    }
    digest = hashlib.sha256()
    for name in sorted(contents):
        digest.update(name.encode() + b"\0" + contents[name] + b"\0")
    index = contents.pop(INDEX).decode("utf-8")
    return Bundle(version=digest.hexdigest()[:16], assets=contents, index=index)


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def _index(request: Request) -> Response:
    bundle = load_bundle()
    root = str(request.scope.get("root_path", "")).rstrip("/")
    html = bundle.index.replace(ASSETS_PLACEHOLDER, f"{root}/console/assets/{bundle.version}")
    return Response(html, media_type=_TYPES[".html"], headers=HTML_HEADERS)


@router.get("/console")
def console_index(request: Request) -> Response:
    """The console's single page."""
    return _index(request)


@router.get("/console/assets/{version}/{name}")
def console_asset(version: str, name: str) -> Response:
    """A script, style sheet or image of the console. Under the current version it never
    changes; a page still naming an older version gets today's file, revalidated."""
    bundle = load_bundle()
    body = bundle.assets.get(name)
    if body is None:
        raise HTTPException(status_code=404)
    cache_control = IMMUTABLE if version == bundle.version else "no-cache"
    return Response(
        body, media_type=_TYPES[_suffix(name)], headers={"Cache-Control": cache_control}
    )


@router.get("/console/{rest:path}")
def console_page(request: Request, rest: str) -> Response:
    """``/console/callback`` and the client-side routes: the same page, which reads its
    own address."""
    return _index(request)
