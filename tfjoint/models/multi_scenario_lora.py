"""M-LoRA: a shared backbone plus one low-rank adapter per scenario (Yang et al., RecSys 2024).

The layer :class:`MultiScenarioLowRankAdaptation` fills the ``scenario_adapter`` slot; the
functions :func:`pretrain`, :func:`fine_tune` and :func:`add_scenarios` implement the
paper's two-stage training on a :class:`tfjoint.models.joint.JointModel` that uses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfjoint import features
from tfjoint.models.arguments import last_dim, layer_units, whole_number
from tfjoint.models.joint import JointModel
from tfjoint.models.partitioned_normalization import (
    check_num_scenarios,
    scenario_segments,
    split_scenario_inputs,
)
from tfjoint.registry import register

_REFERENCE = (
    "Yang et al., MLoRA: Multi-Domain Low-Rank Adaptive Network for Click-Through Rate "
    "Prediction, RecSys 2024"
)


@register("m_lora", slot="scenario_adapter", family="multi_scenario", reference=_REFERENCE)
@keras.saving.register_keras_serializable(package="tfjoint")
class MultiScenarioLowRankAdaptation(keras.layers.Layer):
    """M-LoRA: dense backbone layers, each with a low-rank update per scenario.

    Layer ``l`` computes, for a row of scenario ``t``,
    ``h_l = activation(W_l h_{l-1} + b_l + B_{l,t} A_{l,t} h_{l-1})`` with ``h_0 = x``,
    ``A_{l,t} in R^{r_l x d_in}``, ``B_{l,t} in R^{d_out x r_l}`` and
    ``r_l = max(d_out // alpha, 1)``. ``A`` is drawn from ``kernel_initializer`` and ``B``
    starts at zero, so at initialization (and throughout :func:`pretrain`) every scenario
    computes the shared backbone; :func:`fine_tune` then trains only ``A_t, B_t``.

    Like every Keras kernel, the weights are stored transposed for row vectors:
    ``kernel_{l}`` is ``W_l^T`` ``(d_in, d_out)``, ``lora_a_{l}_{t}`` is ``A_{l,t}^T``
    ``(d_in, r_l)`` and ``lora_b_{l}_{t}`` is ``B_{l,t}^T`` ``(r_l, d_out)``. Each
    scenario's pair is a separate variable, so a whole pair can be frozen or trained.

    The paper (and its code) also gives each domain a bias ``b_t`` in the LoRA layers;
    following ``h = Wx + b + B_t A_t x`` this layer has the shared bias only, so a
    scenario's whole specific part is its rank-``r`` pair.

    An unknown scenario (any id outside ``[0, num_scenarios)``, in particular the
    transformed fallback ``num_scenarios``) has no pair: it gets the backbone only,
    ``h_l = activation(W_l h_{l-1} + b_l)``.

    Args:
        num_scenarios: number of known scenarios ``P``.
        units: output sizes ``d_out`` of the backbone layers.
        activation: activation of every layer, the last one included.
        alpha: the rank divisor, ``r_l = max(units[l] // alpha, 1)``.
        kernel_initializer: initializer of ``W`` and of every ``A``.
        seed: seed of the initializers.

    Call arguments:
        inputs: ``{"inputs": (batch, d) float, "scenario": (batch, 1) int}`` or the list
            ``[inputs, scenario]``.
        training: Python bool (unused: the layer has no training-only behaviour).

    Returns:
        ``(batch, units[-1])``.

    Example:
    >>> layer = MultiScenarioLowRankAdaptation(num_scenarios=2, units=[8, 4], alpha=2)
    >>> x = keras.ops.ones((3, 5))
    >>> tuple(layer({"inputs": x, "scenario": keras.ops.array([[0], [1], [2]])}).shape)
    (3, 4)
    >>> layer.ranks
    [4, 2]

    Reference:
        Yang et al., MLoRA: Multi-Domain Low-Rank Adaptive Network for Click-Through Rate
        Prediction, RecSys 2024.
    """

    def __init__(
        self,
        num_scenarios: int,
        units: list[int] | tuple[int, ...] = (64, 32),
        activation: str = "relu",
        alpha: int = 4,
        kernel_initializer: Any = "glorot_uniform",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios)
        self.units = layer_units("units", units)
        self.alpha = whole_number("alpha", alpha)
        self.activation = keras.activations.get(activation)
        self._activation_name = activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        self.ranks = [max(u // self.alpha, 1) for u in self.units]

    def _initializer(self, offset: int) -> keras.initializers.Initializer:
        # A fresh instance per weight: a reused unseeded initializer would repeat its values.
        init = self.kernel_initializer.__class__.from_config(self.kernel_initializer.get_config())
        if self.seed is not None and hasattr(init, "seed"):
            init.seed = self.seed + offset
        return init

    def build(self, input_shape: Any) -> None:
        fan_in = last_dim(split_scenario_inputs(input_shape)[0], input_shape)
        p = self.num_scenarios
        self.kernels, self.biases, self.lora_a, self.lora_b = [], [], [], []
        for i, (u, r) in enumerate(zip(self.units, self.ranks)):
            offset = i * (p + 1)
            self.kernels.append(
                self.add_weight(shape=(fan_in, u), initializer=self._initializer(offset), name=f"kernel_{i}")
            )
            self.biases.append(self.add_weight(shape=(u,), initializer="zeros", name=f"bias_{i}"))
            self.lora_a.append(
                [
                    self.add_weight(
                        shape=(fan_in, r),
                        initializer=self._initializer(offset + 1 + t),
                        name=f"lora_a_{i}_{t}",
                    )
                    for t in range(p)
                ]
            )
            self.lora_b.append(
                [self.add_weight(shape=(r, u), initializer="zeros", name=f"lora_b_{i}_{t}") for t in range(p)]
            )
            fan_in = u

    def fit_joint_model(
        self,
        model: JointModel,
        data: Any,
        epochs: int,
        optimizer: str | dict | keras.optimizers.Optimizer = "adam",
        batch_size: int = 32,
        verbose: Any = "auto",
    ) -> dict[str, keras.callbacks.History]:
        """Trains ``model`` (whose adapter is this layer) in the paper's two stages.

        The training entry point that the pipeline's Trainer and the benches use for a
        component that has one: with ``epochs`` passes over ``data`` in all,
        :func:`pretrain` takes ``ceil(epochs / 2)`` and :func:`fine_tune` (every scenario,
        each on its own rows) the rest, at least one.

        Returns:
            ``{"pretrain": History, "fine_tune_<t>": History, ...}``.
        """
        whole_number("epochs", epochs)
        kwargs = {"optimizer": optimizer, "batch_size": batch_size, "verbose": verbose}
        histories = {"pretrain": pretrain(model, data, epochs=(epochs + 1) // 2, **kwargs)}
        for t, history in fine_tune(model, data, epochs=max(epochs // 2, 1), **kwargs).items():
            histories[f"fine_tune_{t}"] = history
        return histories

    def lora_weights(self, scenario: int | None = None) -> list[Any]:
        """The ``A`` and ``B`` variables of ``scenario`` (of every scenario when ``None``)."""
        scenarios = range(self.num_scenarios) if scenario is None else [scenario]
        return [
            w
            for t in scenarios
            for i in range(len(self.units))
            for w in (self.lora_a[i][t], self.lora_b[i][t])
        ]

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, scenario = split_scenario_inputs(inputs)
        c = self.compute_dtype
        seg = scenario_segments(scenario, self.num_scenarios)
        # Unknown rows (seg == P) get an all-zero one-hot: no low-rank term, backbone only.
        onehot = ops.one_hot(seg, self.num_scenarios, dtype=c)[:, :, None]
        h = ops.cast(x, c)
        for i in range(len(self.units)):
            a = ops.stack([ops.cast(w, c) for w in self.lora_a[i]])  # (P, d_in, r): A_t^T for every t
            b = ops.stack([ops.cast(w, c) for w in self.lora_b[i]])  # (P, r, d_out): B_t^T for every t
            down = ops.einsum("bi,sir->bsr", h, a) * onehot  # A_t x, kept for the row's own t
            low_rank = ops.einsum("bsr,sro->bo", down, b)  # B_t A_t x
            backbone = ops.matmul(h, ops.cast(self.kernels[i], c)) + ops.cast(self.biases[i], c)  # W x + b
            h = self.activation(backbone + low_rank)
        return h

    def compute_output_shape(self, input_shape: Any) -> Any:
        x_shape, _ = split_scenario_inputs(input_shape)
        return (x_shape[0], self.units[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios,
            units=self.units,
            activation=self._activation_name,
            alpha=self.alpha,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            seed=self.seed,
        )
        return config


def _lora_adapter(model: JointModel) -> MultiScenarioLowRankAdaptation:
    adapter = getattr(model, "scenario_adapter", None)
    if not isinstance(adapter, MultiScenarioLowRankAdaptation):
        raise TypeError(
            "the model's scenario_adapter must be a MultiScenarioLowRankAdaptation ('m_lora'). "
            f"Received: scenario_adapter={adapter!r}"
        )
    return adapter


def _fresh_optimizer(optimizer: str | dict | keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    # A Keras 3 optimizer is built for one list of variables: every stage gets its own copy.
    return keras.optimizers.get(keras.optimizers.serialize(keras.optimizers.get(optimizer)))


@contextlib.contextmanager
def _training_stage(
    model: JointModel,
    optimizer: str | dict | keras.optimizers.Optimizer,
    train: list[Any],
    freeze_layers: bool,
) -> Iterator[None]:
    """Trains only the variables ``train`` inside the block, then restores the model.

    With ``freeze_layers``, every layer that holds none of ``train`` is also set
    ``trainable = False``, which keeps layers with statistics (batch norm, partitioned
    norm) in inference mode, so their non-trainable state does not move either.
    The model is compiled with a fresh copy of ``optimizer`` for the block (Keras 3
    collects the trainable variables at compile and fit time). On exit the layer and
    variable ``trainable`` flags are restored and the model is compiled again for them:
    with its previous compile configuration if it had one, else with a fresh copy of
    ``optimizer``. Optimizer state does not survive a stage.
    """
    layers = model._flatten_layers(include_self=False)  # parents before their sublayers
    layer_flags = [(layer, layer.trainable) for layer in layers]
    variable_flags = [(v, v.trainable) for v in model.variables]
    previous = model.get_compile_config() if model.compiled else None
    keep = {id(v) for v in train}
    try:
        if freeze_layers:
            for layer in layers:
                if not any(id(v) in keep for v in layer.variables):
                    layer.trainable = False
        for v, _ in variable_flags:
            v.trainable = id(v) in keep
        model.compile(optimizer=_fresh_optimizer(optimizer))
        yield
    finally:
        # The setter recurses into sublayers and their variables: restore top-down, then variables.
        for layer, flag in layer_flags:
            layer.trainable = flag
        for v, flag in variable_flags:
            v.trainable = flag
        if previous:
            model.compile_from_config(previous)
        else:
            model.compile(optimizer=_fresh_optimizer(optimizer))
            # As compile_from_config does: a saved model then holds a complete optimizer.
            model.optimizer.build(model.trainable_variables)


def _fit(model: JointModel, data: Any, epochs: int, batch_size: int, verbose: Any) -> keras.callbacks.History:
    if isinstance(data, tf.data.Dataset):
        return model.fit(data, epochs=epochs, verbose=verbose)
    x, y = data
    return model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose)


def _check_data(data: Any) -> None:
    if isinstance(data, tf.data.Dataset):
        return
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], dict)):
        raise ValueError(
            "data must be a batched tf.data.Dataset of (x, y) or a tuple (x, y) of dicts of arrays. "
            f"Received: {type(data).__name__}"
        )


def _scenario_rows(data: Any, scenario: int) -> Any:
    """The rows of ``data`` whose ``x["scenario"]`` is ``scenario``; ``None`` if there are none."""
    if isinstance(data, tf.data.Dataset):

        def select(*batch: Any) -> Any:
            ids = tf.reshape(tf.cast(batch[0][features.SCENARIO_KEY], tf.int64), [-1])
            mask = tf.equal(ids, scenario)
            return tf.nest.map_structure(lambda t: tf.boolean_mask(t, mask), batch)

        def non_empty(*batch: Any) -> Any:
            return tf.size(batch[0][features.SCENARIO_KEY]) > 0

        rows = data.map(select).filter(non_empty)
        return rows if any(True for _ in rows.take(1)) else None
    x, y = data
    mask = np.reshape(np.asarray(x[features.SCENARIO_KEY]), (-1,)) == scenario
    if not mask.any():
        return None
    return keras.tree.map_structure(lambda a: np.asarray(a)[mask], (x, y))


def pretrain(
    model: JointModel,
    data: Any,
    epochs: int = 1,
    optimizer: str | dict | keras.optimizers.Optimizer = "adam",
    batch_size: int = 32,
    verbose: Any = "auto",
) -> keras.callbacks.History:
    """M-LoRA stage 1: trains everything but the LoRA pairs, on the rows of every scenario.

    With ``B = 0`` (as initialized) every scenario runs the shared backbone, so this is the
    paper's pre-training of the shared network on all domains. The LoRA variables are
    frozen for the stage and left unchanged.

    Args:
        model: a joint model whose ``scenario_adapter`` is :class:`MultiScenarioLowRankAdaptation`.
        data: a batched ``tf.data.Dataset`` of ``(x, y)`` dicts, or a tuple ``(x, y)`` of
            dicts of arrays.
        epochs: number of epochs.
        optimizer: an optimizer (copied, not reused), its name or its config.
        batch_size: batch size for array data.
        verbose: passed to ``fit``.

    Returns:
        The ``History`` of the stage. On return the trainable flags are as before and the
        model is compiled again for them (see :func:`fine_tune`).
    """
    adapter = _lora_adapter(model)
    whole_number("epochs", epochs)
    _check_data(data)
    lora = {id(v) for v in adapter.lora_weights()}
    train = [v for v in model.trainable_variables if id(v) not in lora]
    with _training_stage(model, optimizer, train, freeze_layers=False):
        return _fit(model, data, epochs, batch_size, verbose)


def fine_tune(
    model: JointModel,
    data: Any,
    scenarios: list[int] | None = None,
    epochs: int = 1,
    optimizer: str | dict | keras.optimizers.Optimizer = "adam",
    batch_size: int = 32,
    verbose: Any = "auto",
) -> dict[int, keras.callbacks.History]:
    """M-LoRA stage 2: trains each scenario's LoRA pair on that scenario's rows only.

    For each ``t`` in ``scenarios``, one after the other: every layer of the model
    (embedding, encoders, backbone, task architecture, heads) and every other scenario's
    pair is frozen, the model is compiled with a fresh copy of ``optimizer``, and
    ``A_t, B_t`` are trained for ``epochs`` on the rows whose ``x["scenario"] == t``.
    Layers with statistics are frozen too, so they run in inference mode and nothing but
    ``A_t, B_t`` changes. A scenario without rows in ``data`` is skipped. Afterwards the
    previous trainable flags are restored and the model is compiled again: with its
    previous compile configuration if it was compiled, else with ``optimizer``; optimizer
    state does not carry over.

    Args:
        model: a joint model whose ``scenario_adapter`` is :class:`MultiScenarioLowRankAdaptation`.
        data: a batched ``tf.data.Dataset`` of ``(x, y)`` dicts (each batch is filtered on
            ``x["scenario"]``; finding out whether a scenario has rows reads up to its
            first one), or a tuple ``(x, y)`` of dicts of arrays.
        scenarios: scenario ids in ``[0, num_scenarios)``; all of them when ``None``.
        epochs: number of epochs per scenario.
        optimizer: an optimizer (copied, not reused), its name or its config.
        batch_size: batch size for array data.
        verbose: passed to ``fit``.

    Returns:
        ``{t: History}`` for every scenario that had rows.
    """
    adapter = _lora_adapter(model)
    whole_number("epochs", epochs)
    _check_data(data)
    p = adapter.num_scenarios
    scenarios = list(range(p)) if scenarios is None else list(scenarios)
    bad = [t for t in scenarios if int(t) != t or not 0 <= t < p]
    if bad:
        raise ValueError(f"scenarios must be ids in [0, {p}). Received: scenarios={scenarios}")
    histories = {}
    for t in scenarios:
        rows = _scenario_rows(data, t)
        if rows is None:
            continue
        with _training_stage(model, optimizer, adapter.lora_weights(t), freeze_layers=True):
            histories[t] = _fit(model, rows, epochs, batch_size, verbose)
    return histories


def add_scenarios(model: JointModel, num_new: int) -> JointModel:
    """A copy of ``model`` with ``num_new`` more scenarios, each with a fresh LoRA pair.

    The new model has ``P + num_new`` known scenarios: ids ``P .. P + num_new - 1`` are the
    new ones and ``P + num_new`` becomes the unknown-scenario id (the data transform must
    map scenarios the same way). Every weight is copied; the embedding's scenario table
    grows from ``P + 1`` to ``P + num_new + 1`` rows: rows ``0 .. P - 1`` are copied, the
    old unknown row moves to the new unknown row, and each new scenario's row starts as a
    copy of the old unknown row. With ``B = 0`` for the new pairs, a new scenario therefore
    predicts exactly what ``model`` predicted for an unknown scenario, and old scenarios
    predict exactly as before; :func:`fine_tune` on the new ids then trains only their
    pairs. A scenario-aware task architecture keeps its ``num_scenarios`` and treats the
    new ids through its own unknown-scenario path, as it did before. The returned model
    is not compiled.

    Args:
        model: a joint model whose ``scenario_adapter`` is :class:`MultiScenarioLowRankAdaptation`
            and whose embedding has a ``scenario_table`` (as :class:`FeatureEmbedding` does).
        num_new: number of scenarios to add, ``>= 1``.

    Returns:
        The new :class:`JointModel`.
    """
    adapter = _lora_adapter(model)
    num_new = whole_number("num_new", num_new)
    table = getattr(getattr(model.embedding, "scenario_table", None), "embeddings", None)
    if table is None:
        raise ValueError(
            "add_scenarios grows the embedding's scenario_table, which this embedding lacks. "
            f"Received: embedding={model.embedding!r}"
        )
    p = adapter.num_scenarios
    config = model.get_config()
    for slot in ("embedding", "scenario_adapter"):
        config[slot]["config"]["num_scenarios"] = p + num_new
    grown = JointModel.from_config(config)

    old_layers = [*model.layers, model.balancer]
    new_layers = [*grown.layers, grown.balancer]
    for old, new in zip(old_layers, new_layers):
        if old is adapter:
            new_adapter = _lora_adapter(grown)
            pairs = list(zip(adapter.kernels + adapter.biases, new_adapter.kernels + new_adapter.biases))
            for t in range(p):
                pairs += zip(adapter.lora_weights(t), new_adapter.lora_weights(t))
        else:
            pairs = list(zip(old.weights, new.weights))
        for o, n in pairs:
            if o is table:
                value = np.asarray(o.numpy())
                unknown = value[p : p + 1]
                n.assign(np.concatenate([value[:p], np.repeat(unknown, num_new + 1, axis=0)]))
            else:
                n.assign(o.numpy())
    return grown
