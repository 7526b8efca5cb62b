"""The provider's own pages: the sign-in form, the workspace chooser, sign-out and errors.

Server-rendered from small f-string templates, every value through ``html.escape``. No
script at all and nothing from another origin; the one inline ``<style>`` is allowed by its
SHA-256 in the Content-Security-Policy (no ``'unsafe-inline'``). ``form-action`` allows this
origin and the origin the form's answer redirects to (browsers apply it to the redirect
after a form post), nothing else. Never cached, never framed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse

_CSS = (
    "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;"
    "background:#f4f5f7;color:#1d2129}"
    "main{max-width:24rem;margin:10vh auto;padding:2rem;background:#fff;border-radius:8px;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12)}"
    "h1{font-size:1.4rem;margin:0 0 1rem}"
    "label{display:block;margin:1rem 0 .25rem;font-weight:600}"
    "input[type=email],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;"
    "border:1px solid #b8bec7;border-radius:4px;font:inherit}"
    "button{margin-top:1.25rem;width:100%;padding:.6rem;border:0;border-radius:4px;"
    "background:#2557d6;color:#fff;font:inherit;font-weight:600;cursor:pointer}"
    "button.choice{background:#fff;color:#2557d6;border:1px solid #2557d6;text-align:left}"
    ".error{background:#fdecea;color:#8a1c12;padding:.5rem .75rem;border-radius:4px}"
    ".muted{color:#5c6570;font-size:.9rem}"
)
_STYLE_SOURCE = "'sha256-" + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode() + "'"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def origin_source(uri: str) -> str | None:
    """The CSP source expression of a URI's origin (``https://host:port``, or ``scheme:``
    for a private-use scheme)."""
    parts = urlsplit(uri)
    if not parts.scheme:
        return None
    if parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:"


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    sources = ["'self'", *sorted({s for t in form_targets if (s := origin_source(t))})]
    return "; ".join(
        [
            "default-src 'none'",
            f"style-src {_STYLE_SOURCE}",
            f"form-action {' '.join(sources)}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def render(
    title: str,
    content: str,
    *,
    status: int = 200,
    form_targets: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A whole page around ``content`` (already escaped HTML)."""
    body = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)} · Centrali</title><style>{_CSS}</style></head>"
        f"<body><main>{content}</main></body></html>\n"
    )
    all_headers = {
        **_NO_STORE,
        "Content-Security-Policy": content_security_policy(form_targets),
        **(headers or {}),
    }
    return HTMLResponse(body, status_code=status, headers=all_headers)


def _hidden(fields: Mapping[str, str | None]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
        for k, v in fields.items()
        if v is not None
    )


def _error(message: str | None) -> str:
    return "" if not message else f'<p class="error" role="alert">{escape(message)}</p>'


def login_page(
    *,
    ticket: str,
    csrf: str,
    client_name: str,
    redirect_uri: str,
    email: str = "",
    error: str | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The sign-in form: ``email``, ``password``, and the hidden ``csrf_token`` and
    ``ticket`` (the signed authorization request)."""
    content = (
        "<h1>Sign in</h1>"
        f'<p class="muted">to continue to {escape(client_name)}</p>'
        f"{_error(error)}"
        '<form method="post" action="login">'
        f"{_hidden({'csrf_token': csrf, 'ticket': ticket})}"
        '<label for="email">Email</label>'
        f'<input id="email" name="email" type="email" value="{escape(email)}"'
        ' autocomplete="username" required autofocus>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password"'
        ' autocomplete="current-password" required>'
        '<button type="submit">Sign in</button>'
        "</form>"
    )
    return render("Sign in", content, status=status, form_targets=[redirect_uri], headers=headers)


def chooser_page(
    *,
    ticket: str,
    csrf: str,
    email: str,
    choices: Sequence[tuple[str, str]],
    redirect_uri: str,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """Pick one of the user's workspaces: one submit button per workspace (``workspace``)."""
    buttons = "".join(
        f'<button class="choice" type="submit" name="workspace" value="{escape(slug)}">'
        f'{escape(name)} <span class="muted">({escape(slug)})</span></button>'
        for slug, name in choices
    )
    content = (
        "<h1>Choose a workspace</h1>"
        f'<p class="muted">Signed in as {escape(email)}</p>'
        f"{_error(error)}"
        '<form method="post" action="select-workspace">'
        f"{_hidden({'csrf_token': csrf, 'ticket': ticket})}{buttons}</form>"
    )
    return render("Choose a workspace", content, status=status, form_targets=[redirect_uri])


def error_page(title: str, message: str, *, status: int = 400) -> HTMLResponse:
    """A refusal shown to the user (never a redirect): nothing to click but the back button."""
    content = f"<h1>{escape(title)}</h1>{_error(message)}"
    return render(title, content, status=status)


def logout_confirm_page(
    *, csrf: str, fields: Mapping[str, str | None], redirect_to: str | None
) -> HTMLResponse:
    """Asked when a sign-out request cannot show it comes from a client (no ID token hint)."""
    content = (
        "<h1>Sign out?</h1>"
        '<p class="muted">Sign out of Centrali in this browser.</p>'
        '<form method="post" action="logout">'
        f"{_hidden({**fields, 'csrf_token': csrf})}"
        '<button type="submit">Sign out</button></form>'
    )
    return render("Sign out", content, form_targets=[redirect_to] if redirect_to else [])


def signed_out_page() -> HTMLResponse:
    return render("Signed out", "<h1>Signed out</h1><p>You are signed out of Centrali.</p>")
