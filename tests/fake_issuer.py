"""A fake OpenID Connect issuer on 127.0.0.1 for the federated-credential tests: discovery,
JWKS, and workload tokens it signs (like GitHub Actions' or a Kubernetes cluster's), with key
rotation and two ways of failing (a hanging or a broken answer)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class FakeIssuer:
    def __init__(self) -> None:
        self.url = ""
        self.mode = "ok"  # "ok", "hang" (answers nothing for `hang_seconds`), "broken" (500)
        self.hang_seconds = 30.0
        self.requests: list[str] = []
        self._keys: list[tuple[str, Any]] = []
        self.rotate()

    def rotate(self, *, keep_old: bool = False) -> str:
        """A new signing key (published in the JWKS); returns its kid."""
        kid = f"k-{uuid.uuid4().hex[:8]}"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._keys = [*(self._keys if keep_old else []), (kid, key)]
        return kid

    @property
    def kid(self) -> str:
        return self._keys[-1][0]

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self._keys:
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(self, subject: str, audience: str | list[str], ttl: int = 300, **claims: Any) -> str:
        """A workload token of this issuer, signed with its newest key."""
        now = int(time.time())
        kid, key = self._keys[-1]
        body = {"iss": self.url, "sub": subject, "aud": audience, "iat": now, "exp": now + ttl}
        return jwt.encode({**body, **claims}, key, algorithm="RS256", headers={"kid": kid})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests.append(self.path)
                if issuer.mode == "hang":
                    time.sleep(issuer.hang_seconds)
                    return
                if issuer.mode == "broken":
                    self._send(500, {"error": "down"})
                elif self.path == "/.well-known/openid-configuration":
                    self._send(200, {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"})
                elif self.path == "/jwks":
                    self._send(200, issuer.jwks())
                else:
                    self._send(404, {"error": "not found"})

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "public, max-age=300")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def serving(self) -> Iterator[FakeIssuer]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.mode = "ok"
            server.shutdown()
            server.server_close()
