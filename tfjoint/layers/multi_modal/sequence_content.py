"""What the sequence encoders that read the history's content share (``nova_encoder``,
``mmmlp_encoder``): the item vector names the embedding slot gives, the per-position content,
the user's last history position and the output ``E^B`` read from it.

The embedding slot gives them under
:class:`~tfjoint.layers.core.contracts.NeedsSequenceContent`'s keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.contracts import SEQUENCE_BEHAVIOR_EMBEDDINGS_KEY, SEQUENCE_ITEMS_KEY, sequence_tokens_key
from tfjoint.layers.multi_modal.modality_fusion import masked_mean

CONTENT_PREFIX = sequence_tokens_key("")


def content_names(input_shape: dict[str, Any]) -> list[str]:
    """The item vector names whose history content the embedding's dict holds, sorted."""
    return sorted(k[len(CONTENT_PREFIX):] for k in input_shape if k.startswith(CONTENT_PREFIX) and not k.endswith("_mask"))


def last_position(hidden: Any, pad: Any) -> Any:
    """``(batch, d)``: the hidden state at each row's last unpadded position (0 for a row
    without any), the position that has attended to the whole history (causal mask)."""
    length = ops.shape(pad)[1]
    last = ops.cast(ops.max(ops.cast(ops.arange(1, length + 1), pad.dtype)[None] * pad, axis=1), "int32") - 1
    return ops.einsum("bl,bld->bd", ops.one_hot(last, length, dtype=hidden.dtype), hidden)


class LastPositionOutput:
    """The tail of a history encoder: ``E^B = act(W F_last + c)``, ``F_last`` the state
    ``hidden_states`` (the subclass's ``(batch, L, d)`` float32 states) gives at the row's last
    history position. Needs ``output_dim`` and ``activation``; ``build`` calls
    :meth:`build_output` with ``d``."""

    def build_output(self, width: int) -> None:
        self.output_layer = keras.layers.Dense(
            self.output_dim, activation=self.activation, name="output", dtype=self.dtype_policy
        )
        self.output_layer.build((None, width))

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        user = last_position(self.hidden_states(inputs, training), ops.cast(inputs["sequence_mask"], "float32"))
        return self.output_layer(ops.cast(user, self.compute_dtype))

    def compute_output_shape(self, input_shape: dict[str, Any]) -> tuple[int | None, int]:
        return (input_shape["sequence_mask"][0], self.output_dim)


def check_history_inputs(encoder: str, input_shape: dict[str, Any]) -> list[str]:
    """The item vector names of ``input_shape``; a one-line ValueError naming ``encoder``
    when the history's id and behavior embeddings or its content are missing."""
    names = content_names(input_shape)
    if not {SEQUENCE_ITEMS_KEY, SEQUENCE_BEHAVIOR_EMBEDDINGS_KEY} <= set(input_shape) or not names:
        raise ValueError(
            f"{encoder} reads each history item's id and behavior embeddings and content (`{SEQUENCE_ITEMS_KEY}`, "
            f"`{SEQUENCE_BEHAVIOR_EMBEDDINGS_KEY}`, `{CONTENT_PREFIX}<name>`), which an embedding built with "
            f"sequence_content=True and item_vectors gives. Received keys: {sorted(input_shape)}"
        )
    return names


def history_content(inputs: dict[str, Any], names: list[str]) -> list[Any]:
    """Per item vector ``name``, its content at every history position ``(batch, L, d_name)``,
    float32: the masked mean over its tokens, 0 where the item has none."""
    return [masked_mean(inputs[sequence_tokens_key(n)], inputs[f"{sequence_tokens_key(n)}_mask"]) for n in names]


@contextlib.contextmanager
def float32_layers() -> Iterator[None]:
    """Sublayers created inside compute in float32 whatever the global policy (a mixed
    policy's float16 overflows the attention's padding logit ``-2^32``)."""
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
