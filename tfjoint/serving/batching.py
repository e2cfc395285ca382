"""Request batching: TF Serving's BatchingParameters and a batch scheduler.

The scheduler knows nothing of servables: it is given the callable that runs one merged batch.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc
import numpy as np

from tfjoint.serving.errors import ServingError, invalid


@dataclasses.dataclass
class BatchingOptions:
    """TF Serving's BatchingParameters (defaults of its SharedBatchScheduler)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = max(1, os.cpu_count() or 1)
    allowed_batch_sizes: tuple = ()

    @classmethod
    def from_proto(cls, p) -> BatchingOptions:
        o = cls()
        if p.HasField("max_batch_size"):
            o.max_batch_size = p.max_batch_size.value
        if p.HasField("batch_timeout_micros"):
            o.batch_timeout_micros = p.batch_timeout_micros.value
        if p.HasField("max_enqueued_batches"):
            o.max_enqueued_batches = p.max_enqueued_batches.value
        if p.HasField("num_batch_threads"):
            o.num_batch_threads = p.num_batch_threads.value
        o.allowed_batch_sizes = tuple(p.allowed_batch_sizes)
        if o.max_batch_size <= 0 or o.num_batch_threads <= 0 or o.max_enqueued_batches <= 0:
            raise ValueError("max_batch_size, num_batch_threads and max_enqueued_batches must be positive")
        if o.allowed_batch_sizes:
            if list(o.allowed_batch_sizes) != sorted(o.allowed_batch_sizes):
                raise ValueError("allowed_batch_sizes entries must be monotonically increasing")
            if o.allowed_batch_sizes[-1] != o.max_batch_size:
                raise ValueError("Last entry in allowed_batch_sizes must match max_batch_size")
        return o


class _Task:
    __slots__ = ("deadline", "future", "inputs", "size")

    def __init__(self, inputs, size, deadline):
        self.inputs = inputs
        self.size = size
        self.deadline = deadline
        self.future: futures.Future = futures.Future()


class BatchScheduler:
    """Concatenates concurrent calls of one signature along dim 0, runs once, splits back."""

    def __init__(
        self,
        run: Callable[[dict[str, np.ndarray], list[str]], dict[str, np.ndarray]],
        input_aliases: list[str],
        output_aliases: list[str],
        options: BatchingOptions,
        *,
        name: str = "",
    ):
        """``run(inputs, output_aliases)`` runs the signature once on a merged batch."""
        self._run = run
        self.options = options
        self._input_aliases = input_aliases
        self._output_aliases = output_aliases
        self._cond = threading.Condition()
        self._open: list[_Task] = []
        self._open_size = 0
        self._open_since = 0.0
        self._ready: collections.deque = collections.deque()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for t in self._threads:
            t.start()

    @property
    def stopped(self) -> bool:
        return self._stopping

    def _close_open(self) -> None:
        if self._open:
            self._ready.append(self._open)
            self._open, self._open_size = [], 0

    def submit(self, inputs: dict[str, np.ndarray], deadline: float | None) -> futures.Future:
        sizes = set()
        for a in self._input_aliases:
            if inputs[a].ndim == 0:
                raise invalid("Batching Run() input tensors must have at least one dimension")
            sizes.add(inputs[a].shape[0])
        if len(sizes) > 1:
            raise invalid("Batching Run() input tensors must have equal 0th-dimension size")
        size = sizes.pop() if sizes else 0
        if size > self.options.max_batch_size:
            raise invalid(
                f"Task size {size} is larger than maximum input batch size {self.options.max_batch_size}"
            )
        task = _Task(inputs, size, deadline)
        with self._cond:
            if self._stopping:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "Batch scheduler is shutting down")
            if self._open_size + size > self.options.max_batch_size:
                self._close_open()
            if len(self._ready) >= self.options.max_enqueued_batches:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full",
                )
            if not self._open:
                self._open_since = time.monotonic()
            self._open.append(task)
            self._open_size += size
            if self._open_size >= self.options.max_batch_size:
                self._close_open()
            self._cond.notify()
        return task.future

    def _next_batch(self):
        timeout = self.options.batch_timeout_micros / 1e6
        with self._cond:
            while True:
                if self._ready:
                    return self._ready.popleft()
                if self._open:
                    wait = self._open_since + timeout - time.monotonic()
                    if wait <= 0 or self._stopping:
                        batch = self._open
                        self._open, self._open_size = [], 0
                        return batch
                    self._cond.wait(wait)
                elif self._stopping:
                    return None
                else:
                    self._cond.wait()

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._process(batch)
            except Exception:  # noqa: BLE001 - the thread serves every later batch: it must not end
                logging.exception("batch thread %s: a batch failed outside the model run", threading.current_thread().name)

    def _process(self, batch: list[_Task]) -> None:
        now = time.monotonic()
        live = []
        for t in batch:
            # A task its client cancelled is dropped first: setting an exception on a
            # cancelled future raises InvalidStateError, which would end this batch thread.
            if not t.future.set_running_or_notify_cancel():
                continue
            if t.deadline is not None and now >= t.deadline:
                t.future.set_exception(ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
            else:
                live.append(t)
        if not live:
            return
        try:
            merged = {
                a: np.concatenate([t.inputs[a] for t in live], axis=0) if len(live) > 1 else live[0].inputs[a]
                for a in self._input_aliases
            }
            total = sum(t.size for t in live)
            out = self._run(merged, self._output_aliases)
            for v in out.values():
                if v.ndim == 0 or v.shape[0] != total:
                    raise ServingError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension "
                        "sizes of the input tensors",
                    )
            offset = 0
            for t in live:
                t.future.set_result({a: v[offset : offset + t.size] for a, v in out.items()})
                offset += t.size
        except Exception as e:  # noqa: BLE001 - every task of the batch gets the error
            for t in live:
                if not t.future.done():
                    t.future.set_exception(e)

    def stop(self) -> None:
        """Drains the queue, then lets the batch threads exit."""
        with self._cond:
            self._stopping = True
            self._close_open()
            self._cond.notify_all()


__all__ = ["BatchScheduler", "BatchingOptions"]
