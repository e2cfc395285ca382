"""The small toy SavedModel of the serving tests and of ``tfjoint bench serve-faults``: the
pipeline's signature shape (serialized tf.Examples in, two (batch, 1) float heads out), exported
in about a second, and a Pusher-like copy into ``<base_path>/<version>/``."""

from __future__ import annotations

import os
import shutil

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfjoint.features import SCENARIO_FALLBACK_KEY
from tfjoint.serving.client import make_example

FEATURES = {
    "x": tf.io.FixedLenFeature([2], tf.float32, default_value=[0.0, 0.0]),
    "c": tf.io.FixedLenFeature([1], tf.int64, default_value=[0]),
    "s": tf.io.FixedLenFeature([1], tf.string, default_value=[""]),
}


class _Toy(tf.Module):
    """Serialized tf.Example in, two (batch, 1) float heads out (like the pipeline's exports);
    ``serving_auxiliary`` adds the pipeline's ``scenario_fallback`` flag (here: ``c >= 5``
    plays the unknown scenario)."""

    def __init__(self, bias: float):
        super().__init__()
        self.w = tf.Variable([[0.7], [-1.3]], dtype=tf.float32)
        self.bias = tf.Variable(bias, dtype=tf.float32)

    def _heads(self, examples):
        f = tf.io.parse_example(examples, FEATURES)
        z = tf.matmul(f["x"], self.w) + tf.cast(f["c"], tf.float32) * 0.1 + self.bias
        z += tf.cast(tf.strings.length(f["s"]), tf.float32) * 0.01
        return tf.sigmoid(z), z * 2.0 + 1.0

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        click, score = self._heads(examples)
        return {"click": click, "score": score}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_auxiliary(self, examples):
        fallback = tf.cast(tf.io.parse_example(examples, FEATURES)["c"] >= 5, tf.int64)
        return {**self.serve(examples), SCENARIO_FALLBACK_KEY: fallback}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform(self, examples):
        f = tf.io.parse_example(examples, FEATURES)
        return {"x": f["x"], "c": f["c"]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        click, _ = self._heads(inputs)
        scores = tf.concat([1.0 - click, click], axis=1)
        classes = tf.tile(tf.constant([["no", "yes"]]), [tf.shape(inputs)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        _, score = self._heads(inputs)
        return {"outputs": score}


def export_toy(path: str, bias: float = 0.0) -> str:
    """Writes the toy SavedModel; 'classify'/'regress' get TF Serving's classify/regress method names."""
    m = _Toy(bias)
    tf.saved_model.save(
        m,
        path,
        signatures={
            "serving_default": m.serve.get_concrete_function(),
            "serving_auxiliary": m.serve_auxiliary.get_concrete_function(),
            "transform_features": m.transform.get_concrete_function(),
            "classify": m.classify.get_concrete_function(),
            "regress": m.regress.get_concrete_function(),
        },
    )
    pb = os.path.join(path, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(pb, "rb") as fh:
        sm.ParseFromString(fh.read())
    sigs = sm.meta_graphs[0].signature_def
    sigs["classify"].method_name = "tensorflow/serving/classify"
    sigs["regress"].method_name = "tensorflow/serving/regress"
    with open(pb, "wb") as fh:
        fh.write(sm.SerializeToString())
    return path


def raw_examples(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"x": [float(a), float(b)], "c": int(c), "s": "abc"[: int(c) % 4]}
        for a, b, c in zip(rng.normal(size=n), rng.normal(size=n), rng.integers(0, 7, size=n))
    ]


def serialized(n: int, seed: int = 0) -> list[bytes]:
    return [make_example(e).SerializeToString() for e in raw_examples(n, seed)]


def add_version(base_path: str, version: int, template: str, atomic: bool = True) -> str:
    """Copies the template export to <base_path>/<version>/ (renamed into place, as a Pusher does)."""
    os.makedirs(base_path, exist_ok=True)
    dst = os.path.join(base_path, str(version))
    if not atomic:
        shutil.copytree(template, dst)
        return dst
    tmp = os.path.join(base_path, f".tmp-{version}")
    shutil.copytree(template, tmp)
    os.rename(tmp, dst)
    return dst


__all__ = ["FEATURES", "add_version", "export_toy", "raw_examples", "serialized"]
