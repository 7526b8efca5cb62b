"""``GET /workspace/{slug}/api/v1/records/{id}`` with a service account's token, in front of
the framework.

The workspace API's hot read. Through FastAPI it cost about twice the token endpoint's
non-signing work: routing through every router, solving the dependencies, four layers of
middleware. This handler answers the one case that matters for load, a service account
reading a record, with the same steps as the route (``auth.check_token``, the batched
account check, ``records:read``, the batched record read), the same bytes (the route's
response model, serialized by pydantic as FastAPI does) and the same refusals (the app's
own ``api_error_response``, ``store_unavailable_response``). Everything else (a user's
token, a body on the GET, a bug) is handed to the FastAPI app unchanged, which answers it as
it always has; a user's token is then checked again there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from centrali.services import auth
from centrali.services import structures as svc
from centrali.services.errors import ApiError
from centrali.services.permissions import RECORDS_READ
from centrali.services.structures import parse_record_id
from centrali.web.errors import STORE_ERRORS, api_error_response, store_unavailable_response
from centrali.web.responses import Record
from centrali.web.runtime import Runtime

ROUTE = "/workspace/{workspace_slug}/api/v1/records/{record_id}"
_PATH = re.compile(r"/workspace/([^/]+)/api/v1/records/([^/]+)")
_HEADERS = [(b"content-type", b"application/json")]


class RecordReadDispatcher:
    """Answers a service account's good ``GET …/records/{id}``; passes everything else to
    ``app``. ``route`` is the FastAPI route of the same path (the metrics' label)."""

    def __init__(self, app: ASGIApp, *, runtime: Callable[[], Runtime], route: Any) -> None:
        self.app = app
        self.runtime = runtime
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _PATH.fullmatch(scope["path"])
            if match is not None:
                answer = await self._read(scope, match.group(1), match.group(2))
                if answer is not None:
                    scope["route"] = self.route
                    if isinstance(answer, bytes):
                        length = (b"content-length", str(len(answer)).encode())
                        start = {"type": "http.response.start", "status": 200}
                        await send({**start, "headers": [*_HEADERS, length]})
                        await send({"type": "http.response.body", "body": answer})
                    else:
                        await answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _read(
        self, scope: Scope, workspace_slug: str, record_id: str
    ) -> bytes | Response | None:
        """The record's JSON, a refusal, or None when this request is the route's."""
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name in (b"content-length", b"transfer-encoding"):
                return None  # a body on a GET: the framework's rules
        runtime = self.runtime()
        try:
            token = auth.check_token(
                authorization=authorization,
                workspace_slug=workspace_slug,
                policy=runtime.policy,
                now=runtime.clock.now(),
            )
            if not token.is_service_account:
                return None
            found = await runtime.grant_lookups.find(auth.service_account_key(token))
            principal = auth.service_account_principal(token, workspace_slug, found)
            auth.require_permission(principal, RECORDS_READ)
            row = await runtime.record_reads.find((workspace_slug, parse_record_id(record_id)))
            record = Record.of(svc.record_view(row))
            return record.__pydantic_serializer__.to_json(record, by_alias=True)
        except ApiError as refusal:
            return api_error_response(refusal)
        except STORE_ERRORS as exc:  # answered here: the route would ask the store again
            return store_unavailable_response(exc)
        except Exception:  # a bug: the route answers it (500, the traceback in the log)
            return None
