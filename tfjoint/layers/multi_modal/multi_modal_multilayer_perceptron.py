"""MMMLP: per-modality MLP-Mixer stacks over the item sequence, a fusion mixer, SASRec's training."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from tfjoint.layers.core.arguments import dropout_rate, positive_int
from tfjoint.layers.multi_modal.item_content import ContentSequenceModel, check_content_arguments
from tfjoint.layers.retrieval.self_attentive_sequential_recommendation import SelfAttentiveSequentialRecommendation
from tfjoint.registry import register

NORM_EPSILON = 1e-5  # torch's LayerNorm default, the authors' PreNormResidual


def causal_token_masks(length: int, expansion: int) -> tuple[np.ndarray, np.ndarray]:
    """``(M1, M2)``, ``(L, eL)`` and ``(eL, L)`` 0/1 masks of the token-mixing weights: hidden
    unit ``j`` belongs to position ``p(j) = j // e``, reads the positions ``s <= p(j)`` and is
    read by the positions ``t >= p(j)``, so output ``t`` depends on the inputs ``s <= t`` only."""
    owner = np.arange(length * expansion) // expansion
    positions = np.arange(length)
    first = (positions[:, None] <= owner[None, :]).astype(np.float32)
    second = (owner[:, None] <= positions[None, :]).astype(np.float32)
    return first, second


class FeatureMixer(keras.layers.Layer):
    """One Feature Mixer layer of MMMLP (Liang et al., WWW 2023, Sec. 3.2) on ``X`` ``(B, L, d)``:

    - token mixing, per channel across the positions:
      ``U = X + [(W^2 ⊙ M2)ᵀ GELU((W^1 ⊙ M1)ᵀ LN(X)_{:,c} + b^1) + b^2]_c`` with
      ``W^1 (L, eL)``, ``W^2 (eL, L)`` (the authors' ``Conv1d`` of kernel 1 over the
      positions) and the causal masks of :func:`causal_token_masks`;
    - channel mixing, per position across the channels:
      ``Y = U + W^4 GELU(W^3 LN(U) + b^3) + b^4`` with ``W^3 (d, ed)``, ``W^4 (ed, d)``;

    dropout after each GELU and each output (the authors' ``FeedForward``), padding rows
    zeroed in ``LN(X)`` and in ``Y`` (``pad`` is the float ``(B, L)`` mask).
    """

    def __init__(self, length: int, width: int, expansion: int = 4, dropout: float = 0.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length, self.width = positive_int("length", length), positive_int("width", width)
        self.expansion, self.rate = positive_int("expansion", expansion), dropout_rate(dropout)
        init = keras.initializers.GlorotUniform(seed)
        hidden = self.length * self.expansion
        self.token_norm = keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name=f"{self.name}_token_norm")
        self.channel_norm = keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name=f"{self.name}_channel_norm")
        self.channel_inner = keras.layers.Dense(
            self.width * self.expansion, activation="gelu", kernel_initializer=init, name=f"{self.name}_channel_inner"
        )
        self.channel_outer = keras.layers.Dense(self.width, kernel_initializer=init, name=f"{self.name}_channel_outer")
        for layer in (self.token_norm, self.channel_norm, self.channel_inner):
            layer.build((None, self.width))
        self.channel_outer.build((None, self.width * self.expansion))
        self.token_inner = self.add_weight(shape=(self.length, hidden), initializer=init, name="token_inner")
        self.token_inner_bias = self.add_weight(shape=(hidden,), initializer="zeros", name="token_inner_bias")
        self.token_outer = self.add_weight(shape=(hidden, self.length), initializer=init, name="token_outer")
        self.token_outer_bias = self.add_weight(shape=(self.length,), initializer="zeros", name="token_outer_bias")
        self.masks = causal_token_masks(self.length, self.expansion)
        self.dropout_layer = keras.layers.Dropout(self.rate, seed=seed)
        self.built = True

    def mix_tokens(self, x: Any, pad: Any, training: bool | None = None) -> Any:
        """The token-mixing MLP's output ``(B, L, d)`` (before the residual)."""
        first, second = (ops.cast(m, self.token_inner.dtype) for m in self.masks)
        columns = ops.transpose(self.token_norm(x) * pad[..., None], (0, 2, 1))  # (B, d, L)
        hidden = ops.gelu(ops.matmul(columns, self.token_inner * first) + self.token_inner_bias, approximate=False)
        hidden = self.dropout_layer(hidden, training=training)
        out = self.dropout_layer(ops.matmul(hidden, self.token_outer * second) + self.token_outer_bias, training=training)
        return ops.transpose(out, (0, 2, 1))

    def mix_channels(self, x: Any, training: bool | None = None) -> Any:
        """The channel-mixing MLP's output ``(B, L, d)`` (before the residual)."""
        hidden = self.dropout_layer(self.channel_inner(self.channel_norm(x)), training=training)
        return self.dropout_layer(self.channel_outer(hidden), training=training)

    def call(self, x: Any, pad: Any, training: bool | None = None) -> Any:
        pad = ops.cast(pad, x.dtype)
        x = x + self.mix_tokens(x, pad, training)
        return (x + self.mix_channels(x, training)) * pad[..., None]


class MixerFusionBlocks:
    """MMMLP's Feature Mixer stacks per branch and its Fusion Mixer, for the class using it
    (the ``mmmlp`` retrieval model and ``mmmlp_encoder``), which sets ``num_blocks``,
    ``expansion``, ``dropout``, ``seed`` and ``final_norm`` and calls :meth:`build_mixers`."""

    def build_mixers(self, length: int, width: int, branches: int) -> None:
        """Per branch an input LN and ``num_blocks`` :class:`FeatureMixer` layers over
        ``length`` positions of ``width`` channels; the fusion LN and ``W^F``."""
        init = keras.initializers.GlorotUniform(self.seed)

        def norm(name: str, size: int) -> keras.layers.LayerNormalization:
            layer = keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name=name)
            layer.build((None, size))
            return layer

        self.input_norms = [norm(f"input_norm_{m}", width) for m in range(branches)]
        self.mixers = [  # flat (a nested list is not tracked by tf.saved_model): branch m, layer b at m * num_blocks + b
            FeatureMixer(length, width, self.expansion, self.dropout, self.seed, name=f"feature_mixer_{m}_{b}")
            for m in range(branches) for b in range(self.num_blocks)
        ]
        self.fusion_norm = norm("fusion_norm", branches * width)
        self.fusion = keras.layers.Dense(width, kernel_initializer=init, name="fusion")
        self.fusion.build((None, branches * width))

    def branch_mixers(self, branch: int) -> list[FeatureMixer]:
        """The Feature Mixer layers of ``branch`` (0: the item ids, ``m``: modality ``m``)."""
        return self.mixers[branch * self.num_blocks : (branch + 1) * self.num_blocks]

    def fuse(self, outputs: list[Any]) -> Any:
        """The Fusion Mixer: ``LN(W^F LN([X^(0); X^(1); ...]) + b^F)``."""
        return self.final_norm(self.fusion(self.fusion_norm(ops.concatenate(outputs, axis=-1))))

    def mix(self, inputs: list[Any], pad: Any, training: bool | None = None) -> Any:
        """``F``: each branch's normalized input (padding 0) through its Feature Mixers, then
        the Fusion Mixer; ``inputs`` are the branches' sequences before their input LN."""
        outputs = []
        for m, (norm, x) in enumerate(zip(self.input_norms, inputs)):
            x = norm(x) * pad[..., None]
            for mixer in self.branch_mixers(m):
                x = mixer(x, pad, training=training)
            outputs.append(x)
        return self.fuse(outputs)


