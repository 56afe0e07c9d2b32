"""Prometheus metrics of one app: request latency, ratings ingested, the model version served."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
            "collabkit_model_version", "Id of the live model version served (0: none)",
            registry=self.registry,
        )  # fmt: skip
        self.fallbacks = Counter(
            "collabkit_recommendations", "Recommendation responses by how the user was placed",
            ["mode"], registry=self.registry,
        )  # fmt: skip
