"""Request metrics in TF Serving's Prometheus naming, and the decorator that records them."""

from __future__ import annotations

import collections
import threading
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tfjoint.features import SCENARIO_FALLBACK_KEY
from tfjoint.serving.errors import ServingError


class Metrics:
    """Request counters in TF Serving's Prometheus naming (``:tensorflow:serving:request_count``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.count: collections.Counter = collections.Counter()  # (model, api, status) -> n
        self.latency_sum: collections.Counter = collections.Counter()  # (model, api) -> seconds
        self.scenario_fallback: collections.Counter = collections.Counter()  # model -> rows

    def record(self, model: str, api: str, code: grpc.StatusCode, seconds: float) -> None:
        with self._lock:
            self.count[(model, api, code.name)] += 1
            self.latency_sum[(model, api)] += seconds

    def record_scenario_fallback(self, model: str, response: predict_pb2.PredictResponse) -> None:
        """Counts the rows a tfjoint model served through its shared path (unknown scenario)."""
        if SCENARIO_FALLBACK_KEY not in response.outputs:
            return
        rows = int(tf.make_ndarray(response.outputs[SCENARIO_FALLBACK_KEY]).sum())
        if rows:
            with self._lock:
                self.scenario_fallback[model] += rows

    def prometheus_text(self) -> str:
        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        with self._lock:
            lines = ["# TYPE :tensorflow:serving:request_count counter"]
            for (model, api, status), n in sorted(self.count.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{esc(model)}",api="{api}",status="{status}"}} {n}'
                )
            lines.append("# TYPE :tensorflow:serving:request_latency_seconds_sum counter")
            for (model, api), t in sorted(self.latency_sum.items()):
                lines.append(
                    f':tensorflow:serving:request_latency_seconds_sum{{model_name="{esc(model)}",api="{api}"}} {t:.6f}'
                )
            lines.append("# TYPE :tfjoint:serving:scenario_fallback_count counter")
            for model, n in sorted(self.scenario_fallback.items()):
                lines.append(f':tfjoint:serving:scenario_fallback_count{{model_name="{esc(model)}"}} {n}')
        return "\n".join(lines) + "\n"


def metered(api: str):
    """Decorates a ModelManager API method: counts its calls by status and sums its latency."""

    def deco(fn):
        def wrapper(self, request, *args, **kwargs):
            if api == "MultiInference":
                model = request.tasks[0].model_spec.name if request.tasks else ""
            else:
                model = request.model_spec.name
            start = time.monotonic()
            code = grpc.StatusCode.OK
            try:
                return fn(self, request, *args, **kwargs)
            except ServingError as e:
                code = e.code
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                raise
            finally:
                self.metrics.record(model, api, code, time.monotonic() - start)

        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        return wrapper

    return deco


__all__ = ["Metrics", "metered"]