@register(
    "mmmlp",
    slot="retrieval_model",
    family="multi_modal",
    reference="Liang et al., MMMLP: Multi-modal Multilayer Perceptron for Sequential Recommendations, WWW 2023",
)
class MultiModalMultilayerPerceptron(MixerFusionBlocks, ContentSequenceModel, SelfAttentiveSequentialRecommendation):
    """MMMLP: a stack of Feature Mixer layers per modality sequence, a Fusion Mixer, and the
    next item predicted against the item table (Liang et al., WWW 2023, Sec. 3; the
    authors' ``mmmlp.py``, Applied-Machine-Learning-Lab/MMMLP).

    For a user's latest ``L = max_len`` items ``i_1..i_L`` (left-padded, as SASRec):

    - modality sequences ``X^(0)_t = LN(M_{i_t})`` (the item ids; ``M`` is the item table)
      and, per modality ``m`` (a column block of the item features ``f_i``, ``modality_dims``),
      ``X^(m)_t = LN(E_m f^(m)_{i_t} + b_m)``; padding rows 0;
    - Feature Mixer (:class:`FeatureMixer`, ``num_blocks`` layers per modality, own weights):
      token mixing across the positions per channel, then channel mixing across the channels
      per position, each ``x + MLP(LN(x))`` with GELU and expansion ``e`` (``expansion``);
    - Fusion Mixer (the authors' code): ``F_t = LN(W^F LN([X^(0)_t; X^(1)_t; ...]) + b^F)``,
      the concatenated modality outputs normalized, projected back to ``d``, normalized;
    - prediction ``r_{i,t} = F_t · (M_i + E_c f_i)``; the user is ``F_L``.

    Training is SASRec's (reused): binary cross-entropy of the next item against one
    negative per position, Adam(beta_2 = 0.98), validation-selected epochs.

    Deviations:

    - the token mixing is *causal*: its weights are masked (:func:`causal_token_masks`,
      as TriMLP's triangular mixer) so position ``t`` reads positions ``<= t`` only. The
      authors' mixer is dense over the positions and trained on the last position only
      (RecBole); SASRec's loss at every position would read the target otherwise;
    - each of the ``num_blocks`` layers has its own weights (the authors' loop reuses one
      layer and, in the modality branches, restarts it from the input at every pass);
    - the modality vectors are fixed features projected to ``d`` (the authors load 128-d
      text and image vectors, and the image branch's patch mixer is not reproduced);
    - candidates ``M_i + E_c f_i`` (the authors score with ``M`` alone) and negatives among
      the warm items, so a cold item (no training row) is scored by its features: ``cold_start``
      as NOVA's (:class:`~tfjoint.layers.multi_modal.item_content.ContentSequenceModel`).
      A cold item inside a history enters the id branch with its untrained row.

    Args:
        num_items: size of the item index space.
        item_features: ``(num_items, F)`` float item features ``f_i``; or None and
            ``feature_dim`` (then pass them to :meth:`fit`; a ``.keras`` file restores them).
        feature_dim: ``F``; inferred from ``item_features`` when it is given.
        modality_dims: widths of the modalities in the columns of ``f_i`` (e.g. ``[384, 512]``
            for text then image), summing to ``F``; default one modality of all ``F`` columns.
        expansion: ``e``, the MLPs' hidden width factor (the authors: 4).
        cold_start: ``"features"``, ``"mean"`` or ``"none"`` (NOVA's).
        max_len: ``L``; every sequence has exactly ``L`` positions (the token MLP's width).
        hidden_dim: ``d``.
        num_blocks: Feature Mixer layers per modality.
        dropout, l2_emb, behaviors, seed: as :class:`SelfAttentiveSequentialRecommendation`.

    Call arguments:
        sequences: int ``(batch, max_len)`` of item index + 1, 0 for padding.

    Returns:
        The fused states ``F`` ``(batch, max_len, hidden_dim)``.

    Example:
    >>> import numpy as np
    >>> features = np.eye(9, 4, dtype="float32")
    >>> model = MultiModalMultilayerPerceptron(num_items=9, item_features=features, max_len=4, hidden_dim=8, seed=0)
    >>> tuple(model(np.array([[0, 0, 3, 5]])).shape)
    (1, 4, 8)

    Reference:
        Liang, Zhao, Li, Zhang, Wang, Liu, Liu. MMMLP: Multi-modal Multilayer Perceptron for
        Sequential Recommendations. WWW 2023.
    """

    def __init__(
        self,
        num_items: int,
        item_features: Any = None,
        feature_dim: int | None = None,
        modality_dims: list[int] | None = None,
        expansion: int = 4,
        cold_start: str = "features",
        max_len: int = 50,
        hidden_dim: int = 64,
        num_blocks: int = 2,
        dropout: float = 0.2,
        l2_emb: float = 0.0,
        behaviors: list[str] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        item_features, feature_dim = check_content_arguments("MMMLP", num_items, item_features, feature_dim, cold_start)
        dims = [feature_dim] if modality_dims is None else [int(w) for w in modality_dims]
        if not dims or min(dims) < 1 or sum(dims) != feature_dim:
            raise ValueError(
                f"modality_dims must be positive widths summing to feature_dim={feature_dim}. Received: modality_dims={modality_dims}"
            )
        self.modality_dims, self.expansion = dims, positive_int("expansion", expansion)
        super().__init__(
            num_items, max_len=max_len, hidden_dim=hidden_dim, num_blocks=num_blocks,
            dropout=dropout, l2_emb=l2_emb, behaviors=behaviors, seed=seed, **kwargs,
        )
        self.build_content(item_features, feature_dim, cold_start)
        d, init = self.hidden_dim, keras.initializers.GlorotUniform(seed)
        self.modality_projections = []
        for m, width in enumerate(dims):
            layer = keras.layers.Dense(d, kernel_initializer=init, name=f"modality_projection_{m}")
            layer.build((None, width))
            self.modality_projections.append(layer)
        self.build_mixers(self.max_len, d, 1 + len(dims))
        self.built = True

    def build_blocks(self) -> None:
        """No attention blocks and no position embedding: the token mixing is position-aware
        (the mixers are built in ``__init__``, after the modality sizes are known)."""

    def embedding_tables(self) -> list[Any]:
        return [self.item_embedding.embeddings]

    def modality_inputs(self, sequences: Any, training: bool | None = None) -> tuple[list[Any], Any]:
        """``([M_i, E_1 f^(1) + b_1, ...], pad)``: the id and modality sequences before their
        input LN (:meth:`MixerFusionBlocks.mix`)."""
        ids, pad = self.embed(sequences, training, positions=False)
        features, start, inputs = self.sequence_features(sequences), 0, [ids]
        for width, projection in zip(self.modality_dims, self.modality_projections):
            inputs.append(projection(features[..., start : start + width]))
            start += width
        return inputs, pad

    def call(self, sequences: Any, training: bool | None = None) -> Any:
        length = sequences.shape[1]
        if length is not None and length != self.max_len:
            raise ValueError(f"sequences must have max_len={self.max_len} positions. Received: shape={tuple(sequences.shape)}")
        inputs, pad = self.modality_inputs(sequences, training)
        return self.mix(inputs, pad, training)

    def get_config(self) -> dict[str, Any]:
        """SASRec's arguments (no heads), ``feature_dim``, ``cold_start``, ``modality_dims``
        and ``expansion`` (the features are saved as a weight)."""
        config = {**super().get_config(), **self.content_config(), "modality_dims": self.modality_dims, "expansion": self.expansion}
        config.pop("num_heads")
        return config
