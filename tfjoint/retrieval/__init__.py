"""Top-K retrieval: leave-one-out splits, ranking protocols and metrics (issue 12).

- :mod:`tfjoint.retrieval.metrics`: the rank of a held-out item (ties counted against it)
  and HR@K, Recall@K, NDCG@K, MRR.
- :mod:`tfjoint.retrieval.protocols`: :func:`leave_one_out` by time with a validation
  hold-out, :func:`history` (a model's input per stage), :func:`evaluate` under full
  ranking or 99 sampled negatives, every result labelled with its protocol.
- :mod:`tfjoint.retrieval.cold_start` (imported on its own): a split of a log with item
  features into warm leave-one-out items and cold items never trained on, and their
  evaluation (warm items among warm, cold among cold, cold among all).
- :mod:`tfjoint.retrieval.export` (imported on its own, it loads TensorFlow):
  :func:`~tfjoint.retrieval.export.export_topk_model` and
  :func:`~tfjoint.retrieval.export.push` write a TF Serving SavedModel whose
  ``serving_default`` returns the top-K items of a serialized user example, computed in
  the graph, with ``user_embedding`` / ``item_embeddings`` signatures for an ANN index.

Inputs are :class:`tfjoint.features.interactions.InteractionLog`; loaders live in
:mod:`tfjoint.datasets.interactions`.
"""

from tfjoint.retrieval.metrics import DEFAULT_KS, metrics_from_ranks, target_ranks
from tfjoint.retrieval.protocols import (
    MASKS,
    PROTOCOLS,
    STAGES,
    LeaveOneOut,
    evaluate,
    history,
    leave_one_out,
    sample_negatives,
)

__all__ = [
    "DEFAULT_KS",
    "MASKS",
    "PROTOCOLS",
    "STAGES",
    "LeaveOneOut",
    "evaluate",
    "history",
    "leave_one_out",
    "metrics_from_ranks",
    "sample_negatives",
    "target_ranks",
]
