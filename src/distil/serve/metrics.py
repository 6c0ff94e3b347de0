"""Prometheus metrics of one server (``GET /metrics``, text exposition format 0.0.4).

Each app has its own registry, so two servers in one process (tests) do not mix their counts.
Labels are bounded: ``route`` is the route's template (``/v2/models/{name}/infer``) or ``other``,
``model`` a served model's name, ``version`` its version (a loaded one; one is added per promotion).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("distil_requests", "HTTP requests by route and status code", ["route", "code"], registry=r)
        self.errors = Counter("distil_request_errors", "HTTP requests answered with a 4xx or 5xx status", ["route", "code"], registry=r)
        self.latency = Histogram(
            "distil_request_duration_seconds", "time from request to response", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram("distil_batch_size", "samples per forward pass", ["model", "version"], buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("distil_queue_depth", "requests waiting for a batch", ["model", "version"], registry=r)
        self.answered = Counter("distil_inference_samples", "samples answered, per model version", ["model", "version"], registry=r)
        self.compute = Histogram(
            "distil_compute_seconds", "forward pass of a request's batch, per model version", ["model", "version"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.swaps = Counter("distil_version_swaps", "versions that became the newest while serving", ["model"], registry=r)
        self.feedback = Counter("distil_feedback_samples", "inputs written to the feedback transfer set", registry=r)

    def observe(self, route: str, code: int, seconds: float) -> None:
        self.requests.labels(route, str(code)).inc()
        if code >= 400:
            self.errors.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
