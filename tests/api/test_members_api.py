"""``GET …/members`` and ``GET …/groups`` (read-only, for service-account managers), and the
audit log's ``actor`` filter given an email: what the console needs to show people by their
email and offer groups as choices."""

from __future__ import annotations

import jwt
from fastapi.testclient import TestClient

from centrali.services.context import Actor
from centrali.services.groups import create_group
from centrali.store.db import Database
from tests.factories import Factory, bearer

WS = "acme-corp"
OTHER = "globex"
API = f"/workspace/{WS}/api/v1"


def subject_of(token: str) -> str:
    sub: str = jwt.decode(token, options={"verify_signature": False})["sub"]
    return sub


def test_members_are_listed_by_email_for_managers_only(
    client: TestClient, factory: Factory
) -> None:
    factory.workspace(WS)
    factory.workspace(OTHER)
    admin = factory.user_token(WS, email="zed@acme.test")
    reader = factory.user_token(WS, ("developers",), email="amy@acme.test")
    factory.user_token(OTHER, email="elsewhere@globex.test")

    r = client.get(f"{API}/members", headers=bearer(admin))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == {
        "data": [
            {"subject": subject_of(reader), "email": "amy@acme.test"},
            {"subject": subject_of(admin), "email": "zed@acme.test"},
        ]
    }
    # Without service-accounts:manage, from another workspace, or as a service account: no.
    assert client.get(f"{API}/members", headers=bearer(reader)).status_code == 403
    other_admin = factory.admin(OTHER)
    assert client.get(f"{API}/members", headers=bearer(other_admin)).status_code == 403
    account = factory.service_account(admin, groups=["workspace-admins"])
    sa = factory.sa_token(account)
    assert client.get(f"{API}/members", headers=bearer(sa)).status_code == 403
    assert client.get(f"{API}/members").status_code == 401


def test_groups_are_listed_with_their_permissions(
    client: TestClient, factory: Factory, db: Database
) -> None:
    factory.workspace(WS)
    factory.workspace(OTHER)
    create_group(db, workspace_slug=OTHER, actor=Actor("cli:test"), name="globex-only")
    admin = factory.admin(WS)
    r = client.get(f"{API}/groups", headers=bearer(admin))
    assert r.status_code == 200, r.text
    groups = r.json()["data"]
    assert [g["name"] for g in groups] == ["api-users", "developers", "workspace-admins"]
    for group in groups:
        assert set(group) == {"name", "permissions", "isDefault"}, group
        assert group["permissions"] == sorted(group["permissions"])
    admins = groups[2]
    assert "service-accounts:manage" in admins["permissions"]
    reader = factory.user_token(WS, ("developers",))
    assert client.get(f"{API}/groups", headers=bearer(reader)).status_code == 403
    # Every name listed is one a service account may be given.
    account = factory.service_account(admin, groups=[g["name"] for g in groups])
    assert account["groups"] == [g["name"] for g in groups]


def test_the_audit_actor_filter_takes_an_email(client: TestClient, factory: Factory) -> None:
    factory.workspace(WS)
    admin = factory.user_token(WS, email="ann@acme.test")
    other = factory.user_token(WS, email="bob@acme.test")
    factory.service_account(admin, name="By Ann")
    factory.service_account(other, name="By Bob")
    events = f"{API}/audit-events"

    def actors(actor: str) -> list[str]:
        r = client.get(events, params={"actor": actor}, headers=bearer(admin))
        assert r.status_code == 200, r.text
        return [e["actor"] for e in r.json()["data"]]

    assert actors("bob@acme.test") == [subject_of(other)]
    assert actors(" Ann@Acme.TEST") == [subject_of(admin)]
    assert actors(subject_of(admin)) == [subject_of(admin)]
    assert actors("nobody@acme.test") == []
