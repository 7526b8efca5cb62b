"""``centrali serve``: the whole system on one port."""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket

import click
import uvicorn
from pydantic import SecretStr

from centrali.cli.base import SettingError, open_store, with_settings
from centrali.config import Settings
from centrali.services.issuer import other_address_notice, publish_issuer
from centrali.web.supervisor import APP, serve_workers, uvicorn_options


@click.command()
@click.option("--host", help="CENTRALI_HOST (default 127.0.0.1)")
@click.option("--port", type=int, help="CENTRALI_PORT (default 8000)")
@click.option("--workers", type=int, help="CENTRALI_WORKERS (default 1)")
@click.option("--log-level", help="CENTRALI_LOG_LEVEL (default info)")
@click.option("--ssl-certfile", help="CENTRALI_SSL_CERTFILE: serve HTTPS with this certificate")
@click.option("--ssl-keyfile", help="CENTRALI_SSL_KEYFILE: the certificate's private key")
@with_settings
def serve(settings: Settings) -> None:
    """Serve the auth server and the workspace API (migrates the store first)."""
    for name in ("ssl_certfile", "ssl_keyfile"):
        path = getattr(settings, name)
        if path and not os.path.isfile(path):
            raise SettingError(f"invalid setting {name}: no such file: {path}")
    if settings.ssl_keyfile and not settings.ssl_certfile:
        raise SettingError("invalid setting ssl_keyfile: needs ssl_certfile too")
    refusal = proxy_address_refusal(settings)
    if refusal:
        raise SettingError(refusal)
    taken = port_taken(settings.host, settings.port)
    if taken:
        raise click.ClickException(taken)
    db = open_store(settings)
    published = publish_issuer(db, settings)
    db.dispose()
    # Workers build their own Settings from the environment: hand them the resolved values.
    for name, value in settings.model_dump().items():
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        os.environ[f"CENTRALI_{name.upper()}"] = str(raw)
    scheme = "https" if settings.ssl_certfile else "http"
    click.echo(
        f"centrali: serving on {scheme}://{settings.host}:{settings.port} "
        f"(issuer {settings.issuer}, {settings.workers} worker(s))",
        err=True,
    )
    notice = other_address_notice(settings, published)
    if notice:
        click.echo(f"centrali: {notice}", err=True)
    warnings = (
        plain_http_warning(settings),
        short_token_ttl_warning(settings),
        proxy_check_off_warning(settings),
        no_master_key_warning(settings),
    )
    for warning in warnings:
        if warning:
            click.echo(f"centrali: WARNING: {warning}", err=True)
    if settings.workers > 1:
        serve_workers(settings.host, settings.port, settings.workers)
    else:
        # uvicorn re-raises the SIGTERM it caught once it has drained: end with status 0
        # then, as the --workers supervisor does, so a stop reads as a clean exit.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        uvicorn.run(APP, host=settings.host, port=settings.port, **uvicorn_options(settings))


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def port_taken(host: str, port: int) -> str | None:
    """One plain line when ``host:port`` cannot be bound (another server on it, a port
    that needs privileges), else None. Bound and closed at once, before the store is
    touched; uvicorn would log the same failure as a JSON line and exit 3."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (
                f"port {port} on {host}: address already in use (another server?): stop it, "
                "or serve on another --port"
            )
        if exc.errno == errno.EACCES:
            return f"port {port} on {host}: permission denied (ports under 1024 need privileges)"
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def plain_http_warning(settings: Settings) -> str | None:
    """Tokens and secrets in clear text on a network: say so, loudly, at start."""
    if _is_loopback(settings.host):
        return None
    if settings.ssl_certfile:
        return None
    if settings.issuer.startswith("https://"):
        return None  # TLS ends at a proxy in front, as the issuer says
    return (
        f"serving plain HTTP on {settings.host} with issuer {settings.issuer}: client secrets "
        "and tokens cross the network unencrypted. Use --ssl-certfile/--ssl-keyfile, or a "
        "TLS proxy and an https:// CENTRALI_ISSUER."
    )


def _behind_proxy_without_its_address(settings: Settings) -> bool:
    """An https:// issuer served without TLS: TLS ends at a proxy, and every request comes
    from the proxy's address unless its X-Forwarded-For is trusted."""
    return (
        settings.issuer.startswith("https://")
        and not settings.ssl_certfile
        and not settings.forwarded_allow_ips.strip()
    )


def proxy_address_refusal(settings: Settings) -> str | None:
    """Behind a TLS proxy with no CENTRALI_FORWARDED_ALLOW_IPS every client has the proxy's
    address: one budget of the abuse limits for all of them, so a hundred bad requests a
    minute from anyone shut every client out. Refuse to start so, unless told to."""
    if not settings.proxy_check or not _behind_proxy_without_its_address(settings):
        return None
    return (
        f"CENTRALI_FORWARDED_ALLOW_IPS is not set: with the https:// issuer {settings.issuer} "
        "and no --ssl-certfile, TLS ends at a proxy and every client would share its address "
        "(and its abuse limits); set CENTRALI_FORWARDED_ALLOW_IPS to the proxy's address, "
        "or CENTRALI_PROXY_CHECK=false to serve anyway"
    )


def proxy_check_off_warning(settings: Settings) -> str | None:
    if settings.proxy_check or not _behind_proxy_without_its_address(settings):
        return None
    return (
        "CENTRALI_PROXY_CHECK=false and no CENTRALI_FORWARDED_ALLOW_IPS: behind a proxy every "
        "client shares the proxy's address and its abuse limits."
    )


def no_master_key_warning(settings: Settings) -> str | None:
    """Without a master key the private keys sit in the store in clear: whoever reads the
    store (a backup, a database login, a readable file) can sign tokens."""
    if settings.master_key.get_secret_value():
        return None
    return (
        "CENTRALI_MASTER_KEY is not set: the private signing keys are stored unencrypted; "
        "set it and run `centrali keys encrypt`."
    )


# Access tokens shorter than this are accepted, for tests of expiry handling, with a warning.
SHORT_TOKEN_TTL = 60


def short_token_ttl_warning(settings: Settings) -> str | None:
    """A token lifetime of seconds is a test setup, not a deployment: say so at start."""
    if settings.token_ttl >= SHORT_TOKEN_TTL:
        return None
    return (
        f"CENTRALI_TOKEN_TTL is {settings.token_ttl} s: access tokens that short are for "
        "testing expiry handling, not for production."
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
