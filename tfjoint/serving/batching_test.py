"""The batch scheduler survives cancelled and expired requests (issue 19, finding 7)."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import numpy as np
import pytest

from tfjoint.serving.batching import BatchingOptions, BatchScheduler


def test_cancelled_and_expired_requests_mid_batch_leave_the_batch_thread_serving(monkeypatch):
    crashed = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(args))
    gate = threading.Event()

    def run(inputs, outputs):
        gate.wait(5)  # hold the first batch so that the next ones queue up behind it
        return {"y": inputs["x"] * 2}

    options = BatchingOptions(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    scheduler = BatchScheduler(run, ["x"], ["y"], options, name="toy")
    try:
        first = scheduler.submit({"x": np.ones((4, 1))}, deadline=None)  # fills one batch
        time.sleep(0.2)
        # Queued behind it: requests whose deadline passes and whose client then cancels,
        # expired ones, cancelled ones, and a normal one.
        expired = [scheduler.submit({"x": np.ones((1, 1))}, deadline=time.monotonic() + 0.05) for _ in range(3)]
        cancelled = [scheduler.submit({"x": np.ones((1, 1))}, deadline=None) for _ in range(3)]
        normal = scheduler.submit({"x": np.full((1, 1), 3.0)}, deadline=None)
        time.sleep(0.2)  # the deadlines pass while the thread is busy
        for f in [*expired[:2], *cancelled]:
            assert f.cancel()
        gate.set()
        assert first.result(5)["y"].shape == (4, 1)
        np.testing.assert_array_equal(normal.result(5)["y"], [[6.0]])
        with pytest.raises(Exception, match="Deadline Exceeded"):
            expired[2].result(5)
        # Later requests are still answered: the thread is alive.
        later = [scheduler.submit({"x": np.full((1, 1), float(i))}, deadline=None) for i in range(8)]
        assert [float(f.result(5)["y"][0, 0]) for f in later] == [2.0 * i for i in range(8)]
        assert all(f.cancelled() for f in [*expired[:2], *cancelled])
    finally:
        scheduler.stop()
    assert crashed == []
