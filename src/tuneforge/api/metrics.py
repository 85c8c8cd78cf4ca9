"""Prometheus metrics of one app (its own registry: no process-wide globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

__all__ = ["Metrics"]


class _JobsCollector:
    def __init__(self, count_jobs: Callable[[], dict[str, int]]) -> None:
        self.count_jobs = count_jobs

    def collect(self) -> Iterator[Any]:
        g = GaugeMetricFamily("tuneforge_jobs", "Fine-tuning jobs by status", labels=["status"])
        try:
            counts = self.count_jobs()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is busy
            counts = {}
        for status, n in sorted(counts.items()):
            g.add_metric([status], n)
        yield g


class Metrics:
    def __init__(self, count_jobs: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tuneforge_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("tuneforge_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch_items = Histogram("tuneforge_inference_batch_items", "Inputs per forward pass", ["kind"],
                                     registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_requests = Histogram("tuneforge_inference_batch_requests", "Requests per forward pass",
                                        ["kind"], registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64))
        self.batch_seconds = Histogram("tuneforge_inference_forward_seconds", "Duration of a batched forward pass",
                                       ["kind"], registry=self.registry)
        self.loaded_model_bytes = Gauge("tuneforge_loaded_model_bytes", "Memory of the loaded models",
                                        registry=self.registry)
        if count_jobs is not None:
            self.registry.register(_JobsCollector(count_jobs))  # type: ignore[arg-type]

    def on_batch(self, kind: str, items: int, requests: int, seconds: float) -> None:
        self.batch_items.labels(kind).observe(items)
        self.batch_requests.labels(kind).observe(requests)
        self.batch_seconds.labels(kind).observe(seconds)
