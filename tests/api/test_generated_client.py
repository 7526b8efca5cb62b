"""A client generated from the app's own ``/openapi.json`` does a whole round trip, typed.

openapi-python-client (a well-known generator; in the dev extra) writes a Python package from
the document the app serves into a temporary directory; the test imports it and, against the
app in process, creates a service account with a user's token, gets the account an access
token at ``/oidc/token`` (documented by hand in ``web.token_asgi.token_openapi``), creates a
structure and a record with that token and reads the record back. Every answer must parse
into the generated model of its operation: a route answering an undocumented shape, or a
document that leaves an answer untyped, fails here.

The generated client speaks httpx; its transport hands each request to Starlette's
TestClient, which runs the app (and its lifespan) in process.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from centrali.config import Settings
from centrali.store.db import Database
from centrali.web.app import create_app
from tests.conftest import ISSUER
from tests.factories import Factory

PACKAGE = "centrali_api"
WORKSPACE = "acme-corp"
# No post-generation hooks (they run ruff from PATH, which a venv's tests may not have).
GENERATOR_CONFIG = (
    f"post_hooks: []\nproject_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\n"
)


class AppTransport(httpx.BaseTransport):
    """An httpx transport that answers with the app behind a Starlette TestClient."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.client.request(
            request.method,
            str(request.url),
            headers=list(request.headers.multi_items()),
            content=request.read(),
        )
        return httpx.Response(
            answer.status_code, headers=answer.headers.multi_items(), content=answer.content
        )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The package generated from ``GET /openapi.json`` of an app (the document needs no
    store), imported; removed from ``sys.modules`` and ``sys.path`` afterwards."""
    root = tmp_path_factory.mktemp("generated")
    db = Database(f"sqlite:///{root}/openapi.db")
    try:
        app = create_app(Settings(data_dir=root, issuer=ISSUER), db=db)
        document = TestClient(app, base_url=ISSUER).get("/openapi.json")
    finally:
        db.dispose()
    assert document.status_code == 200, document.text
    (root / "openapi.json").write_bytes(document.content)
    (root / "config.yaml").write_text(GENERATOR_CONFIG)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "openapi_python_client", "generate"),
            *("--path", str(root / "openapi.json"), "--config", str(root / "config.yaml")),
            *("--meta", "none", "--output-path", str(root / PACKAGE)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # Anything the generator could not type (an operation or schema it skipped) is a warning.
    assert "Warning" not in output, output
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_generated_client_round_trip(
    generated: ModuleType, client: TestClient, factory: Factory
) -> None:
    models = _module("models")
    transport = AppTransport(client)
    factory.workspace(WORKSPACE)
    admin = generated.AuthenticatedClient(
        base_url=ISSUER, token=factory.admin(WORKSPACE), httpx_args={"transport": transport}
    )

    # A service account, created with a user's token: its secret is in the typed answer.
    create_account = _module("api.service_accounts.create_service_account")
    account = create_account.sync(
        WORKSPACE,
        client=admin,
        body=models.ServiceAccountCreate(name="Generated client", groups=["developers"]),
    )
    assert isinstance(account, models.CreatedServiceAccount), account
    assert account.client_id and account.client_secret and account.status == "active"
    assert isinstance(account.secret_id, int) and account.groups == ["developers"]
    assert account.last_used_at is None and account.additional_properties == {}

    get_account = _module("api.service_accounts.get_service_account")
    shown = get_account.sync(WORKSPACE, str(account.id), client=admin)
    assert isinstance(shown, models.ServiceAccount), shown
    assert shown.client_id == account.client_id and shown.additional_properties == {}

    # Its access token, from the token endpoint as the document describes it.
    anonymous = generated.Client(base_url=ISSUER, httpx_args={"transport": transport})
    token = _module("api.oidc.token").sync(
        client=anonymous,
        body=models.TokenBody(
            grant_type=models.TokenBodyGrantType.CLIENT_CREDENTIALS,
            client_id=account.client_id,
            client_secret=account.client_secret,
        ),
    )
    assert isinstance(token, models.TokenResponse200), token
    assert token.token_type == models.TokenResponse200TokenType.BEARER
    assert token.expires_in > 0

    # With it: a structure, a record of it, and the record read back.
    api = generated.AuthenticatedClient(
        base_url=ISSUER, token=token.access_token, httpx_args={"transport": transport}
    )
    structure = _module("api.structures.create_structure").sync(
        WORKSPACE,
        client=api,
        body=models.StructureCreate(
            slug="products",
            name="Products",
            fields=[
                models.FieldIn(name="name", type_="string", required=True),
                models.FieldIn(name="price", type_="number", required=True),
            ],
        ),
    )
    assert isinstance(structure, models.Structure), structure
    assert [(f.name, f.type_, f.required) for f in structure.fields] == [
        ("name", "string", True),
        ("price", "number", True),
    ]
    assert all(isinstance(f, models.StructureField) for f in structure.fields)

    data = models.RecordCreateData.from_dict({"name": "Laptop Pro", "price": 1299.99})
    created = _module("api.records.create_record").sync(
        WORKSPACE, client=api, body=models.RecordCreate(record_slug="products", data=data)
    )
    assert isinstance(created, models.Record), created
    assert created.created_by == account.client_id

    record = _module("api.records.get_record").sync(WORKSPACE, str(created.id), client=api)
    assert isinstance(record, models.Record), record
    assert isinstance(record.data, models.RecordData)
    assert record.record_slug == "products" and record.id == created.id
    assert record.data.to_dict() == {"name": "Laptop Pro", "price": 1299.99}
    assert record.additional_properties == {}

    page = _module("api.records.list_records").sync(WORKSPACE, client=api)
    assert isinstance(page, models.RecordPage), page
    assert [r.id for r in page.data] == [record.id] and page.total == 1

    # An error answer is typed too.
    missing = _module("api.records.get_record").sync(WORKSPACE, "999999", client=api)
    assert isinstance(missing, models.ApiError), missing
    assert missing.error == "not_found"
