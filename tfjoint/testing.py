"""The shared layer test: every tfjoint layer goes through :func:`run_layer_test`.

It checks what ``../shared/STYLE.md`` asks of a layer: the config JSON round trip and the
registered name; symbolic and eager calls with ``training`` True and False; finite outputs;
one training step moves every trainable weight; ``.keras`` save and reload (no
``custom_objects``) gives identical outputs; a ``tf_saved_model`` export reloads and gives
the same outputs; mixed precision keeps the weights in float32.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf
from keras import tree


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
