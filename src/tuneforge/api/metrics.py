"""Prometheus metrics of one app (its own registry: no process-wide globals).

Besides HTTP and inference metrics: the process (CPU, memory, open files), and the fine-tuning jobs read from the
database at scrape time, so that they cover every worker: jobs by status, failures by error code, the time jobs
waited in the queue and the time they trained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

__all__ = ["JobStats", "Metrics"]


@dataclass
class JobStats:
    """Fine-tuning jobs as the database has them."""

    by_status: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # failed jobs by error code
    queue_wait: list[float] = field(default_factory=list)  # seconds from queued (files validated) to started
    training: list[float] = field(default_factory=list)  # seconds from started to finished, succeeded jobs


class _JobsCollector:
    def __init__(self, job_stats: Callable[[], JobStats]) -> None:
        self.job_stats = job_stats

    def collect(self) -> Iterator[Any]:
        try:
            stats = self.job_stats()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is busy
            stats = JobStats()
        g = GaugeMetricFamily("tuneforge_jobs", "Fine-tuning jobs by status", labels=["status"])
        for status, n in sorted(stats.by_status.items()):
            g.add_metric([status], n)
        yield g
        f = CounterMetricFamily("tuneforge_job_failures", "Failed fine-tuning jobs by error code", labels=["code"])
        for code, n in sorted(stats.failures.items()):
            f.add_metric([code], n)
        yield f
        for name, doc, values in (
                ("tuneforge_job_queue_wait_seconds", "Time jobs waited in the queue before training started",
                 stats.queue_wait),
                ("tuneforge_job_training_seconds", "Time succeeded jobs trained", stats.training)):
            s = SummaryMetricFamily(name, doc)
            s.add_metric([], count_value=len(values), sum_value=float(sum(values)))
            yield s


class Metrics:
    def __init__(self, job_stats: Callable[[], JobStats] | None = None, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
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
        if job_stats is not None:
            self.registry.register(_JobsCollector(job_stats))  # type: ignore[arg-type]

    def on_batch(self, kind: str, items: int, requests: int, seconds: float) -> None:
        self.batch_items.labels(kind).observe(items)
        self.batch_requests.labels(kind).observe(requests)
        self.batch_seconds.labels(kind).observe(seconds)
