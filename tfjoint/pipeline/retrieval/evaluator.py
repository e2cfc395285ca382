"""``RankingEvaluator``: a custom TFX component that ranks the catalog with the trained
SavedModel and blesses it against thresholds. TFMA scores examples one by one and cannot
rank a catalog, hence this component.

It loads the Trainer's exported model (the artifact the Pusher would push), scores every
item for each held-out user through its ``scores`` signature (``user`` index and the user's
target-behavior items in time order as ``recent_items``, the input sequence models read;
for a model whose SavedModel names its ``behaviors`` (MB-STR), the user's events of those
behaviors with ``recent_behaviors``),
and computes HR@K, NDCG@K, Recall@K (K = 5, 10, 20) and MRR with
:func:`tfjoint.retrieval.evaluate` on the validation and the test items, under full ranking
(training items of the target behavior masked) and against 99 sampled negatives (seeded).
The catalog is Transform's item vocabulary, the items of the training events: a held-out
event of an item (or user) that no training event has cannot be ranked, and is counted in
``not_rankable`` instead of scored.

Blessing: every threshold ``metric >= value`` (e.g. ``{"NDCG@10": 0.001}``) is judged on the
*validation* items under full ranking, never on test; no threshold blesses. The metrics
are written to ``<evaluation>/metrics.json``; the blessing artifact gets the custom property
``blessed`` (0/1) that the Pusher reads, and a ``BLESSED`` or ``NOT_BLESSED`` file as TFX's
Evaluator writes.
"""

# No ``from __future__ import annotations``: TFX reads the component's annotations as types.
import json
import os
from typing import Any

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model, ModelBlessing, ModelEvaluation, TransformGraph
from tfx.types.standard_artifacts import Examples

from tfjoint.retrieval import LeaveOneOut, evaluate, history

METRICS_FILENAME = "metrics.json"
STAGES, PROTOCOLS = ("valid", "test"), ("full", "sampled")


def parse_thresholds(text: str) -> dict[str, float]:
    """``"NDCG@10=0.001,HR@10=0.01"`` or a JSON object -> ``{metric: minimum}``."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        pairs = json.loads(text).items()
    else:
        pairs = (part.split("=", 1) for part in text.split(",") if part.strip())
    out = {}
    for name, value in pairs:
        try:
            out[str(name).strip()] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"threshold {name!r} needs a number. Received: {value!r}") from None
    return out


def request(user: int, recent: np.ndarray, behaviors: np.ndarray | None = None) -> bytes:
    ex = tf.train.Example()
    ex.features.feature["user"].int64_list.value.append(int(user))
    ex.features.feature["recent_items"].int64_list.value.extend(int(i) for i in recent)
    if behaviors is not None:
        ex.features.feature["recent_behaviors"].int64_list.value.extend(int(b) for b in behaviors)
    return ex.SerializeToString()


def saved_model_scorer(serving_dir: str, split: LeaveOneOut, stage: str, batch_size: int = 256) -> Any:
    """``score_fn(users) -> (len(users), num_items)`` through the SavedModel's ``scores``."""
    loaded = tf.saved_model.load(serving_dir)
    scores = loaded.signatures["scores"]
    log, codes = history(split, stage), None
    if hasattr(loaded, "behaviors"):  # a multi-behavior sequence model: every event, with its behavior
        names = [b.decode() for b in loaded.behaviors.numpy()]
        spec_codes = np.array([names.index(b) if b in names else -1 for b in log.spec.behaviors], np.int64)
        log = log.select(spec_codes[log.behaviors] >= 0).sorted()
        codes = spec_codes[log.behaviors]
    else:
        log = log.target_rows().sorted()
    starts = np.searchsorted(log.users, np.arange(split.train.num_users + 1))

    def events(u: int) -> bytes:
        rows = slice(starts[u], starts[u + 1])
        return request(u, log.items[rows], None if codes is None else codes[rows])

    def score_fn(users: Any) -> np.ndarray:
        users = np.asarray(users, np.int64)
        out = []
        for begin in range(0, len(users), batch_size):
            batch = [events(u) for u in users[begin : begin + batch_size]]
            out.append(scores(examples=tf.constant(batch))["scores"].numpy())
        return np.concatenate(out) if out else np.zeros((0, split.train.num_items), np.float32)

    return score_fn


def rank_and_judge(serving_dir: str, split: LeaveOneOut, thresholds: dict[str, float], seed: int = 0) -> dict[str, Any]:
    """The metrics of every stage and protocol, and the blessing verdict (validation, full)."""
    report: dict[str, Any] = {}
    for stage in STAGES:
        score_fn = saved_model_scorer(serving_dir, split, stage)
        report[stage] = {p: evaluate(score_fn, split, stage=stage, protocol=p, seed=seed) for p in PROTOCOLS}
    judged = report["valid"]["full"]
    unknown = [m for m in thresholds if m not in judged]
    if unknown:
        raise ValueError(f"thresholds name unknown metrics {unknown}; known: {sorted(k for k in judged if '@' in k or k == 'MRR')}")
    failed = {m: judged[m] for m, minimum in thresholds.items() if not judged[m] >= minimum}
    report.update(thresholds=thresholds, failed=failed, blessed=not failed, judged_on="valid, full ranking")
    return report


@component
def RankingEvaluator(  # noqa: N802 (a TFX component is named like a class)
    examples: InputArtifact[Examples],
    transform_graph: InputArtifact[TransformGraph],
    model: InputArtifact[Model],
    evaluation: OutputArtifact[ModelEvaluation],
    blessing: OutputArtifact[ModelBlessing],
    custom_config: Parameter[str],
    thresholds: Parameter[str] = "",
) -> None:
    """Ranks the catalog for the held-out users and blesses the model (module docstring)."""
    import tensorflow_transform as tft

    from tfjoint.pipeline.retrieval.trainer import load_split, spec_from_config

    config = json.loads(custom_config)
    limits = parse_thresholds(thresholds)
    tft_output = tft.TFTransformOutput(transform_graph.uri)
    split, not_rankable = load_split(
        [os.path.join(examples.uri, "Split-train", "*")], [os.path.join(examples.uri, "Split-eval", "*")],
        tft_output, spec_from_config(config),
    )
    report = rank_and_judge(os.path.join(model.uri, "Format-Serving"), split, limits, seed=int(config.get("seed", 0)))
    report["not_rankable"] = not_rankable  # held-out events whose user or item no training event has
    tf.io.gfile.makedirs(evaluation.uri)
    with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILENAME), "w") as f:
        json.dump(report, f, indent=1, default=float)
    blessing.set_int_custom_property("blessed", int(report["blessed"]))
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED" if report["blessed"] else "NOT_BLESSED"), "w") as f:
        f.write("")
