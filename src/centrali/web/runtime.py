"""What a running app holds: settings, store, keys; built once per process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from starlette.requests import Request

from centrali.config import Settings
from centrali.oauth.grants import IssuerConfig
from centrali.oauth.keys import KeySet
from centrali.oauth.reuse import TokenReuseCache
from centrali.services.auth import TokenPolicy
from centrali.store.client_store import SqlClientStore
from centrali.store.db import Database


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


@dataclass
class Runtime:
    settings: Settings
    db: Database
    keys: KeySet
    clock: SystemClock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self.clients = SqlClientStore(self.db.autocommit_engine)
        self.set_keys(self.keys)

    def set_keys(self, keys: KeySet) -> None:
        self.keys = keys
        s = self.settings
        reuse = TokenReuseCache(s.token_reuse_seconds) if s.token_reuse_seconds else None
        self.issuer_config = IssuerConfig(
            keys=keys, issuer=s.issuer, audience=s.audience, ttl=s.token_ttl, reuse=reuse
        )
        self.policy = TokenPolicy(keys=keys, issuer=s.issuer, audience=s.audience)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime
