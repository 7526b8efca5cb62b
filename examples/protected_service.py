"""A third-party service that accepts Centrali access tokens, in three lines: the import,
the verifier, and the dependency on the route.

    CENTRALI_ISSUER=http://127.0.0.1:8000 CENTRALI_WORKSPACE=acme-corp \
        uvicorn --app-dir examples protected_service:app --port 9000
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9000/orders

No token or a bad one gets 401, a token of another workspace 403. The verifier fetches the
issuer's keys once (discovery, then the JWKS) and picks up a rotated key by itself.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import Depends, FastAPI

from centrali.verify import TokenVerifier, VerifiedToken, require_token

verifier = TokenVerifier(os.environ.get("CENTRALI_ISSUER", "http://127.0.0.1:8000"))
workspace = os.environ.get("CENTRALI_WORKSPACE", "acme-corp")
centrali_token = Depends(require_token(verifier, workspace=workspace))

app = FastAPI(title="Orders")


@app.get("/orders")
def list_orders(token: VerifiedToken = centrali_token) -> dict[str, Any]:
    """The caller's orders; ``token`` holds the checked claims."""
    return {
        "caller": token.subject,
        "isServiceAccount": token.is_service_account,
        "orders": [{"id": 1, "item": "Laptop Pro", "quantity": 2}],
    }
