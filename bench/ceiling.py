"""The ceiling of an RS256 token endpoint on this stack: ``python -m bench --ceiling``.

A bare ASGI app served as ours is (``python -m bench.ceiling --port P --workers N``: N
processes, each with its own ``SO_REUSEPORT`` socket, uvicorn on the asyncio loop with our
HTTP protocol, web.http_protocol) that does only what any RS256 token endpoint must: read
the form, sign a JWT with the claims ours issues, answer JSON. No client lookup, no secret
check, no limits, no metrics, no log. No server on this stack can answer more tokens per
second than this one; ours / ceiling is the share of it that our checks leave, ceiling /
peer the most any server on it could reach against the peer. Never serve it: it
authenticates nobody.

The key comes from BENCH_CEILING_KEY (a PEM, made by the bench and shared by the workers)
and is published at ``/oidc/jwks``, so bench/token_load.sh checks its tokens as it checks
ours.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import signal
import time
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jwt.algorithms import RSAAlgorithm

_key = serialization.load_pem_private_key(os.environb[b"BENCH_CEILING_KEY"], None)
assert isinstance(_key, rsa.RSAPrivateKey)
KEY: rsa.RSAPrivateKey = _key
_PADDING = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_JWK = {**json.loads(RSAAlgorithm.to_jwk(KEY.public_key())), "kid": "ceiling", "alg": "RS256"}
_JWKS = json.dumps({"keys": [{**_JWK, "use": "sig"}]}).encode()
_HEADER = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"ceiling","typ":"at+jwt"}').rstrip(b"=")
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/oidc/jwks":
        body = _JWKS
    else:
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        form = dict(parse_qsl(raw.decode()))
        issuer = f"http://{scope['server'][0]}:{scope['server'][1]}"
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": form.get("client_id", ""),
            "aud": issuer,
            "iat": now,
            "exp": now + 25200,
            "jti": _b64(os.urandom(16)).decode(),
            "client_id": form.get("client_id", ""),
            "scope": "openid",
            "workspace": "bench",
            "isServiceAccount": "true",
            "groups": ["api-users"],
        }
        signing_input = _HEADER + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        token = signing_input + b"." + _b64(KEY.sign(signing_input, _PADDING, _SHA256))
        body = b'{"access_token":"%s","token_type":"Bearer","expires_in":25200}' % token
    await send({"type": "http.response.start", "status": 200, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


def _worker(port: int) -> None:
    import uvicorn

    from centrali.web.http_protocol import GuardedHttpToolsProtocol
    from centrali.web.supervisor import _listening_socket

    sock = _listening_socket("127.0.0.1", port)
    config = uvicorn.Config(
        "bench.ceiling:app",
        loop="asyncio",
        http=GuardedHttpToolsProtocol,
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(args.port,)) for _ in range(args.workers)]
    for process in workers:
        process.start()
    stop = {"now": False}

    def stopping(_signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    while not stop["now"] and all(p.is_alive() for p in workers):
        time.sleep(0.2)
    for process in workers:
        process.terminate()
    for process in workers:
        process.join(timeout=10)


if __name__ == "__main__":
    main()
