"""Prometheus metrics of the server (``GET /metrics``).

With several workers (``serve --workers N``) the supervisor points
``PROMETHEUS_MULTIPROC_DIR`` at a private directory before the workers start, and every
worker's values are summed at scrape time, whichever worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

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


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
