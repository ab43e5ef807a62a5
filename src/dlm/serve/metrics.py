"""The server's Prometheus metrics (``/metrics``), in a registry of their own so that several
servers (tests) can live in one process."""

from __future__ import annotations


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.queue_depth = Gauge("dlm_queue_depth", "requests waiting for the worker",
                                 registry=r)
        self.running_rows = Gauge("dlm_running_rows", "rows being decoded", registry=r)
        self.steps = Counter("dlm_steps", "decoding steps taken (one per decoder per round)",
                             registry=r)
        self.tokens = Counter("dlm_tokens_committed", "tokens committed by decoding steps",
                              registry=r)
        self.step_seconds = Histogram(
            "dlm_step_seconds", "seconds per decoding step", registry=r,
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.requests = Counter("dlm_requests", "HTTP requests answered",
                                ["route", "status"], registry=r)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
