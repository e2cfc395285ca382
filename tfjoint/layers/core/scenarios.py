"""The scenario convention, owned here and nowhere else.

A transformed scenario id is ``0 .. P-1`` for the ``P`` known scenarios and
:func:`unknown_scenario` ``= P`` for a scenario the transform never saw; any other id takes
the unknown path too, rather than raising (:func:`map_unknown` on raw ids, used by the
transform, the embedding and the serving signature; :func:`scenario_segments` in layers).

Per row, a layer either has a *shared row* for the unknown scenario (STAR's ``W``, M3oE's
``W_sh``, partitioned normalization's shared statistics) or *no scenario-specific part*
(HAMUR's and M-LoRA's adapters, HiNet's specific experts). :func:`scenario_one_hot` makes
that choice explicit at each use: ``unknown="shared"`` gives ``P + 1`` columns with the
unknown rows in column ``P``; ``unknown="zeros"`` gives ``P`` columns and all-zero unknown
rows. :func:`per_scenario_dense` applies one dense map per scenario, each row its own
(STAR, M3oE, SAR-Net, HAMUR).

No training row carries the unknown id on its own, so every fallback (a shared row, the
embedding's unknown row) would serve weights never trained in that role, and their random
initial values would make unknown-scenario predictions depend on the seed.
:class:`UnknownScenarioMasking` fixes that at training time: a seeded fraction of the rows
see the unknown id, in every consumer of the scenario at once.
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


def split_context_inputs(inputs: Any, keys: tuple[str, ...]) -> tuple[Any, ...]:
    """``inputs[k]`` for each of ``keys``, in order, from the dict a
    :class:`~tfjoint.layers.core.contracts.NeedsEmbeddings` component is called on
    (``{"inputs", "scenario", *extra_inputs}``); a clear error on any other input."""
    if not isinstance(inputs, dict) or set(inputs) != set(keys):
        received = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise ValueError(f"expected a dict with the keys {list(keys)}. Received: {received}")
    return tuple(inputs[k] for k in keys)


def unknown_scenario(num_scenarios: int) -> int:
    """The id of the unknown scenario: ``num_scenarios``, one past the known ids."""
    return num_scenarios


def is_known(ids: Any, num_scenarios: int) -> Any:
    """Boolean, same shape as ``ids``: whether each id is a known scenario ``0 .. P-1``."""
    return ops.logical_and(ids >= 0, ids < num_scenarios)


def map_unknown(ids: Any, num_scenarios: int) -> Any:
    """``ids`` (any shape and integer dtype) with every id outside ``[0, P)`` set to the unknown id."""
    return ops.where(is_known(ids, num_scenarios), ids, ops.full_like(ids, unknown_scenario(num_scenarios)))


def scenario_one_hot(seg: Any, num_scenarios: int, unknown: str, dtype: Any = "float32") -> Any:
    """One-hot rows of segments ``seg`` (from :func:`scenario_segments`).

    Args:
        seg: ``(batch,)`` int segments, ``P`` for an unknown scenario.
        num_scenarios: ``P``.
        unknown: ``"shared"``: ``P + 1`` columns, an unknown row selects column ``P`` (the
            layer's shared row); ``"zeros"``: ``P`` columns, an unknown row is all zeros
            (no scenario-specific part).
        dtype: the output dtype.

    Returns:
        ``(batch, P + 1)`` or ``(batch, P)``.
    """
    if unknown not in ("shared", "zeros"):
        raise ValueError(f"unknown must be 'shared' or 'zeros'. Received: unknown={unknown!r}")
    return ops.one_hot(seg, num_scenarios + 1 if unknown == "shared" else num_scenarios, dtype=dtype)


def per_scenario_dense(x: Any, kernels: Any, biases: Any, onehot: Any) -> Any:
    """``x_b W_s + b_s`` with each row's own scenario ``s``: one dense map per scenario.

    Args:
        x: ``(batch, ..., d_in)``; the middle axes (e.g. SAR-Net's experts) pair with the
            kernels' middle axes.
        kernels: ``(S, ..., d_in, d_out)``, one kernel per column of ``onehot``.
        biases: ``(S, ..., d_out)`` or ``None``.
        onehot: ``(batch, S)`` from :func:`scenario_one_hot`; an all-zero row gives zeros.

    Returns:
        ``(batch, ..., d_out)``.

    Every scenario's map is computed for every row, then each row keeps its own: cheaper
    than gathering a kernel per row for the few scenarios of a recommender.
    """
    per_scenario = ops.einsum("b...i,s...io->bs...o", x, kernels)
    if biases is not None:
        per_scenario = per_scenario + biases[None]
    return ops.einsum("bs,bs...o->b...o", ops.cast(onehot, per_scenario.dtype), per_scenario)


def scenario_segments(scenario: Any, num_scenarios: int) -> Any:
    """Flat int32 segment ids: ``p`` for a known scenario ``p``, ``num_scenarios`` otherwise.

    Transformed scenario ids are ``num_scenarios`` for an unknown scenario; anything outside
    ``[0, num_scenarios)`` takes the same shared path rather than raising.
    """
    return map_unknown(ops.reshape(ops.cast(scenario, "int32"), (-1,)), num_scenarios)


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
    known = ops.cast(is_known(seg, num_scenarios), dtype)[:, None]
    return table(ops.minimum(seg, num_scenarios - 1)) * known


def star_weights(kernel: Any, bias: Any, scenario_kernels: Any, scenario_biases: Any) -> tuple[Any, Any]:
    """``(W_p ⊙ W, b_p + b)`` for every scenario ``p``, row ``P`` being ``(W, b)`` (the unknown one).

    ``kernel`` and ``bias`` are the shared ``W, b``; ``scenario_kernels`` and
    ``scenario_biases`` stack the ``P`` scenarios' ``W_p, b_p`` on axis 0.
    """
    w_p = ops.concatenate([scenario_kernels, ops.ones((1, *kernel.shape), scenario_kernels.dtype)], axis=0)
    b_p = ops.concatenate([scenario_biases, ops.zeros((1, *bias.shape), scenario_biases.dtype)], axis=0)
    return w_p * kernel[None], b_p + bias[None]


@keras.saving.register_keras_serializable(package="tfjoint")
class UnknownScenarioMasking(keras.layers.Layer):
    """In training, replaces each row's scenario id by the unknown id with probability ``rate``.

    The joint model applies it once to its scenario input, before the embedding, the
    scenario adapter and a scenario-aware task architecture, so each of them trains its
    unknown-scenario path (the embedding's unknown row, STAR's shared ``W``, HAMUR's
    identity, ...) on the same rows, as scenario dropout. At inference it is the identity:
    a known scenario is always served through its own path.

    Args:
        num_scenarios: ``P``; the unknown id is :func:`unknown_scenario` ``= P``.
        rate: probability in ``[0, 1)`` that a training row's scenario is hidden; 0 turns
            the layer off.
        seed: seed of the draws (``None``: drawn from Keras's global seed, as ``Dropout``).

    Call arguments:
        inputs: integer scenario ids, any shape.
        training: whether to mask.

    Returns:
        ``inputs`` (same shape and dtype) with masked rows set to ``P``.

    Example:
    >>> layer = UnknownScenarioMasking(num_scenarios=3, rate=0.5, seed=0)
    >>> ids = keras.ops.zeros((4, 1), "int64")
    >>> bool(keras.ops.all(layer(ids, training=False) == ids))
    True
    """

    def __init__(self, num_scenarios: int, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1). Received: rate={rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or self.rate == 0.0:
            return inputs
        hidden = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator) < self.rate
        return ops.where(hidden, ops.full_like(inputs, unknown_scenario(self.num_scenarios)), inputs)

    def compute_output_spec(self, inputs: Any, training: bool | None = None) -> Any:
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_scenarios=self.num_scenarios, rate=self.rate, seed=self.seed)
        return config
