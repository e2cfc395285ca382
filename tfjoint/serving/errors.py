"""ServingError: an error carrying the gRPC status code TF Serving would return.

Every serving module raises it; the gRPC and REST front ends map it to their status codes.
"""

from __future__ import annotations

import grpc


class ServingError(Exception):
    """An error carrying the gRPC status code TF Serving would return."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid(msg: str) -> ServingError:
    """An INVALID_ARGUMENT ServingError."""
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


_GRPC_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def grpc_code(value: int) -> grpc.StatusCode:
    return _GRPC_BY_VALUE.get(int(value), grpc.StatusCode.UNKNOWN)


__all__ = ["ServingError", "grpc_code", "invalid"]
