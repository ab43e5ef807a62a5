"""The model worker: one thread driving the step machine for every request (docs/serving.md).

Requests wait in a bounded queue; between steps the worker admits as many as
``max_concurrent`` allows (each ``Decoder.add``-ed to the decoder of its model id, so it joins
the batch already running there), steps every decoder with live requests once, hands each
job its rows' events, and releases the requests that finished. A job the client left, or that
ran past its deadline, is cancelled at the next step; a job whose answers are all decided (an
EOS or a stop string in settled text) is cancelled too, since nothing it would still decode
can change the text. Nothing else touches the networks.

    engine = Engine(served, max_concurrent=16, max_queue=64)
    engine.start()
    job = Job(...); engine.submit(job)       # QueueFull when the queue is full
    ... await job.next() ...                 # ("started", None), ("step", [RowEvent]), ...
    engine.stop()
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

from ..devices import autocast
from ..sample.driver import Decoder
from .metrics import Metrics


class QueueFull(Exception):
    """The queue holds ``max_queue`` jobs already."""


@dataclass
class Served:
    """One model id: a loaded model and the adapter weights it decodes with (None: the model
    has no adapters; {}: it has some, all switched off: the base alone)."""

    id: str
    model: object  # dlm.pipeline.Model
    weights: dict[str, float] | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    def activate(self) -> None:
        """Set the shared network's adapters as this id wants them."""
        if self.weights is None:
            return
        from ..models import lora

        network = self.model.network
        lora.set_enabled(network, bool(self.weights))
        if self.weights:
            lora.set_weights(network, {name: self.weights.get(name, 0.0)
                                       for name in lora.adapter_weights(network)})


