"""Serving: a TF Serving-compatible model server, client, warmup data and CLI pieces.

Heavy modules (TensorFlow, gRPC) load on first attribute access.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ModelServer": "tfjoint.serving.server",
    "ServerOptions": "tfjoint.serving.server",
    "serve_in_background": "tfjoint.serving.server",
    "read_model_config": "tfjoint.serving.server",
    "BindError": "tfjoint.serving.server",
    "ModelManager": "tfjoint.serving.manager",
    "ServingError": "tfjoint.serving.errors",
    "BatchingOptions": "tfjoint.serving.batching",
    "ServingClient": "tfjoint.serving.client",
    "make_example": "tfjoint.serving.client",
    "serialize_examples": "tfjoint.serving.client",
    "write_warmup_requests": "tfjoint.serving.warmup",
    "read_warmup_requests": "tfjoint.serving.warmup",
    "add_serve_parser": "tfjoint.serving.cli",
    "add_predict_parser": "tfjoint.serving.cli",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tfjoint.serving' has no attribute {name!r}")
