"""``tensorflow.serving.PredictionService`` and ``ModelService`` over the model manager."""

from __future__ import annotations

import functools
import logging
import time

import grpc
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
    status_pb2,
)

from tfjoint.serving.errors import ServingError
from tfjoint.serving.manager import ModelManager

log = logging.getLogger("tfjoint.serving")


def _deadline(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:  # no deadline set by the client
        return None
    return time.monotonic() + remaining


def _handled(fn):
    """Maps ServingError to the gRPC status; anything unexpected is INTERNAL, never a crash."""

    @functools.wraps(fn)
    def wrapper(self, request, context):
        deadline = _deadline(context)
        if deadline is not None and deadline <= time.monotonic():
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        try:
            return fn(self, request, context, deadline)
        except ServingError as e:
            code, message = e.code, e.message
        except Exception as e:
            log.exception("internal error in %s", fn.__name__)
            code, message = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
        context.abort(code, message)

    return wrapper


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager):
        self.manager = manager

    @_handled
    def Predict(self, request, context, deadline):
        return self.manager.predict(request, deadline=deadline)

    @_handled
    def Classify(self, request, context, deadline):
        return self.manager.classify(request)

    @_handled
    def Regress(self, request, context, deadline):
        return self.manager.regress(request)

    @_handled
    def MultiInference(self, request, context, deadline):
        return self.manager.multi_inference(request)

    @_handled
    def GetModelMetadata(self, request, context, deadline):
        return self.manager.get_model_metadata(request)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self.manager = manager

    @_handled
    def GetModelStatus(self, request, context, deadline):
        return self.manager.get_model_status(request)

    @_handled
    def HandleReloadConfigRequest(self, request, context, deadline):
        # model_service_impl.cc: the status goes into the response *and* the RPC status.
        self.manager.reload_config(request.config)
        return model_management_pb2.ReloadConfigResponse(status=status_pb2.StatusProto(error_code=0))


def add_services(server: grpc.Server, manager: ModelManager) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
