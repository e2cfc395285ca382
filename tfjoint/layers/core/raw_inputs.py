"""The dense inputs as they are: an embedding slot with nothing learned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from tfjoint.registry import register


def dense_values(inputs: dict[str, Any], dense: Sequence[str], dtype: str) -> Any:
    """``(batch, len(dense))``: the dense features side by side, in ``dense`` order."""
    return ops.concatenate([ops.cast(inputs[k], dtype) for k in dense], axis=1)


@register(
    "raw_inputs",
    slot="embedding",
    family="core",
    reference="Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate "
    "Mixture-of-Experts, KDD 2018 (section 4.2: the experts, gates and bottom read x itself)",
)
class RawInputs(keras.layers.Layer):
    """Feeds the dense features to the task architecture unchanged.

    Returns ``{"fields": (batch, len(dense), 1)}``, which the joint model flattens back to
    the raw ``x``: the task architecture sees ``x`` itself, as the experts, gates and bottom
    of the MMoE paper's synthetic experiment do. ``feature_embedding`` would instead
    multiply every input by a learned, randomly initialized vector, which changes how small
    models on dense data train. The scenario is not embedded (a scenario-aware architecture
    still reads the scenario ids), and ids cannot be fed raw: a dataset with categorical,
    token or sequence features needs a real embedding.

    Args:
        dense: dense feature keys, in order.
        categorical, tokens, sequence_item_feature: what the builder passes to every
            embedding; they must be empty.
        vocab_sizes, num_scenarios, embedding_dim, num_behaviors: passed by the builder to
            every embedding; unused.

    Call arguments:
        inputs: dict of transformed features; each dense one ``(batch, 1)``.

    Returns:
        ``{"fields": (batch, len(dense), 1)}``, the inputs in ``dense`` order.

    Example:
    >>> layer = RawInputs(["x0", "x1"])
    >>> out = layer({"x0": keras.ops.ones((2, 1)), "x1": keras.ops.zeros((2, 1))})
    >>> keras.ops.convert_to_numpy(out["fields"])[0, :, 0].tolist()
    [1.0, 0.0]
    """

    def __init__(
        self,
        dense: Sequence[str],
        categorical: Sequence[str] = (),
        tokens: Sequence[str] = (),
        sequence_item_feature: str | None = None,
        vocab_sizes: dict[str, int] | None = None,
        num_scenarios: int = 1,
        embedding_dim: int | None = None,
        num_behaviors: int = 0,
        **kwargs: Any,
    ) -> None:
        if not dense:
            raise ValueError(f"dense must name at least one feature. Received: dense={dense!r}")
        ids = {
            "categorical": list(categorical),
            "tokens": list(tokens),
            "sequence_item_feature": sequence_item_feature,
        }
        fed_ids = {k: v for k, v in ids.items() if v}
        if fed_ids:
            raise ValueError(
                f"RawInputs feeds dense features only; ids need an embedding. Received: {fed_ids}"
            )
        super().__init__(**kwargs)
        self.dense = list(dense)

    def call(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"fields": dense_values(inputs, self.dense, self.compute_dtype)[:, :, None]}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dense": self.dense}