@dataclass
class Job:
    """One HTTP request's rows: what to ``Decoder.add`` and where its events go. The worker
    ``post``s ("started", None), ("step", [RowEvent]), ("done", Generation), ("cancelled",
    Generation), ("timeout", None) or ("error", DLMError | Exception) from its thread; the
    handler reads them with ``await next()``."""

    served: Served
    canvases: list[list[int]]
    prompt_lengths: list[int]
    cfg: object  # SampleConfig
    no_eos: list[list[bool]] | None = None
    align: int | None = None
    seeds: list[int] | None = None
    top_logprobs: int | None = None
    record_trace: bool = False
    timeout: float | None = None
    loop: asyncio.AbstractEventLoop | None = None
    decided: object = None  # () -> bool: the answers are all final (then the job may stop)
    rid: int | None = None
    steps: int = 0
    cancelled: bool = False  # set by the handler (client gone); read by the worker

    def __post_init__(self):
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.deadline = None if self.timeout is None else time.monotonic() + self.timeout

    @property
    def rows(self) -> int:
        """Rows it decodes: canvases x (best_of or beam_width)."""
        return len(self.canvases) * max(self.cfg.num_samples, self.cfg.beam_width)

    def post(self, kind: str, value=None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.inbox.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: no one is listening
            self.cancelled = True

    async def next(self, timeout: float | None = None):
        """The next message, or None after ``timeout`` seconds without one."""
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except asyncio.TimeoutError:
            return None

    def cancel(self) -> None:
        self.cancelled = True


class Engine:
    def __init__(self, served: dict[str, Served], *, max_concurrent: int = 16,
                 max_queue: int = 64, metrics: Metrics | None = None):
        self.served = served
        self.max_concurrent, self.max_queue = max_concurrent, max_queue
        self.metrics = metrics or Metrics()
        self.queue: collections.deque[Job] = collections.deque()
        self.running: list[Job] = []
        self.decoders: dict[str, Decoder] = {}
        self.active: dict[int, str] = {}  # network -> the model id its adapters are set for
        self.wake = threading.Condition()
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.ready = False  # models loaded and the worker running
        self.failed: str | None = None  # why the models did not load

    # --- the handler's side -------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self.wake:
            if self.stopping:
                raise QueueFull
            if len(self.queue) >= self.max_queue:  # clients that left give their place up
                for gone in [j for j in self.queue if j.cancelled]:
                    self.queue.remove(gone)
                    gone.post("cancelled", None)
            if len(self.queue) >= self.max_queue:
                raise QueueFull
            self.queue.append(job)
            self.metrics.queue_depth.set(len(self.queue))
            self.wake.notify()

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about one running job's worth."""
        return max(1, min(30, len(self.queue) // max(1, self.max_concurrent) + 1))

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="dlm-worker", daemon=True)
        self.thread.start()
        self.ready = True

    def stop(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.ready = False

    # --- the worker ---------------------------------------------------------------------------
    def _decoder(self, served: Served) -> Decoder:
        if served.id not in self.decoders:
            m = served.model
            self.decoders[served.id] = Decoder(m.network, kind=m.spec, mask_id=m.mask_id,
                                               eos_id=m.eos_id, pad_id=m.pad_id)
        return self.decoders[served.id]

    def _admit(self) -> None:
        while True:
            with self.wake:
                if not self.queue or len(self.running) >= self.max_concurrent:
                    return
                job = self.queue.popleft()
                self.metrics.queue_depth.set(len(self.queue))
            if job.cancelled:
                job.post("cancelled", None)
                continue
            if job.deadline is not None and time.monotonic() > job.deadline:
                job.post("timeout", None)  # it waited its whole time in the queue
                continue
            try:
                with autocast(job.served.model.device):
                    job.rid = self._decoder(job.served).add(
                        job.canvases, job.prompt_lengths, job.cfg, no_eos=job.no_eos,
                        align=job.align, seeds=job.seeds, record_trace=job.record_trace,
                        top_logprobs=job.top_logprobs)
            except Exception as e:  # a DLMError is the client's (400), the rest a 500
                job.post("error", e)
                continue
            self.running.append(job)
            job.post("started", self.decoders[job.served.id].requests[job.rid].plan_steps())
        self.metrics.running_rows.set(sum(j.rows for j in self.running))

    def _settle(self) -> None:
        """Release finished jobs; cancel the ones whose client left, that ran out of time, or
        whose answers are decided."""
        now = time.monotonic()
        for job in list(self.running):
            d = self.decoders[job.served.id]
            request = d.requests[job.rid]
            if not request.done:
                late = job.deadline is not None and now > job.deadline
                if job.cancelled or late or (job.decided is not None and job.decided()):
                    d.cancel(job.rid)
                    gen = d.release(job.rid)
                    self.running.remove(job)
                    job.post("timeout" if late and not job.cancelled else
                             "cancelled" if job.cancelled else "done", gen)
                continue
            self.running.remove(job)
            job.post("done", d.release(job.rid))
        self.metrics.running_rows.set(sum(j.rows for j in self.running))

    def _step(self) -> None:
        by_decoder: dict[str, list[Job]] = {}
        for job in self.running:
            by_decoder.setdefault(job.served.id, []).append(job)
        for sid, jobs in by_decoder.items():
            d, served = self.decoders[sid], self.served[sid]
            t0 = time.perf_counter()
            try:
                if self.active.get(id(served.model.network)) != sid:  # adapters as this id
                    served.activate()
                    self.active[id(served.model.network)] = sid
                with autocast(served.model.device):
                    events = d.step()
            except Exception as e:  # the batch is lost: every job in it gets the error
                for job in jobs:
                    self.running.remove(job)
                    job.post("error", e)
                del self.decoders[sid]
                continue
            self.metrics.step_seconds.observe(time.perf_counter() - t0)
            self.metrics.steps.inc()
            mine: dict[int, list] = {}
            for e in events:
                mine.setdefault(e.request, []).append(e)
                self.metrics.tokens.inc(len(e.positions))
            for job in jobs:
                if job.rid in mine:
                    job.steps += 1
                    job.post("step", mine[job.rid])

    def _loop(self) -> None:
        while True:
            with self.wake:
                while not self.stopping and not self.queue and not self.running:
                    self.wake.wait(timeout=1.0)
                if self.stopping:
                    break
            try:
                self._admit()
                self._step()
                self._settle()
            except Exception as e:  # never let the worker die: fail what is running
                for job in self.running:
                    job.post("error", e)
                self.running.clear()
                self.decoders.clear()
        with self.wake:
            left = [*self.running, *self.queue]
            self.queue.clear()
        for job in left:
            job.post("error", RuntimeError("the server is shutting down"))
