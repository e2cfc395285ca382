"""Shared test helpers. Every tfjoint layer goes through :func:`run_layer_test`.

It checks what ``../shared/STYLE.md`` asks of a layer: the config JSON round trip and the
registered name; symbolic and eager calls with ``training`` True and False; finite outputs;
one training step moves every trainable weight; ``.keras`` save and reload (no
``custom_objects``) gives identical outputs; a ``tf_saved_model`` export reloads and gives
the same outputs; mixed precision keeps the weights in float32.

:func:`check_joint_model` runs a component inside a whole joint model (train, predict,
``.keras`` round trip); :func:`fake_vocab_sizes`, :func:`fake_batch` and :func:`scenario_batch` make test data,
:func:`randomize_weights` sets seeded weights, and :func:`softmax`, :func:`sigmoid`,
:func:`relu`, :func:`bce` and :func:`numpy_mlp` are numpy references for the layers' equations.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from typing import Any, Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import tree

from tfjoint.features import DatasetSpec
from tfjoint.joint import build_joint_model, input_shapes


def _symbolic_inputs(data: Any) -> Any:
    def make(x: np.ndarray, name: str | None = None) -> Any:
        return keras.Input(shape=x.shape[1:], dtype=str(x.dtype), name=name)

    if isinstance(data, dict):
        return {k: make(v, k) for k, v in data.items()}
    return make(data)


def _float_leaves(outputs: Any) -> list[Any]:
    return [x for x in tree.flatten(outputs) if "float" in str(x.dtype)]


def _assert_close(a: Any, b: Any, atol: float, what: str) -> None:
    for x, y in zip(tree.flatten(a), tree.flatten(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, err_msg=what)


def run_layer_test(
    layer_cls: type,
    init_kwargs: dict[str, Any],
    input_data: Any,
    *,
    registered_name: str | None = None,
    expected_output_shape: Any = None,
    frozen_weights: Callable[[str], bool] | None = None,
    check_mixed_precision: bool = True,
) -> keras.layers.Layer:
    """Runs the shared checks on ``layer_cls(**init_kwargs)`` applied to ``input_data``.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        input_data: a numpy array or a dict of numpy arrays (with a batch dimension).
        registered_name: the expected ``tfjoint>Name`` registration; defaults to the
            class name under the ``tfjoint`` package.
        expected_output_shape: if given, the shape (or dict of shapes) of the outputs.
        frozen_weights: predicate on weight paths that a training step may leave
            unchanged (e.g. non-trainable statistics); trainable weights must all move.
        check_mixed_precision: whether to run the mixed-precision check.

    Returns:
        The layer built and trained by the test.
    """
    name = registered_name or f"tfjoint>{layer_cls.__name__}"
    assert keras.saving.get_registered_name(layer_cls) == name, keras.saving.get_registered_name(layer_cls)

    # Config round trip, through JSON.
    layer = layer_cls(**init_kwargs)
    config = json.loads(json.dumps(layer.get_config()))
    revived = layer_cls.from_config(config)
    assert revived.get_config() == layer.get_config(), "get_config does not round-trip"
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    assert keras.saving.deserialize_keras_object(serialized).__class__ is layer_cls

    # Eager calls, training True and False, finite.
    for training in (True, False):
        out = layer(input_data, training=training)
        for leaf in _float_leaves(out):
            assert np.all(np.isfinite(np.asarray(leaf))), f"non-finite output with training={training}"
    if expected_output_shape is not None:
        shapes = tree.map_structure(lambda x: tuple(x.shape), out)
        assert shapes == expected_output_shape, f"output shapes {shapes} != {expected_output_shape}"

    # Symbolic call inside a functional model.
    inputs = _symbolic_inputs(input_data)
    model = keras.Model(inputs, layer(inputs))
    _assert_close(model(input_data, training=False), layer(input_data, training=False), 1e-6, "functional call")

    # One training step moves every trainable weight.
    before = {w.path: np.array(w.numpy()) for w in layer.trainable_weights}
    assert before, "the layer has no trainable weights"
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = sum(tf.reduce_sum(tf.square(tf.cast(x, "float32") - 1.0)) for x in _float_leaves(layer(input_data, training=True)))
    grads = tape.gradient(loss, layer.trainable_variables)
    optimizer.apply(grads, layer.trainable_variables)
    unmoved = [
        w.path
        for w in layer.trainable_weights
        if np.array_equal(before[w.path], w.numpy()) and not (frozen_weights and frozen_weights(w.path))
    ]
    assert not unmoved, f"a training step left these trainable weights unchanged: {unmoved}"

    expected = model(input_data, training=False)
    with tempfile.TemporaryDirectory() as tmp:
        # .keras save and reload, no custom_objects.
        path = os.path.join(tmp, "layer.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        _assert_close(reloaded(input_data, training=False), expected, 1e-6, ".keras reload")

        # tf_saved_model export.
        export_dir = os.path.join(tmp, "export")
        model.export(export_dir, format="tf_saved_model", verbose=False)
        # Keep a reference: the restored functions need the loaded object's variables alive.
        loaded = tf.saved_model.load(export_dir)
        served = loaded.serve(tree.map_structure(tf.constant, input_data))
        _assert_close(served, expected, 1e-5, "tf_saved_model export")

    if check_mixed_precision:
        mixed = layer_cls(**init_kwargs, dtype="mixed_float16")
        out = mixed(input_data, training=False)
        for leaf in _float_leaves(out):
            assert np.all(np.isfinite(np.asarray(leaf, dtype="float32"))), "non-finite output in mixed precision"
        dtypes = {w.path: w.dtype for w in mixed.weights if "float" in str(w.dtype)}
        assert all(d == "float32" for d in dtypes.values()), f"mixed precision weights not float32: {dtypes}"
    return layer


def softmax(v: np.ndarray) -> np.ndarray:
    """Numpy softmax over the last axis."""
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def relu(v: np.ndarray) -> np.ndarray:
    return np.maximum(v, 0.0)


def bce(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Numpy binary cross-entropy per element, with Keras' clipping at 1e-7."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def numpy_mlp(mlp: keras.layers.Layer, v: np.ndarray) -> np.ndarray:
    """Numpy forward pass of a ReLU :class:`tfjoint.layers.core.mlp.MLP` at inference."""
    for dense in mlp.dense_layers:
        v = relu(v @ dense.kernel.numpy() + dense.bias.numpy())
    return v


def fake_vocab_sizes(spec: DatasetSpec, size: int = 12) -> dict[str, int]:
    """A vocabulary of ``size`` ids for every categorical and token input of ``spec``."""
    return {k: size for k in (*spec.categorical, *(t.name for t in spec.tokens))}


def fake_batch(spec: DatasetSpec, n: int = 32, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(x, y)``: random values of every model input and label of ``spec``.

    Integer inputs are drawn from ``0..3``: with three known scenarios, scenario id 3 is the
    unknown scenario. Binary labels are 0/1 and regression labels 1..5, in task order; a
    task with a parent is 0 wherever its parent label is 0.
    """
    rng = np.random.default_rng(seed)
    x = {}
    for key, (shape, dtype) in input_shapes(spec).items():
        if dtype == "int64":
            x[key] = rng.integers(0, 4, size=(n, *shape))
        else:
            x[key] = rng.normal(size=(n, *shape)).astype("float32")
    y: dict[str, Any] = {}
    for task in spec.tasks:
        label = rng.integers(0, 2, (n, 1)) if task.type == "binary" else rng.integers(1, 6, (n, 1))
        y[task.name] = label.astype("float32") if task.parent is None else y[task.parent] * label
    return x, y


