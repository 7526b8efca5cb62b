"""Test data through the public interfaces: services for setup, HTTP for accounts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from centrali.config import Settings
from centrali.services.keys import load_key_set
from centrali.services.permissions import ADMIN_GROUP
from centrali.services.users import create_user, issue_user_token
from centrali.services.workspaces import create_workspace
from centrali.store.db import Database


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Factory:
    client: TestClient
    db: Database
    settings: Settings
    _users: int = field(default=0)

    def workspace(self, slug: str = "acme-corp") -> str:
        create_workspace(self.db, slug=slug)
        return slug

    def user_token(
        self,
        workspace: str = "acme-corp",
        groups: Sequence[str] = (ADMIN_GROUP,),
        *,
        email: str | None = None,
        now: float | None = None,
        ttl: int | None = None,
    ) -> str:
        """A new user in ``workspace`` with ``groups``, and an access token for them."""
        self._users += 1
        email = email or f"user{self._users}@{workspace}.test"
        user = create_user(self.db, email=email, workspace_slug=workspace, groups=groups)
        issued = issue_user_token(
            user,
            keys=load_key_set(self.db),
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            ttl=ttl or self.settings.token_ttl,
            now=time.time() if now is None else now,
        )
        return issued.token

    def admin(self, workspace: str = "acme-corp") -> str:
        return self.user_token(workspace, (ADMIN_GROUP,))

    def service_account(
        self, token: str, workspace: str = "acme-corp", **body: Any
    ) -> dict[str, Any]:
        """Create an account over HTTP; returns the 201 body (with clientSecret)."""
        body.setdefault("name", "Test Account")
        r = self.client.post(
            f"/workspace/{workspace}/api/v1/service-accounts", json=body, headers=bearer(token)
        )
        assert r.status_code == 201, r.text
        result: dict[str, Any] = r.json()
        return result

    def token_response(self, client_id: str, client_secret: str, **form: str) -> Any:
        data = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            **form,
        }
        return self.client.post("/oidc/token", data=data)

    def sa_token(self, account: dict[str, Any]) -> str:
        r = self.token_response(account["clientId"], account["clientSecret"])
        assert r.status_code == 200, r.text
        token: str = r.json()["access_token"]
        return token
