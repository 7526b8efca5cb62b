from __future__ import annotations

from tests.factories import Factory, bearer


def test_guide_flow_create_account_and_get_token(factory: Factory) -> None:
    factory.workspace()
    admin = factory.admin()
    account = factory.service_account(admin, name="Production API Client")
    token = factory.sa_token(account)
    r = factory.client.get("/workspace/acme-corp/api/v1/service-accounts", headers=bearer(admin))
    assert r.status_code == 200
    assert r.json()["total"] == 1
    assert token.count(".") == 2