def scenario_batch(
    n: int, dim: int, num_scenarios: int, seed: int | np.random.Generator = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, scenario)``: ``(n, dim)`` float32 normal inputs and ``(n, 1)`` int64 scenario ids.

    The ids cycle through ``0 .. num_scenarios``: every known scenario and the unknown id
    ``num_scenarios``. ``seed`` may be a generator, which then also serves the caller's
    further draws.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    scenario = (np.arange(n) % (num_scenarios + 1)).reshape(-1, 1).astype("int64")
    return x, scenario


def fields_batch(
    n: int, dim: int, num_scenarios: int, num_fields: int, emb_dim: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """``{"inputs", "scenario", "fields"}``: a :func:`scenario_batch` plus ``(n, num_fields,
    emb_dim)`` normal field embeddings, the input of a layer that also asks for ``fields``."""
    rng = np.random.default_rng(seed)
    x, scenario = scenario_batch(n, dim, num_scenarios, rng)
    fields = rng.normal(size=(n, num_fields, emb_dim)).astype("float32")
    return {"inputs": x, "scenario": scenario, "fields": fields}


def built_with_random_weights(layer: keras.layers.Layer, data: Any, seed: int = 1, scale: float = 1.0) -> Any:
    """``layer`` built on the shapes of ``data`` (a dict of arrays), its weights randomized."""
    layer.build({k: v.shape for k, v in data.items()})
    randomize_weights(layer.weights, seed, scale=scale)
    return layer


def randomize_weights(weights: Iterable[Any], seed: int = 1, scale: float = 1.0) -> None:
    """Assigns seeded ``normal(0, scale)`` float32 values to ``weights``, one after the other.

    A weight whose path contains ``variance`` gets ``uniform(0.5, 1.5)`` instead: a
    variance must stay positive.
    """
    rng = np.random.default_rng(seed)
    for w in weights:
        if "variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, size=w.shape).astype("float32"))
        else:
            w.assign(rng.normal(scale=scale, size=w.shape).astype("float32"))


class JointModelRun(NamedTuple):
    """What :func:`check_joint_model` trained and saw."""

    model: keras.Model
    history: dict[str, list[float]]
    predictions: dict[str, np.ndarray]


def check_joint_model(
    spec: DatasetSpec,
    vocab_sizes: dict[str, int],
    tmp_path: str | os.PathLike,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    **build_kwargs: Any,
) -> JointModelRun:
    """Builds ``build_joint_model(spec, vocab_sizes, **build_kwargs)`` and checks it end to end.

    It trains with Adam on :func:`fake_batch` (scenario ids 0..3, 3 being the unknown
    scenario with three known ones), predicts, saves to ``.keras`` under ``tmp_path`` and
    reloads without ``custom_objects``: the reloaded model must predict finite values equal
    to the original's for every task.

    Returns:
        The trained model, its ``fit`` history dict and its predictions on the batch.
    """
    model = build_joint_model(spec, vocab_sizes, **build_kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, y = fake_batch(spec)
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0).history
    predictions = model.predict(x, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path).predict(x, verbose=0)
    assert set(reloaded) == set(predictions), f"reloaded tasks {sorted(reloaded)} != {sorted(predictions)}"
    for task, value in reloaded.items():
        assert np.all(np.isfinite(value)), f"non-finite predictions for {task}"
        np.testing.assert_allclose(value, predictions[task], atol=1e-6, err_msg=f".keras reload, {task}")
    return JointModelRun(model, history, predictions)
