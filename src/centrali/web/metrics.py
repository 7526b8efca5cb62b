"""Prometheus metrics of the server (``GET /metrics``).

With several workers (``serve --workers N``) the supervisor points
``PROMETHEUS_MULTIPROC_DIR`` at a private directory before the workers start, and every
worker's values are summed at scrape time, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

TOKENS_ISSUED = Counter(
    "centrali_tokens_issued_total", "Access tokens issued by the token endpoint", ["grant_type"]
)
TOKENS_REFUSED = Counter(
    "centrali_tokens_refused_total", "Token requests refused, by reason", ["reason"]
)
REQUESTS = Counter(
    "centrali_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
LATENCY = Histogram(
    "centrali_http_request_duration_seconds",
    "Time from request to the last byte of the answer",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STORE_ERRORS = Counter(
    "centrali_store_errors_total", "Store (database) errors seen while answering", ["component"]
)


# The labelled children of the per-request series, looked up once per label set: a
# ``labels()`` call validates and locks, which cost more than the increment. Bounded: route
# templates (or "unmatched"), the methods httptools parses, and status codes.
_answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def request_answered(route: str, method: str, status: int, elapsed: float) -> None:
    """Count one answered request and its latency."""
    key = (route, method, status)
    children = _answered.get(key)
    if children is None:
        children = (LATENCY.labels(route, method), REQUESTS.labels(route, method, str(status)))
        _answered[key] = children
    children[0].observe(elapsed)
    children[1].inc()


@lru_cache(maxsize=16)
def tokens_issued(grant_type: str) -> Any:
    """The ``centrali_tokens_issued_total`` child of a grant type (only grant types the
    token endpoint accepted reach here)."""
    return TOKENS_ISSUED.labels(grant_type)


class _Expiring:
    """The live-credentials-expiring gauge, read from the store at scrape time (shared by
    every worker and instance, so no per-process value to sum)."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "centrali_credentials_expiring",
            "Live credentials of live service accounts expiring within the window",
            labels=["within"],
        )
        for window, count in self._counts.items():
            family.add_metric([window], count)
        yield family


def render(expiring: Mapping[str, int] | None = None) -> tuple[bytes, str]:
    """The exposition text and its content type; ``expiring``: live credentials expiring
    within each window ("7d", "30d"), when the store answered."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if expiring is not None:
        extra = CollectorRegistry()
        extra.register(_Expiring(expiring))
        body += generate_latest(extra)
    return body, CONTENT_TYPE_LATEST
