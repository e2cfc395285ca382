"""The retrieval pipeline's TFX Trainer ``run_fn``: fit a registered retrieval model on the
transformed interaction log, its epoch chosen on the validation hold-out, and export the
top-K SavedModel that answers requests by original user id.

``fn_args.custom_config`` holds ``dataset``-independent hyper-parameters
(:data:`DEFAULT_HPARAMS`, overridable) and ``behaviors``/``target`` (the interaction spec).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from tfjoint.features.interactions import InteractionSpec
from tfjoint.pipeline.retrieval.data import ITEM_ID, STAGE, TRAIN, USER_ID, split_from_arrays
from tfjoint.pipeline.retrieval.item_features import load_for_vocabulary
from tfjoint.retrieval import LeaveOneOut, builtin, evaluate, history

SELECTION_METRIC = "NDCG@10"
TRAINING_SUMMARY_FILENAME = "training_summary.json"
DEFAULT_HPARAMS: dict[str, Any] = {
    "model": "bpr_mf",
    "loss": "bpr",
    "embedding_dim": 64,
    "epochs": 50,
    "batch_size": 256,
    "learning_rate": 5e-3,
    "patience": 10,
    "k": 10,
    "seed": 0,
    "item_features": None,  # minilm | hashed | metadata | none; None: minilm for feature models (item_features.check)
}


def spec_from_config(config: dict[str, Any]) -> InteractionSpec:
    return InteractionSpec(config.get("dataset", "interactions"), tuple(config["behaviors"]), config["target"])


def read_transformed(file_patterns: list[str], tft_output: Any) -> dict[str, np.ndarray]:
    """Every transformed example of ``file_patterns`` (gzipped TFRecords) as numpy columns."""
    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    spec = tft_output.transformed_feature_spec()
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(65536).map(
        lambda records: tf.io.parse_example(records, spec)
    )
    batches = [{k: v.numpy().reshape(-1) for k, v in b.items()} for b in dataset]
    return {k: np.concatenate([b[k] for b in batches]) for k in spec}


def vocabulary(tft_output: Any, name: str) -> np.ndarray:
    """The original ids of a Transform vocabulary, index ``i`` on line ``i``."""
    with tf.io.gfile.GFile(tft_output.vocabulary_file_by_name(name), "rb") as f:
        return np.array([line.rstrip(b"\n") for line in f], dtype=object)


def load_split(train_files: list[str], eval_files: list[str], tft_output: Any, spec: InteractionSpec) -> tuple[LeaveOneOut, int]:
    """The leave-one-out split of the transformed examples, original ids attached; and the
    number of held-out events that cannot be ranked (user or item outside the vocabulary)."""
    user_ids, item_ids = vocabulary(tft_output, USER_ID), vocabulary(tft_output, ITEM_ID)
    train = read_transformed(train_files, tft_output)
    held = read_transformed(eval_files, tft_output)
    train = {k: v[train[STAGE] == TRAIN] for k, v in train.items()}
    return split_from_arrays(spec, train, held, len(user_ids), len(item_ids), user_ids, item_ids)


def validation_score(split: LeaveOneOut) -> Any:
    """``validate(model)``: NDCG@10 on the validation items under full ranking."""
    valid_history = history(split, "valid")
    return lambda m: float(
        evaluate(lambda u: m.score(u, valid_history), split, stage="valid", protocol="full")[SELECTION_METRIC]
    )


def fit(split: LeaveOneOut, config: dict[str, Any], item_features: Any = None) -> tuple[Any, dict[str, Any]]:
    """Builds and fits ``config["model"]`` on ``split.train`` (with the fixed ``item_features``,
    row ``i`` for item index ``i``, when given); the best validation epoch is kept."""
    import keras

    keras.utils.set_random_seed(int(config["seed"]))
    dim = int(config["embedding_dim"])
    model = builtin.build_model(
        config["model"], split.train.num_users, split.train.num_items, int(config["seed"]),
        optional={"embedding_dim": dim, "hidden_dim": dim, "content_dim": dim, "loss": config["loss"]},
        **({} if item_features is None else {"item_features": item_features}),
    )
    fitted = model.fit(
        split.train, validate=validation_score(split), epochs=int(config["epochs"]),
        batch_size=int(config["batch_size"]), learning_rate=float(config["learning_rate"]),
        patience=int(config["patience"]), seed=int(config["seed"]),
    )
    return model, fitted


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point (see the module docstring)."""
    from tfjoint.retrieval.export import export_topk_model

    config = {**DEFAULT_HPARAMS, **(fn_args.custom_config or {})}
    spec = spec_from_config(config)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    split, dropped = load_split(fn_args.train_files, fn_args.eval_files, tft_output, spec)
    logging.info("tfjoint: %s on %d users x %d items, %d training events (%d held-out events not rankable)",
                 config["model"], split.train.num_users, split.train.num_items, len(split.train), dropped)
    features, features_summary = load_for_vocabulary(config, split.train.item_ids)
    if features is not None:
        logging.info("tfjoint: item features %s", features_summary)
    model, fitted = fit(split, config, features)
    k = min(int(config["k"]), split.train.num_items)
    export_topk_model(model, fn_args.serving_model_dir, k=k, item_ids=split.train.item_ids, user_ids=split.train.user_ids)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    summary = {
        "model": config["model"],
        "hparams": {k: config[k] for k in DEFAULT_HPARAMS},
        "users": split.train.num_users, "items": split.train.num_items, "training_events": len(split.train),
        "held_out_not_rankable": dropped,
        "item_features": features_summary,
        "best_epoch": fitted.get("best_epoch"),
        "validation": {SELECTION_METRIC: [float(v) for v in fitted.get("validation", [])]},
        "loss": [float(v) for v in fitted.get("loss", [])],
    }
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_SUMMARY_FILENAME), "w") as f:
        json.dump(summary, f, indent=1)
