"""Prometheus metrics of one app: request latency, ratings ingested, the model version served.

With several worker processes (``collabkit serve --workers N``) PROMETHEUS_MULTIPROC_DIR is set
before they start: every worker writes its values there and ``exposition`` adds them up.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Each app has its own registry, so several apps (tests) never clash."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "collabkit_request_seconds", "Request latency by route and status",
            ["method", "route", "status"], buckets=BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.ratings = Counter(
            "collabkit_ratings_ingested", "Ratings acknowledged (stored)", registry=self.registry
        )
        self.model_version = Gauge(
            "collabkit_model_version", "Id of the live model version served (0: none), per worker",
            registry=self.registry, multiprocess_mode="liveall",
        )  # fmt: skip
        self.fallbacks = Counter(
            "collabkit_recommendations", "Recommendation responses by how the user was placed",
            ["mode"], registry=self.registry,
        )  # fmt: skip

    def exposition(self) -> bytes:
        """The Prometheus text of this process, or of every worker when there are several."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        everyone = CollectorRegistry()
        multiprocess.MultiProcessCollector(everyone)
        return generate_latest(everyone)

    def close(self) -> None:
        """A worker leaving: its live gauges go with it."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(os.getpid())
