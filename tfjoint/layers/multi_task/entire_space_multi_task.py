"""ESMM: the entire-space multi-task model for cascades (impression -> click -> conversion)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.layers.core.arguments import non_negative
from tfjoint.layers.core.contracts import CascadeArchitecture, ImputesCascadeSteps, weighted_mean
from tfjoint.layers.core.mlp import MLP
from tfjoint.layers.multi_task.independent_task_towers import IndependentTaskTowers
from tfjoint.registry import register


@register(
    "esmm",
    slot="task_architecture",
    family="multi_task",
    reference="Ma et al., Entire Space Multi-Task Model: An Effective Approach for Estimating "
    "Post-Click Conversion Rate, SIGIR 2018",
)
class EntireSpaceMultiTask(CascadeArchitecture, IndependentTaskTowers):
    """ESMM: one tower per task over the shared embedding, trained over the entire space.

    The towers are :class:`IndependentTaskTowers` (the embedding is the only shared part,
    as in the paper); what ESMM adds is the training. As a ``CascadeArchitecture`` (whose
    default ``cascade_step_loss`` is ESMM's), the joint model treats every binary task with a binary parent as a cascade step: its head predicts the
    conditional ``pCVR = p(task | parent)``, the model adds the output
    ``<task>_joint = p(parent, joint) * pCVR`` (``pCTCVR = pCTR * pCVR``, eq. 1 of the
    paper), and the task's loss is the cross-entropy of ``<task>_joint`` against
    ``y_parent * y_task`` over *all* rows (eq. 3), so the conditional head is never fitted
    on the clicked rows alone and sample selection bias does not enter.

    Args:
        task_names: names of the tasks, one tower each.
        tower_units: hidden sizes of every tower.
        dropout: dropout rate inside the towers.
        batch_norm: BatchNormalization in every tower layer (:class:`MLP`); off by default.

    Call arguments:
        inputs: the merged representation, ``(batch, d)``.
        training: Python bool.

    Returns:
        Dict ``{task: (batch, tower_units[-1])}``.
    """


@register(
    "escm2",
    slot="task_architecture",
    family="multi_task",
    reference="Wang et al., ESCM2: Entire Space Counterfactual Multi-Task Model for Post-Click "
    "Conversion Rate Estimation, SIGIR 2022",
)
class EntireSpaceCounterfactualMultiTask(ImputesCascadeSteps, EntireSpaceMultiTask):
    """ESCM2: ESMM plus a counterfactual CVR risk that removes ESMM's inherent estimation bias.

    Each cascade step's loss is ``L_CTCVR + lambda * R`` (eq. 11 of the paper), with
    ``o`` the parent label, ``p_hat = stop_gradient(pCTR)`` clipped to ``[clip, 1]``,
    ``e = BCE(y, pCVR)`` the CVR error and the average over all impressions:

    - ``variant="ips"`` (eq. 6): ``R_IPS = mean(o * e / p_hat)``;
    - ``variant="dr"`` (eqs. 7-8): an imputation tower predicts ``e_hat``;
      ``R_DR = mean(e_hat + o * (e - e_hat) / p_hat)`` with ``e_hat`` fixed, plus the
      imputation loss ``mean(o * (e - e_hat)^2 / p_hat)`` with ``e`` fixed, so the CVR tower
      and the imputation tower are trained jointly as in the paper's DR-JL setting.

    The three stop-gradients: (1) the propensity ``p_hat``, in both variants, so the
    counterfactual risk never trains the CTR tower through ``1 / p_hat`` (which would
    push ``pCTR`` up on clicked rows only to shrink their weight); the reference code does
    the same (PaddleRec ``models/multitask/escm2``, ``static_model.py``: ``IPS.stop_gradient
    = True`` in ``counterfact_ipw`` and ``counterfact_dr``; Ant Group's MMLRec benchmark,
    ``model/escm.py``, in ``counterfact_ipw``). (2) ``e_hat`` in ``R_DR``, so
    only the imputation loss fits the imputation tower, and (3) ``e`` in the imputation
    loss, so only ``R_DR`` fits the CVR tower: DR-JL's alternation (Wang et al., ICML
    2019, which ESCM2-DR follows) of a CVR step with the imputation fixed and an
    imputation step with the CVR fixed, in one update. The PaddleRec code leaves (2) and
    (3) out and lets every term train every tower.

    The imputation tower is an MLP with a final ``Dense(1, imputation_activation)``. The
    default ``"sigmoid"`` is the reference code's: PaddleRec's ``net.py`` ends the
    imputation tower in a 2-way softmax and takes the class-1 probability (a sigmoid of the
    logit difference), and MMLRec's ``escm_dr`` head ends in its sigmoid prediction layer.
    It replaces a final ReLU that could die: once its pre-activation is negative on every
    row, ``e_hat = 0`` with zero gradient and the imputation is never fitted again. A sigmoid bounds
    ``e_hat`` by 1, while ``e`` is unbounded; ``"softplus"`` is unbounded and never dies.

    Args:
        task_names: names of the tasks, one tower each.
        variant: ``"ips"`` or ``"dr"``.
        counterfactual_weight: ``lambda``.
        propensity_clip: lower bound of ``p_hat``.
        tower_units: hidden sizes of every tower.
        dropout: dropout rate inside the towers.
        batch_norm: BatchNormalization in every tower layer (:class:`MLP`); off by default.
        imputed_tasks: the tasks that get an imputation tower with ``variant="dr"``: the
            cascade steps, which the joint model passes; ``None``: every task.
        imputation_activation: the activation of the imputation tower's output unit
            (``"sigmoid"``, the reference code's; ``"softplus"``; any Keras activation name).

    Returns:
        Dict ``{task: tower output}``; with ``variant="dr"`` also
        ``{"<task>_imputed_error": (batch, 1)}`` for every task of ``imputed_tasks``.
    """

    # The joint model passes the names of its binary cascade steps as ``imputed_tasks``.

    def __init__(
        self,
        task_names: list[str],
        variant: str = "ips",
        counterfactual_weight: float = 0.1,
        propensity_clip: float = 0.05,
        tower_units: list[int] | tuple[int, ...] = (64, 32),
        dropout: float = 0.0,
        imputed_tasks: list[str] | None = None,
        imputation_activation: str = "sigmoid",
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        if variant not in ("ips", "dr"):
            raise ValueError(f"variant must be 'ips' or 'dr'. Received: variant={variant!r}")
        counterfactual_weight = non_negative("counterfactual_weight", counterfactual_weight)
        if not 0.0 < propensity_clip <= 1.0:
            raise ValueError(f"propensity_clip must be in (0, 1]. Received: propensity_clip={propensity_clip}")
        super().__init__(
            task_names, tower_units=tower_units, dropout=dropout, batch_norm=batch_norm, **kwargs
        )
        self.variant = variant
        self.counterfactual_weight = counterfactual_weight
        self.propensity_clip = float(propensity_clip)
        if imputed_tasks is not None:
            unknown = [t for t in imputed_tasks if t not in self.task_names]
            if unknown:
                raise ValueError(f"imputed_tasks must be among task_names {self.task_names}. Received: {unknown}")
            imputed_tasks = list(imputed_tasks)
        self.imputed_tasks = imputed_tasks
        keras.activations.get(imputation_activation)  # an unknown name fails here
        self.imputation_activation = imputation_activation

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)
        self.imputation, self.imputation_outputs = {}, {}
        if self.variant == "dr":
            for name in self.task_names if self.imputed_tasks is None else self.imputed_tasks:
                tower = MLP(self.tower_units, activation="relu", name=f"imputation_{name}", dtype=self.dtype_policy)
                tower.build(input_shape)
                head = keras.layers.Dense(
                    1,
                    activation=self.imputation_activation,
                    name=f"imputation_{name}_output",
                    dtype=self.dtype_policy,
                )
                head.build(tower.compute_output_shape(input_shape))
                self.imputation[name] = tower
                self.imputation_outputs[name] = head

    def task_weights(self, task: str) -> list[Any]:
        """Task ``task``'s tower and, with ``variant="dr"``, its imputation tower."""
        layers = [self.imputation[task], self.imputation_outputs[task]] if task in self.imputation else []
        return super().task_weights(task) + [w for layer in layers for w in layer.trainable_weights]

    def call(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        outputs = super().call(inputs, training=training)
        for name, tower in self.imputation.items():
            # A non-negative imputed cross-entropy, like the error itself (see the class doc).
            hidden = tower(inputs, training=training)
            outputs[f"{name}_imputed_error"] = ops.cast(self.imputation_outputs[name](hidden), "float32")
        return outputs

    def cascade_step_loss(
        self,
        task: str,
        *,
        parent_label: Any,
        label: Any,
        parent_joint: Any,
        conditional: Any,
        joint: Any,
        outputs: dict[str, Any],
        sample_weight: Any = None,
    ) -> Any:
        ctcvr = super().cascade_step_loss(
            task, parent_label=parent_label, label=label, parent_joint=parent_joint,
            conditional=conditional, joint=joint, outputs=outputs, sample_weight=sample_weight,
        )
        propensity = ops.maximum(ops.stop_gradient(parent_joint), self.propensity_clip)
        error = keras.losses.binary_crossentropy(label, conditional)[:, None]
        if self.variant == "ips":
            risk = weighted_mean(parent_label * error / propensity, sample_weight)
        else:
            imputed = ops.reshape(ops.cast(outputs[f"{task}_imputed_error"], "float32"), (-1, 1))
            risk = weighted_mean(
                ops.stop_gradient(imputed) + parent_label * (error - ops.stop_gradient(imputed)) / propensity,
                sample_weight,
            )
            risk = risk + weighted_mean(
                parent_label * ops.square(ops.stop_gradient(error) - imputed) / propensity, sample_weight
            )
        return ctcvr + self.counterfactual_weight * risk

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            variant=self.variant,
            counterfactual_weight=self.counterfactual_weight,
            propensity_clip=self.propensity_clip,
            imputed_tasks=self.imputed_tasks,
            imputation_activation=self.imputation_activation,
        )
        return config
