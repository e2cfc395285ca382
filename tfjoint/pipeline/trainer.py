"""The TFX Trainer's ``run_fn``: builds the joint model, trains it, exports it for serving.

The exported SavedModel has three signatures over serialized ``tf.Example`` (input name
``examples``):

- ``serving_default``: ``{task: output}``, the task outputs only;
- ``serving_auxiliary``: the task outputs and every auxiliary one: what the task
  architecture returns beside them (``<task>_joint`` of an entire-space cascade,
  ``<task>_imputed_error`` of ESCM2-DR, ...) and ``scenario_fallback`` (1 on rows whose
  scenario was unknown and took the fallback path);
- ``transform_features``: the transformed features.

Requests are parsed with :func:`~tfjoint.pipeline.transform.serving_feature_spec`: a
missing scalar feature takes its default (a missing scenario is the unknown scenario), so
it never fails the batch. The tf.Transform layer (a Keras 2 object) is called inside the
``tf.function`` signatures and never inside the Keras 3 graph.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from tfjoint import features
from tfjoint.features import DatasetSpec
from tfjoint.features.spec_file import spec_from_dict
from tfjoint.joint import JointModel, LazyAdam, build_joint_model, fit_joint_model, resolve_component
from tfjoint.layers.core import gate_monitor
from tfjoint.layers.core.scenarios import is_known
from tfjoint.joint.model import check_keras3
from tfjoint.joint.staged import staged_component
from tfjoint.pipeline.distribute import cluster_workers, is_chief, pick_strategy, shard_policy, write_dir
from tfjoint.pipeline.hparams import DEFAULT_HPARAMS, MODEL_OPTIONS
from tfjoint.pipeline.reporting import EpochSummary
from tfjoint.pipeline.runtime import merged_config
from tfjoint.pipeline.transform import oov_rates, serving_feature_spec, vocabulary_sizes
from tfjoint.serving.warmup import write_warmup_requests

KERAS_MODEL_FILENAME = "model.keras"
WARMUP_EXAMPLES = 16
TRAINING_SUMMARY_FILENAME = "training_summary.json"


def _split_labels(spec: DatasetSpec, model_keys: list[str]):
    def split(batch: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        return {k: batch[k] for k in model_keys}, {k: batch[k] for k in spec.label_keys}

    return split


def _dataset(fn_args: Any, files: list[str], tf_transform_output: tft.TFTransformOutput, spec: DatasetSpec, batch_size: int, model_keys: list[str]) -> tf.data.Dataset:
    """Batches of the raw examples in ``files`` through the transform graph.

    The pipeline's Transform writes no transformed examples (``materialize=False``: writing
    them was half of its CPU time, issue 17): the Trainer reads ImportExampleGen's records,
    parses them with the raw schema and applies the graph that the serving signatures run
    (TensorFlow ops in a parallel ``map``), i.e. the features Transform would have written,
    in the same order and the same shuffled batches."""
    dataset = fn_args.data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=True, shuffle_seed=0),
        tf_transform_output.raw_metadata.schema,
    )
    options = tf.data.Options()
    workers = cluster_workers()
    # fn_args lists file patterns: count the files they match (only a cluster needs it).
    num_files = sum(len(tf.io.gfile.glob(p)) for p in files) if workers > 1 else len(files)
    options.experimental_distribute.auto_shard_policy = shard_policy(num_files, workers)
    layer, split = tf_transform_output.transform_features_layer(), _split_labels(spec, model_keys)
    dataset = dataset.map(lambda raw: split(layer(raw)), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _raw_examples(pattern: str | None, count: int) -> list[bytes]:
    """The first ``count`` raw serialized ``tf.Example`` records matching ``pattern``."""
    files = sorted(tf.io.gfile.glob(pattern)) if pattern else []
    if not files:
        return []
    compression = "GZIP" if files[0].endswith(".gz") else ""
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type=compression).take(count)]


def export_serving_model(model: JointModel, tf_transform_output: tft.TFTransformOutput, spec: DatasetSpec, export_dir: str) -> None:
    """Writes a SavedModel with the ``serving_default``, ``serving_auxiliary`` and
    ``transform_features`` signatures (see the module doc)."""
    raw_spec = serving_feature_spec(tf_transform_output, spec)
    task_names = [t.name for t in model.tasks]
    module = tf.Module()
    # The signatures read the model's variables only: tracking them, not the Keras model
    # (its layers, optimizer, metrics and their trackers, some 20k objects), keeps the save
    # from walking that graph and from tracing the model once more for a signature of its
    # own, which was about half of the export's time (issue 17). The .keras file keeps the
    # whole model.
    module.model_variables = list(model.variables)
    module.tft_layer = tf_transform_output.transform_features_layer()
    model_keys = list(model.inputs_spec)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_auxiliary(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        transformed = module.tft_layer(tf.io.parse_example(examples, raw_spec))
        outputs = model({k: transformed[k] for k in model_keys}, training=False)
        outputs = {name: tf.identity(value, name=name) for name, value in outputs.items()}
        # The transform maps an unknown scenario to num_scenarios, which every scenario-aware
        # component serves through its shared path; the output lets servers count those rows.
        scenario = tf.reshape(transformed[features.SCENARIO_KEY], (-1, 1))
        outputs[features.SCENARIO_FALLBACK_KEY] = tf.cast(~is_known(scenario, spec.num_scenarios), tf.int64)
        return outputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = serve_auxiliary(examples)
        return {name: outputs[name] for name in task_names}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return module.tft_layer(tf.io.parse_example(examples, raw_spec))

    # Keep the gate metrics' updates (training-time monitoring state) out of every traced
    # function.
    with gate_monitor.disabled():
        signatures = {
            "serving_default": serve.get_concrete_function(),
            "serving_auxiliary": serve_auxiliary.get_concrete_function(),
            "transform_features": transform_features.get_concrete_function(),
        }
        tf.saved_model.save(module, export_dir, signatures=signatures)


ITEM_TEXT_MODALITY = "item_text"


def item_text_vectors(config: dict[str, Any], spec: DatasetSpec, tf_transform_output: Any) -> dict[str, Any] | None:
    """``{"item_text": (V, 384)}`` when ``item_text_encoder`` is set: each item of Transform's
    vocabulary of the item feature encoded once, here, by MiniLM (or the hashed bag of
    tokens), so that the model holds them as a frozen table and no text op reaches the
    Transform or serving graph; None otherwise."""
    kind = config.get("item_text_encoder")
    if not kind:
        return None
    from tfjoint.modality import item_text

    if spec.sequence is None:
        raise ValueError(f"item_text_encoder needs an item feature; {spec.name} has none")
    vocabulary = tf_transform_output.vocabulary_by_name(spec.sequence.item_feature)
    texts = item_text.dataset_item_texts(config["dataset"])
    encoder = item_text.text_encoder(kind)
    vectors, missing = item_text.aligned_vectors(vocabulary, list(texts), encoder.encode(list(texts.values())))
    # OOV buckets of a vocabulary budget have no text: zero rows, masked as missing.
    buckets = vocabulary_sizes(tf_transform_output, spec)[spec.sequence.item_feature] - len(vocabulary)
    vectors = np.pad(vectors, ((0, buckets), (0, 0)))
    logging.info("tfjoint: %s item vectors %s (%s), %d items without a text", ITEM_TEXT_MODALITY, vectors.shape,
                 type(encoder).__name__, missing)
    return {ITEM_TEXT_MODALITY: vectors}


def _check_multi_worker_balancer(balancer: str) -> None:
    """Gradient-level balancers combine per-task gradients inside each replica; under
    MultiWorkerMirroredStrategy that step fails (no gradient reaches the optimizer), so a
    cluster refuses them before any work."""
    if cluster_workers() > 1 and getattr(resolve_component("balancer", balancer), "uses_task_gradients", False):
        raise ValueError(f"balancer {balancer!r} combines per-task gradients, which multi-worker training does "
                         f"not support; use 'fixed', 'dwa' or 'uncertainty'. Received: balancer={balancer!r}")


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point. ``fn_args.custom_config`` holds ``dataset_spec`` (the spec as a
    dict, :func:`tfjoint.features.spec_file.spec_to_dict`), ``dataset`` (its name), ``model``
    and optional overrides of :data:`DEFAULT_HPARAMS`; a compiled pipeline's runtime parameters
    arrive as ``fn_args.hyperparameters`` and win (:mod:`tfjoint.pipeline.runtime`)."""
    check_keras3()
    config = {**DEFAULT_HPARAMS, **merged_config(fn_args.custom_config, fn_args.hyperparameters)}
    spec = spec_from_dict(config["dataset_spec"])
    _check_multi_worker_balancer(config["balancer"])
    # First: a multi-worker strategy configures collective ops, best before any other op.
    strategy = pick_strategy(config.get("tpu_address"))
    keras.utils.set_random_seed(int(config.get("seed", 0)))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    sizes = vocabulary_sizes(tf_transform_output, spec)
    logging.info("tfjoint: training %s on %s with %s; OOV rates %s", config["model"], spec.name,
                 type(strategy).__name__, oov_rates(tf_transform_output, spec))
    with strategy.scope():
        model = build_joint_model(
            spec,
            sizes,
            task_architecture=config["model"],
            sequence_encoder=config["sequence_encoder"],
            modality_encoder=config["modality_encoder"],
            scenario_adapter=config["scenario_adapter"],
            balancer=config["balancer"],
            embedding_dim=int(config["embedding_dim"]),
            component_kwargs=config["component_kwargs"],
            unknown_scenario_rate=float(config["unknown_scenario_rate"]),
            item_vectors=item_text_vectors(config, spec, tf_transform_output),
            **{k: config[k] for k in MODEL_OPTIONS},
        )
        adam = LazyAdam if config["lazy_adam"] else keras.optimizers.Adam
        model.compile(optimizer=adam(float(config["learning_rate"])))
    model_keys = list(model.inputs_spec)
    batch_size = int(config["batch_size"])
    train = _dataset(fn_args, fn_args.train_files, tf_transform_output, spec, batch_size, model_keys)
    evaluation = _dataset(fn_args, fn_args.eval_files, tf_transform_output, spec, batch_size, model_keys)
    # The TFXIO datasets are finite with unknown cardinality: the end of each epoch is expected.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    # Every worker writes logs and saves (saving may run collectives); only the chief's
    # copies are kept.
    serving_dir = write_dir(fn_args.serving_model_dir, strategy)
    run_dir = write_dir(fn_args.model_run_dir, strategy)
    # A component with its own training schedule (M-LoRA: pre-train, then fine-tune each
    # scenario) spends the same number of epochs its own way; any other model fits once.
    # One readable line per epoch (per-task loss and AUC); every metric, gates included, goes
    # to TensorBoard.
    logs = os.path.join(run_dir, "logs")
    if is_chief(strategy):
        print(f"[tfjoint] TensorBoard (losses, AUCs, gate weights): tensorboard --logdir {logs}", flush=True)
    epochs = int(config["epochs"])
    summary = EpochSummary([t.name for t in model.tasks], epochs, print_fn=lambda line: print(line, flush=True))
    with strategy.scope():
        histories = fit_joint_model(
            model,
            train,
            epochs=epochs,
            # A staged component (M-LoRA) runs its own fits without these callbacks: Keras's
            # per-epoch line there, so that its stages are not silent.
            verbose=2 if staged_component(model) else 0,
            validation_data=evaluation,
            callbacks=[keras.callbacks.TensorBoard(logs), summary],
        )
    _save(model, histories, config, spec, tf_transform_output, serving_dir, run_dir)
    if not is_chief(strategy):
        shutil.rmtree(serving_dir, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def _save(model: JointModel, histories: dict[str, Any], config: dict[str, Any], spec: DatasetSpec,
          tf_transform_output: tft.TFTransformOutput, serving_model_dir: str, model_run_dir: str) -> None:
    """The serving SavedModel (with warmup requests), the ``.keras`` model and the training
    summary."""
    export_serving_model(model, tf_transform_output, spec, serving_model_dir)
    # TF Serving replays these on load, so the first real request does not pay for tracing.
    warmup = _raw_examples(config.get("warmup_examples"), WARMUP_EXAMPLES)
    if warmup:
        write_warmup_requests(serving_model_dir, warmup, model_name=config["model_name"])
    tf.io.gfile.makedirs(model_run_dir)
    model.save(os.path.join(model_run_dir, KERAS_MODEL_FILENAME))
    summary = {
        "dataset": spec.name,
        "model": config["model"],
        "parameters": int(model.count_params()),
        # Per feature with a vocabulary budget: the fraction of training values hashed.
        "oov_rates": oov_rates(tf_transform_output, spec),
        "history": {
            f"{stage}/{k}" if stage else k: [float(v) for v in vs]
            for stage, history in histories.items()
            for k, vs in history.history.items()
        },
    }
    with tf.io.gfile.GFile(os.path.join(model_run_dir, TRAINING_SUMMARY_FILENAME), "w") as f:
        json.dump(summary, f, indent=1)
