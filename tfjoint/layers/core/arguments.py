"""Checks of layer constructor arguments, shared by the layers of :mod:`tfjoint.layers`.

Each check returns the value in the type the layer stores and otherwise raises a
``ValueError`` that names the argument: ``"<name> must be ... Received: <name>=<value>"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``int(value)``; raises unless it is ``>= minimum``."""
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}. Received: {name}={value}")
    return int(value)


def whole_number(name: str, value: Any) -> int:
    """``int(value)``; raises unless ``value`` is a whole number ``>= 1`` (``1.5`` is refused)."""
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be an int >= 1. Received: {name}={value}")
    return int(value)


def top_k(name: str, value: Any, num_experts: int) -> int:
    """``int(value)``; raises unless it is in ``[1, num_experts]``."""
    if not 1 <= int(value) <= int(num_experts):
        raise ValueError(f"{name} must be in [1, num_experts={num_experts}]. Received: {name}={value}")
    return int(value)


def layer_units(name: str, values: Iterable[Any], allow_empty: bool = False) -> list[int]:
    """Layer sizes as a list of ints; raises on a size below 1, or on no size unless ``allow_empty``."""
    sizes = [int(u) for u in values]
    if (not sizes and not allow_empty) or (sizes and min(sizes) < 1):
        kind = "a list" if allow_empty else "a non-empty list"
        raise ValueError(f"{name} must be {kind} of positive ints. Received: {name}={sizes}")
    return sizes


def dropout_rate(value: Any) -> float:
    """``float(value)``; raises unless it is in ``[0, 1)``."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={value}")
    return float(value)


def non_negative(name: str, value: Any) -> float:
    """``float(value)``; raises unless it is ``>= 0``."""
    if value < 0:
        raise ValueError(f"{name} must be >= 0. Received: {name}={value}")
    return float(value)


def positive(name: str, value: Any) -> float:
    """``float(value)``; raises unless it is ``> 0``."""
    if value <= 0:
        raise ValueError(f"{name} must be > 0. Received: {name}={value}")
    return float(value)


def last_dim(shape: Any, input_shape: Any) -> int:
    """The last dimension of ``shape`` (the inputs' part of ``input_shape``); raises when unknown."""
    if shape[-1] is None:
        raise ValueError(f"the last dimension of inputs must be known. Received: input_shape={input_shape}")
    return int(shape[-1])


def check_tasks(task_names: list[str] | tuple[str, ...]) -> list[str]:
    """``list(task_names)``; raises unless it is non-empty and without duplicates."""
    names = list(task_names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"task_names must be non-empty and unique. Received: task_names={names}")
    return names
