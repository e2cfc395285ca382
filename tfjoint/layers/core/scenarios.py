"""The scenario convention, owned here and nowhere else.

A transformed scenario id is ``0 .. P-1`` for the ``P`` known scenarios and
``UNKNOWN = P`` (see :func:`unknown_scenario`) for a scenario the transform never saw;
any other id takes the unknown path too, rather than raising. Layers turn ids into
segments with :func:`scenario_segments` and never compare ids themselves.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import positive_int


def split_scenario_inputs(inputs: Any) -> tuple[Any, Any]:
    """``(x, scenario)`` from ``{"inputs": x, "scenario": ids}`` or ``[x, ids]``."""
    if isinstance(inputs, dict):
        if set(inputs) != {"inputs", "scenario"}:
            raise ValueError(f"expected the keys 'inputs' and 'scenario'. Received: keys={sorted(inputs)}")
        return inputs["inputs"], inputs["scenario"]
    if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
        return inputs[0], inputs[1]
    raise ValueError(f"expected [inputs, scenario] or {{'inputs', 'scenario'}}. Received: {inputs!r}")


def scenario_segments(scenario: Any, num_scenarios: int) -> Any:
    """Flat int32 segment ids: ``p`` for a known scenario ``p``, ``num_scenarios`` otherwise.

    Transformed scenario ids are ``num_scenarios`` for an unknown scenario; anything outside
    ``[0, num_scenarios)`` takes the same shared path rather than raising.
    """
    ids = ops.reshape(ops.cast(scenario, "int32"), (-1,))
    known = ops.logical_and(ids >= 0, ids < num_scenarios)
    return ops.where(known, ids, ops.full_like(ids, num_scenarios))


def check_num_scenarios(num_scenarios: int) -> int:
    return positive_int("num_scenarios", num_scenarios)


def build_scenario_embedding(num_scenarios: int, dim: int, dtype: Any) -> keras.layers.Embedding:
    """A built ``scenario_embedding`` table, one row of size ``dim`` per known scenario.

    Call it from a layer's ``build`` and keep it as the layer's ``scenario_embedding``.
    """
    table = keras.layers.Embedding(num_scenarios, dim, name="scenario_embedding", dtype=dtype)
    table.build((None,))
    return table


def embed_known_scenarios(table: keras.layers.Embedding, seg: Any, dtype: Any) -> Any:
    """Each row's embedding in ``table``, zeros for an unknown scenario.

    ``seg`` comes from :func:`scenario_segments` with ``table.input_dim`` scenarios, so an
    unknown scenario is ``seg == table.input_dim``.
    """
    num_scenarios = table.input_dim
    known = ops.cast(seg < num_scenarios, dtype)[:, None]
    return table(ops.minimum(seg, num_scenarios - 1)) * known


def star_weights(kernel: Any, bias: Any, scenario_kernels: Any, scenario_biases: Any) -> tuple[Any, Any]:
    """``(W_p ⊙ W, b_p + b)`` for every scenario ``p``, row ``P`` being ``(W, b)`` (the unknown one).

    ``kernel`` and ``bias`` are the shared ``W, b``; ``scenario_kernels`` and
    ``scenario_biases`` stack the ``P`` scenarios' ``W_p, b_p`` on axis 0.
    """
    w_p = ops.concatenate([scenario_kernels, ops.ones((1, *kernel.shape), scenario_kernels.dtype)], axis=0)
    b_p = ops.concatenate([scenario_biases, ops.zeros((1, *bias.shape), scenario_biases.dtype)], axis=0)
    return w_p * kernel[None], b_p + bias[None]
