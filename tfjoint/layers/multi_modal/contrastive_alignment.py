"""Contrastive alignment of two views of a node: BM3's bootstrap loss and InfoNCE.

Two losses over row-aligned views ``a`` (online) and ``b`` (target) of the same nodes:

- :func:`bootstrap_loss` (Zhou et al., "Bootstrap Latent Representations for Multi-modal
  Recommendation", WWW 2023, Eq. 5-7): ``1 - cos(q(a_n), sg(b̃_n))`` per row, where
  ``b̃ = dropout(b)`` is the *target view* (no target network: a perturbed copy of the
  online representation) and ``sg`` the stop-gradient, so nothing flows into the target
  branch and no negative is needed. The predictor ``q`` is applied by the caller (or by
  :class:`ContrastiveAlignment`).
- :func:`~tfjoint.layers.core.contrastive.info_nce` (the one InfoNCE
  of the package, shared with CML; van den Oord et al., 2018, in-batch as SimCLR / CLIP):
  ``-log exp(s_nn / τ) / sum_m exp(s_nm / τ)`` per row with ``s_nm = cos(a_n, b_m)``: the
  other rows of the batch are the negatives, so the rows must be distinct nodes. Both
  views receive the gradient.

:class:`ContrastiveAlignment` is the layer form: it owns the predictor ``q`` (a linear map
with bias, as BM3's ``predictor``), the target dropout and the temperature, and returns the
per-row loss of ``{"online": a, "target": b}`` for ``alignment="bootstrap"`` or
``"infonce"``. BM3 (:mod:`tfjoint.layers.multi_modal.bootstrap_multi_modal`) uses one such
layer for all its terms, so one predictor is shared, as in the paper.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import positive, positive_int
from tfjoint.layers.core.contrastive import info_nce

ALIGNMENTS = ("bootstrap", "infonce")


def _normalize(x: Any) -> Any:
    x = ops.cast(x, "float32")
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True)), 1e-8)


def bootstrap_loss(prediction: Any, target: Any) -> Any:
    """``1 - cos(prediction_n, sg(target_n))`` per row ``n`` (BM3, Eq. 5-7): the target is
    a stop-gradient copy, so the gradient reaches ``prediction`` only."""
    target = ops.stop_gradient(target)
    return 1.0 - ops.sum(_normalize(prediction) * _normalize(target), axis=-1)


@keras.saving.register_keras_serializable(package="tfjoint")
class ContrastiveAlignment(keras.layers.Layer):
    """Per-row alignment loss of an online view to a target view (see the module docstring).

    ``alignment="bootstrap"``: ``1 - cos(q(a), sg(dropout(b)))`` (dropout only when
    ``training``); ``"infonce"``: InfoNCE (:func:`info_nce`) of ``q(a)`` against ``b`` with
    temperature ``τ``.

    Args:
        units: size of both views (``q`` maps ``R^units -> R^units``).
        alignment: ``"bootstrap"`` (BM3) or ``"infonce"``.
        dropout: dropout rate of the bootstrap target view (BM3's ``dropout``, 0.3-0.5).
        temperature: ``τ`` of InfoNCE.
        seed: seed of the predictor's initializer and of the target dropout.

    Call arguments:
        inputs: ``{"online": a, "target": b}``, float ``(batch, units)`` each.

    Returns:
        The loss per row, ``(batch,)``.

    Example:
    >>> import numpy as np
    >>> layer = ContrastiveAlignment(units=4, seed=0)
    >>> a = np.ones((3, 4), "float32")
    >>> tuple(layer({"online": a, "target": a}).shape)
    (3,)
    """

    def __init__(
        self,
        units: int,
        alignment: str = "bootstrap",
        dropout: float = 0.5,
        temperature: float = 0.2,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}. Received: alignment={alignment!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
        self.units = positive_int("units", units)
        self.alignment = alignment
        self.dropout = float(dropout)
        self.temperature = positive("temperature", temperature)
        self.seed = seed
        # BM3's predictor: nn.Linear(d, d) with Xavier-normal weights.
        self.predictor = keras.layers.Dense(
            self.units, kernel_initializer=keras.initializers.GlorotNormal(seed=seed), name="predictor"
        )
        self.predictor.build((None, self.units))
        self.target_dropout = keras.layers.Dropout(self.dropout, seed=seed)

    def predict_view(self, x: Any) -> Any:
        """``q(x)``, the predictor of the online branch."""
        return self.predictor(x)

    def target_view(self, x: Any, training: bool | None = None) -> Any:
        """``sg(dropout(x))``: BM3's target view (dropout only when ``training``)."""
        return ops.stop_gradient(self.target_dropout(x, training=training))

    def bootstrap(self, online: Any, target: Any, training: bool | None = None) -> Any:
        """``1 - cos(q(online), sg(dropout(target)))`` per row."""
        return bootstrap_loss(self.predict_view(online), self.target_view(target, training))

    def info_nce(self, online: Any, target: Any) -> Any:
        """InfoNCE of ``q(online)`` against ``target`` (rows distinct nodes)."""
        return info_nce(self.predict_view(online), target, self.temperature)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        if self.alignment == "bootstrap":
            return self.bootstrap(inputs["online"], inputs["target"], training)
        return self.info_nce(inputs["online"], inputs["target"])

    def compute_output_shape(self, input_shape: dict[str, Any]) -> tuple[Any, ...]:
        return (input_shape["online"][0],)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "alignment": self.alignment,
            "dropout": self.dropout,
            "temperature": self.temperature,
            "seed": self.seed,
        }


__all__ = ["ALIGNMENTS", "ContrastiveAlignment", "bootstrap_loss", "info_nce"]
