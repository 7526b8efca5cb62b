"""A serving process tunes its garbage collector once started; a test's app does not."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from centrali.config import Settings
from centrali.store.db import Database
from centrali.web import app as app_module


@pytest.mark.parametrize("server_process", [True, False])
def test_only_a_server_process_tunes_the_collector(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch, server_process: bool
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(app_module, "tune_gc", lambda: calls.append(True))
    built = app_module.create_app(settings, db=db, server_process=server_process)
    with TestClient(built) as client:
        assert client.get("/healthz").status_code == 200
    assert calls == ([True] if server_process else [])


def test_tune_gc_freezes_the_heap_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        app_module.tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (7000, 50, 1000)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
