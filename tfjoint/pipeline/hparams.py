"""The Trainer's hyper-parameters: :data:`DEFAULT_HPARAMS` and :func:`check_hparams`, which
``pipeline run`` and ``pipeline compile`` call before any component runs, so a misspelt key,
a wrong type or a non-positive batch size is a one-line error, not a Trainer failure after
Transform has run."""

from __future__ import annotations

from numbers import Real
from typing import Any

DEFAULT_HPARAMS: dict[str, Any] = {
    "epochs": 2,
    "batch_size": 256,
    "learning_rate": 3e-3,
    "embedding_dim": 16,
    "component_kwargs": {},
    "sequence_encoder": "behavior_pooling",
    "modality_encoder": "gating_fusion",
    "scenario_adapter": None,
    "balancer": "fixed",
    "unknown_scenario_rate": 0.05,
    "item_text_encoder": None,
    # The peer-shaped model options of build_joint_model (issue 17, docs/training_speed.md).
    "numeric": "embedded",
    "scenario_field": True,
    "batch_norm": False,
    # The dtype policy the model is built with (tfjoint.joint.precision).
    "precision": "float32",
    # Embedding tables updated row-wise (tfjoint.joint.optimizers.LazyAdam) instead of Adam.
    "lazy_adam": False,
}

# Passed to build_joint_model as they are.
MODEL_OPTIONS = ("numeric", "scenario_field", "batch_norm", "precision")

# Read by the Trainer when given, absent by default.
OPTIONAL_HPARAMS = ("seed", "tpu_address")

# Set by the pipeline from --dataset (or --spec), --model and --model-name, already checked there.
RESERVED = ("dataset", "dataset_spec", "model", "model_name", "warmup_examples")

_POSITIVE_INTS = ("epochs", "batch_size", "embedding_dim")
_COMPONENT_SLOTS = ("sequence_encoder", "modality_encoder", "scenario_adapter", "balancer")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problem(key: str, value: Any) -> str | None:
    """What is wrong with ``key=value``, or None."""
    if key in _POSITIVE_INTS:
        return None if _is_int(value) and value > 0 else "must be an integer > 0"
    if key == "learning_rate":
        return None if isinstance(value, Real) and not isinstance(value, bool) and value > 0 else "must be a number > 0"
    if key == "unknown_scenario_rate":
        ok = isinstance(value, Real) and not isinstance(value, bool) and 0 <= value < 1
        return None if ok else "must be a number in [0, 1)"
    if key == "component_kwargs":
        return None if isinstance(value, dict) else "must be a JSON object of {component: {argument: value}}"
    if key in _COMPONENT_SLOTS:
        if value is None and key != "balancer":
            return None
        return None if isinstance(value, str) and value else "must be a component name (`tfjoint models`)"
    if key == "item_text_encoder":
        return None if value in (None, "minilm", "hashed") else "must be null, 'minilm' or 'hashed'"
    if key == "numeric":
        return None if value in ("embedded", "raw", "normalized") else "must be 'embedded', 'raw' or 'normalized'"
    if key == "scenario_field":
        return None if value in (True, False, "auto") else "must be true, false or 'auto'"
    if key == "precision":
        # tfjoint.joint.precision.PRECISIONS, not imported: this module stays free of Keras.
        return None if value in ("float32", "mixed_bfloat16", "mixed_float16") else (
            "must be 'float32', 'mixed_bfloat16' or 'mixed_float16'")
    if key in ("batch_norm", "lazy_adam"):
        return None if isinstance(value, bool) else "must be true or false"
    if key == "seed":
        return None if _is_int(value) and value >= 0 else "must be an integer >= 0"
    if key == "tpu_address":
        return None if isinstance(value, str) else "must be a string"
    return None


def check_hparams(hparams: Any) -> dict[str, Any]:
    """``hparams`` (overrides of :data:`DEFAULT_HPARAMS`) if every key is known and every
    value has the right type and range; otherwise a ValueError naming the key and what is
    allowed. ``dataset``, ``dataset_spec``, ``model`` and ``model_name`` are refused: their flags set them."""
    if not isinstance(hparams, dict):
        raise ValueError(f"--hparams must be a JSON object of {{name: value}}. Received: {hparams!r}")
    reserved = sorted(set(hparams) & set(RESERVED))
    if reserved:
        raise ValueError(f"--hparams may not set {reserved}: use --dataset or --spec, --model and --model-name")
    unknown = sorted(set(hparams) - set(DEFAULT_HPARAMS) - set(OPTIONAL_HPARAMS))
    if unknown:
        raise ValueError(f"unknown hparams {unknown}; known: {sorted([*DEFAULT_HPARAMS, *OPTIONAL_HPARAMS])}")
    for key, value in hparams.items():
        problem = _problem(key, value)
        if problem:
            flag = f"--{key.replace('_', '-')}" if key in ("epochs", "batch_size") else f"hparams {key!r}"
            raise ValueError(f"{flag} {problem}. Received: {value!r}")
    return hparams
