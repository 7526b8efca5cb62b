"""Every operation of our own OpenAPI document, fuzzed with schemathesis in-process (ASGI).

Each operation gets Hypothesis-generated requests, valid by the document (positive) and
invalid (negative), steered three times in four onto things that exist (the workspace the
admin token is for, a service account, a structure with a record, valid client credentials
and tokens for the OAuth endpoints) so the handlers behind the validation run too.

Two kinds of check:

* ``not_a_server_error``: never a 5xx. Checked per request; a failure is shrunk by Hypothesis
  and is always a real test failure.
* the document's own claims (status code, content type, body schema, headers): collected over
  the whole run and reported at the end, with one reproduction (curl) each. A known documentation
  bug is marked per operation with ``xfail(strict=True, raises=DocumentMismatch)`` naming the
  checks that are expected to fail; a mismatch in any other check fails the test for real.

The operations are read from the document at collection time, so endpoints added later are
fuzzed without touching this file.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from centrali.config import Settings
from centrali.store.db import Database
from centrali.web.app import create_app
from tests.conftest import ISSUER
from tests.factories import Factory, bearer

EXAMPLES = 30  # per operation
WORKSPACE = "acme-corp"
OAUTH_FORM_PATHS = ("/oidc/token", "/oidc/introspect", "/oidc/revoke")
DOCUMENT_CHECKS: dict[str, Callable[..., Any]] = {
    check.__name__: check
    for check in (
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    )
}


class DocumentMismatch(AssertionError):
    """Answers that contradict the OpenAPI document in the expected (known-bug) checks."""


def _openapi_document() -> dict[str, Any]:
    """The document the app serves; building it needs no store (no lifespan runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/openapi.db")
        try:
            document: dict[str, Any] = create_app(
                Settings(data_dir=Path(tmp), issuer=ISSUER), db=db
            ).app.openapi()
        finally:
            db.dispose()
    return document


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("pass app= to case.call: each test has its own app and store")


SCHEMA = schemathesis.openapi.from_dict(_openapi_document())
SCHEMA.app = _no_app  # selects the in-process ASGI transport; each call names its app


# --- known documentation bugs, by operation -----------------------------------------------------


def _known_mismatches(method: str, path: str) -> tuple[frozenset[str], str]:
    """Operations whose document is known not to match (none at present)."""
    return frozenset(), ""


def _operations() -> list[Any]:
    params = []
    for result in SCHEMA.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document itself is broken: fail collection, loudly
        operation = result.ok()
        expected, reason = _known_mismatches(operation.method.upper(), operation.path)
        marks = (
            [pytest.mark.xfail(strict=True, raises=DocumentMismatch, reason=reason)]
            if expected
            else []
        )
        params.append(pytest.param(operation.label, expected, id=operation.label, marks=marks))
    return params


# --- fixtures ---------------------------------------------------------------------------------


@dataclass
class Known:
    """The app under test and values that exist in its store."""

    app: Any
    admin_token: str
    path: dict[str, str]
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    body: dict[str, list[Any]] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def known(sqlite_template: Path, tmp_path: Path) -> Iterator[Known]:
    """A workspace with an admin, a service account (and a token of it), a structure with a
    record, made over HTTP in the app's own lifespan, which ends before the fuzzing starts its
    own. SQLite only: PostgreSQL would double the run time for the same handlers (the hostile
    input cases per backend are in test_hostile_input.py)."""
    path = tmp_path / "centrali.db"
    shutil.copy(sqlite_template, path)
    config = Settings(
        database_url=f"sqlite:///{path}",
        data_dir=tmp_path,
        issuer=ISSUER,
        token_failures_per_ip=0,  # thousands of refusals from one address: not throttled
        token_failures_per_client_ip=0,
    )
    db = Database(config.database_url)
    app = create_app(config, db=db)
    with TestClient(app, base_url=ISSUER) as client:
        factory = Factory(client=client, db=db, settings=config)
        factory.workspace(WORKSPACE)
        admin = factory.admin(WORKSPACE)
        account = factory.service_account(admin, WORKSPACE, name="Fuzzed account")
        account_token = factory.sa_token(account)
        api = f"/workspace/{WORKSPACE}/api/v1"
        fields = [
            {"name": "name", "type": "string", "required": True},
            {"name": "price", "type": "number", "required": True},
            {"name": "inStock", "type": "boolean"},
        ]
        structure = {"slug": "products", "name": "Products", "fields": fields}
        r = client.post(f"{api}/structures", json=structure, headers=bearer(admin))
        assert r.status_code == 201, r.text
        product = {"name": "Laptop Pro", "price": 1299.99}
        r = client.post(
            f"{api}/records",
            json={"recordSlug": "products", "data": product},
            headers=bearer(admin),
        )
        assert r.status_code == 201, r.text
        record_id = str(r.json()["id"])
    yield Known(
        app=app,
        admin_token=admin,
        path={
            "workspace_slug": WORKSPACE,
            "account_id": str(account["id"]),
            "slug": "products",
            "record_id": record_id,
        },
        query={"recordSlug": ["products"], "page": ["1"], "limit": ["1", "100"]},
        form={"token": [account_token, admin], "grant_type": ["client_credentials"]},
        body={"recordSlug": ["products"], "data": [product, {"name": "x", "price": "free"}]},
        credentials={"client_id": account["clientId"], "client_secret": account["clientSecret"]},
    )

    # Schemathesis has ended the fuzzing's lifespan by now, but the token endpoint's raw
    # connection stays in a thread-local of schemathesis' event-loop thread, which outlives the
    # test: drop the runtime so that connection goes back to the pool before it is disposed.
    app.app.state.runtime = None
    gc.collect()
    db.dispose()


# --- the test ---------------------------------------------------------------------------------


def _steer(case: Any, data: st.DataObject, known: Known) -> None:
    """Replace generated values by existing ones, three times in four."""

    def often() -> bool:
        # Hypothesis favours (and shrinks towards) 0: the steered, simpler choice.
        return data.draw(st.integers(0, 3), label="steer") != 3

    for name in list(case.path_parameters or {}):
        if name in known.path and often():
            case.path_parameters[name] = known.path[name]
    if isinstance(case.query, dict):
        for name in list(case.query):
            if name in known.query and often():
                case.query[name] = data.draw(st.sampled_from(known.query[name]))
    if not isinstance(case.body, dict):
        return
    if case.path in OAUTH_FORM_PATHS:
        for name in list(case.body):
            if name in known.form and often():
                case.body[name] = data.draw(st.sampled_from(known.form[name]))
        if often():
            case.body.update(known.credentials)
        return
    for name in list(case.body):
        if name in known.body and often():
            case.body[name] = data.draw(st.sampled_from(known.body[name]))


@dataclass
class _Mismatches:
    """First reproduction and count of each failed document check."""

    seen: dict[str, tuple[int, str]] = field(default_factory=dict)

    def record(self, check: str, error: BaseException, curl: str) -> None:
        count, first = self.seen.get(check, (0, f"{error}\n    {curl}"))
        self.seen[check] = (count + 1, first)

    def report(self) -> str:
        return "\n".join(
            f"- {check} x{count}: {first}" for check, (count, first) in sorted(self.seen.items())
        )


@pytest.mark.parametrize(("label", "expected"), _operations())
def test_operation_conforms_and_never_fails(
    label: str, expected: frozenset[str], known: Known
) -> None:
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None
    strategies = [
        operation.as_strategy(generation_mode=mode)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    ]
    mismatches = _Mismatches()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # Generation from a large schema is slow and filtered; that is not the app's fault.
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        case = data.draw(st.one_of(strategies), label="case")
        _steer(case, data, known)
        headers = bearer(known.admin_token) if case.path.startswith("/workspace/") else {}
        response = case.call(app=known.app, headers=headers)
        case.validate_response(response, checks=[not_a_server_error], headers=headers)
        for name, check in DOCUMENT_CHECKS.items():
            try:
                case.validate_response(response, checks=[check], headers=headers)
            except (AssertionError, BaseExceptionGroup) as error:  # a FailureGroup
                mismatches.record(name, error, case.as_curl_command(headers=headers))

    fuzz()
    unexpected = set(mismatches.seen) - expected
    if unexpected:
        raise AssertionError(f"{label} contradicts its document:\n{mismatches.report()}")
    if mismatches.seen:
        raise DocumentMismatch(f"{label}, known bug:\n{mismatches.report()}")
