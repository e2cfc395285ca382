"""The retrieval pipeline's ``preprocessing_fn``: user and item vocabularies, behavior ids.

Transform analyses the ``train`` split only, so the vocabularies (most frequent first, as
``tft.vocabulary`` orders them) hold the users and items a model can learn; a held-out
event whose user or item is not in them maps to -1 and cannot be ranked. The vocabulary
files ``user_id`` and ``item_id`` give each index its original id, which the pushed model
uses to answer requests by original ids.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from tfjoint.pipeline.retrieval.data import BEHAVIOR, ITEM, ITEM_ID, STAGE, TIMESTAMP, USER, USER_ID


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    """``custom_config["behaviors"]``: the behavior names in funnel order (index = position)."""
    behaviors = list(custom_config["behaviors"])
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(behaviors), tf.range(len(behaviors), dtype=tf.int64)),
        default_value=-1,
    )
    outputs = {}
    for raw, index in ((USER_ID, USER), (ITEM_ID, ITEM)):
        vocabulary = tft.vocabulary(inputs[raw], vocab_filename=raw)
        outputs[index] = tft.apply_vocabulary(inputs[raw], vocabulary, default_value=-1)
    outputs[BEHAVIOR] = table.lookup(inputs[BEHAVIOR])
    outputs[TIMESTAMP] = tf.cast(inputs[TIMESTAMP], tf.int64)
    outputs[STAGE] = tf.cast(inputs[STAGE], tf.int64)
    return outputs
