"""Slot contracts: what a component declares so the joint model wires it correctly.

Every slot takes any Keras layer with the slot's call signature (see
:mod:`tfjoint.joint.model`). A component that needs more than that inherits one or more
of these small base classes; the joint model and its builder check ``isinstance``, never
attributes by name. A user's own layer plugs into a slot the same way.

=====================  ======================================================================
contract               what the joint model does with it
=====================  ======================================================================
``ScenarioAware``      a task architecture is called on ``[E_merge, scenario ids]`` and built
                       with ``num_scenarios`` (scenario adapters always are)
``NeedsEmbeddings``    the component is called on ``{"inputs", "scenario", *extra_inputs}``,
                       with the named outputs of the embedding (``fields``, ``sequence``, ...)
``NeedsTaskEmbeddings``  a task architecture that wants per-task embedding tables: the builder
                       builds the embedding with ``task_tables=task names``, which then also
                       outputs ``fields_<task>`` (:func:`task_fields_key`) for each task
``NeedsSequenceContent``  a sequence encoder that reads every history item's content: the
                       builder builds the embedding with ``sequence_content=True``, which then
                       also outputs the history's id and behavior embeddings apart
                       (``sequence_items``, ``sequence_behavior_embeddings``) and each item
                       vector per position (:func:`sequence_tokens_key`)
``AddsToLogits``       a scenario adapter returns ``{"outputs": E_merge', "logit": s_a}``: the
                       task architecture reads ``outputs`` and ``s_a`` is added to every task
                       head's logit before its activation (STAR's auxiliary network)
``CascadeArchitecture``  binary cascade steps are trained over the entire space: the model
                       serves ``<task>_joint`` and asks ``cascade_step_loss`` for the loss
``ImputesCascadeSteps``  a cascade architecture built with ``imputed_tasks`` (ESCM2-DR)
``StagedTraining``     :func:`tfjoint.joint.staged.fit_joint_model` runs ``training_stages``
                       instead of one ``fit`` (M-LoRA: pre-train, then per-scenario tuning)
=====================  ======================================================================
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import keras
from keras import ops


class ScenarioAware:
    """A task architecture that takes the scenario: called on ``[E_merge, scenario ids]``.

    Its constructor accepts ``num_scenarios``, which the builder passes.
    """


class NeedsEmbeddings:
    """A scenario-aware component that also reads named outputs of the embedding.

    ``extra_inputs`` lists keys of the embedding's output dict (``"fields"``,
    ``"sequence"``, ``"sequence_mask"``, ``"target"``); the component is then called on
    ``{"inputs": E_merge, "scenario": ids, **{key: embedded[key]}}``.
    """

    extra_inputs: ClassVar[tuple[str, ...]] = ()


class NeedsTaskEmbeddings(NeedsEmbeddings):
    """A task architecture with its own embedding tables per task beside the shared ones.

    :func:`tfjoint.joint.build_joint_model` builds the embedding slot with
    ``task_tables=[task names]``; such an embedding (``FeatureEmbedding``) adds, for each
    task, tables of the same fields as the shared ``fields`` and outputs them under
    :func:`task_fields_key`. The component names those keys in its ``extra_inputs`` and
    is called in context (see :class:`NeedsEmbeddings`). An embedding layer whose
    constructor takes no ``task_tables`` cannot fill this slot.
    """


DENSE_INPUTS_KEY = "dense_inputs"
"""The key of the raw dense features, ``(batch, num_dense)``, in an embedding's output dict:
the joint model concatenates them beside the flattened ``fields`` (an embedding built with
``numeric="raw"`` or ``"normalized"``)."""


def task_fields_key(task: str) -> str:
    """The key of task ``task``'s own field embeddings in the embedding's output dict."""
    return f"fields_{task}"


SEQUENCE_ITEMS_KEY = "sequence_items"
"""The key of the history's item id embeddings alone, ``(batch, L, d)``, in the output of an
embedding built with ``sequence_content=True`` (``sequence`` adds each position's behavior
embedding to them)."""

SEQUENCE_BEHAVIOR_EMBEDDINGS_KEY = "sequence_behavior_embeddings"
"""The key of the history's behavior embeddings alone, ``(batch, L, d)`` (0 at padding), beside
:data:`SEQUENCE_ITEMS_KEY`: ``sequence`` is their sum."""


def sequence_tokens_key(name: str) -> str:
    """The key of item vector ``name`` at every history position, ``(batch, L, 1, d)``: the
    projected vector the modality encoder gets as ``tokens_<name>`` for the candidate, looked
    up by each history item's id; its mask ``(batch, L, 1)`` is under ``<key>_mask``."""
    return f"sequence_tokens_{name}"


class NeedsSequenceContent:
    """A sequence encoder that reads the content of every history item, not only its id.

    :func:`tfjoint.joint.build_joint_model` builds the embedding slot with
    ``sequence_content=True``; such an embedding (``FeatureEmbedding``) then also outputs
    :data:`SEQUENCE_ITEMS_KEY`, :data:`SEQUENCE_BEHAVIOR_EMBEDDINGS_KEY` and, for each fixed
    item vector table (``item_vectors``,
    indexed by the sequence's item feature), :func:`sequence_tokens_key` and its mask. The
    encoder is called on the whole embedding dict, as every sequence encoder is. Token
    features (titles, genres) are per-row inputs of the candidate only: the model holds no
    item-to-tokens table, so they do not reach the history. A model built without
    ``item_vectors`` cannot fill the slot with such an encoder.
    """


class AddsToLogits:
    """A scenario adapter with a scalar per row that is added to every task's logit.

    Such an adapter returns the dict ``{OUTPUTS_KEY: E_merge', LOGIT_KEY: s_a}`` with
    ``E_merge'`` ``(batch, width)``, the representation the task architecture reads, and
    ``s_a`` ``(batch, 1)``. The joint model then builds each task's head as
    ``y_k = act_k(w_k · tower_k + b_k + s_a)``: ``sigmoid`` for a binary task (STAR's
    ``sigmoid(s_m + s_a)``, Sheng et al., CIKM 2021, sec. 4.4), the identity for a
    regression task. The heads of a model without such an adapter are unchanged.
    """

    OUTPUTS_KEY: ClassVar[str] = "outputs"
    LOGIT_KEY: ClassVar[str] = "logit"


def weighted_mean(values: Any, sample_weight: Any = None) -> Any:
    """The mean over rows of ``values`` (``(batch,)`` or ``(batch, 1)``), weighted per row.

    ``sum_i w_i v_i / sum_i w_i``, and 0 when ``sum_i w_i = 0`` (an empty batch or one whose
    every weight is 0); the plain mean when ``sample_weight`` is ``None``. This is the
    normalization of every task loss of the joint model: a row of weight 0 counts as if it
    were not in the batch, and scaling every weight by a constant changes nothing.
    """
    values = ops.reshape(ops.cast(values, "float32"), (-1,))
    if sample_weight is None:
        return ops.mean(values)
    weights = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
    total = ops.sum(weights)
    return ops.sum(values * weights) / ops.where(total > 0.0, total, ops.ones_like(total))


class CascadeArchitecture:
    """A task architecture that trains binary cascade steps over the entire space.

    For a binary task ``k`` under a binary parent, the joint model serves
    ``<k>_joint = p(parent, joint) * p(k | parent)`` (``cascade_mode = "product"``, ESMM),
    or, with ``cascade_mode = "direct"`` (AITM), the head predicts the joint probability
    and the task output becomes the conditional. The loss of such a step is
    :meth:`cascade_step_loss`; when ``fit`` gets a ``sample_weight``, the joint model passes
    each row's weight as the keyword ``sample_weight`` (``(batch, 1)``), and the step takes
    every mean over rows with :func:`weighted_mean`. An implementation without that keyword
    still works unweighted, and refuses weights with a clear error.
    """

    cascade_mode: ClassVar[str] = "product"

    def task_weights(self, task: str) -> list[Any]:
        """The weights that belong to task ``task`` alone by the architecture: its tower.

        A gradient-level balancer leaves them out of the shared parameters even though the
        entire-space term of a child task reaches the parent's tower (see
        :mod:`tfjoint.balancing.task_gradients`). The default is the trainable weights of
        ``self.towers[task]``, the ``{task: tower}`` mapping that ESMM, ESCM2 and AITM build;
        an architecture without one overrides this.
        """
        return list(self.towers[task].trainable_weights)

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
        """The loss of cascade step ``task`` (each tensor argument ``(batch, 1)`` float32).

        Args:
            task: the step's task name.
            parent_label: ``o``, 1 where the parent happened (clicked).
            label: the step's label over the entire space (``y_click * y_conversion``).
            parent_joint: the predicted probability of the parent (``pCTR``).
            conditional: the step's conditional prediction (``pCVR``).
            joint: ``parent_joint * conditional`` (``pCTCVR``).
            outputs: every model output, for architectures with extra heads.
            sample_weight: each row's weight in the means over rows, or ``None``.

        The default is ESMM's (Ma et al., SIGIR 2018, eq. 3): the cross-entropy of
        ``pCTCVR`` against ``y_click * y_conversion`` over all impressions. ESCM2 and AITM
        add their own terms.
        """
        return weighted_mean(keras.losses.binary_crossentropy(label, joint), sample_weight)


class ImputesCascadeSteps(CascadeArchitecture):
    """A cascade architecture whose constructor takes ``imputed_tasks``: the cascade steps."""


@dataclasses.dataclass(frozen=True)
class TrainingStage:
    """One stage of a staged schedule.

    Args:
        name: the stage's name (the key of its ``History``).
        epochs: passes over the stage's rows.
        train: the only variables trained; ``None`` trains every trainable variable
            except ``frozen``.
        frozen: variables kept fixed when ``train`` is ``None``.
        scenario: train on the rows of this scenario only; ``None`` uses every row.
        freeze_layers: also set ``trainable = False`` on every layer holding none of
            ``train``, so layers with statistics run in inference mode.
    """

    name: str
    epochs: int
    train: tuple[Any, ...] | None = None
    frozen: tuple[Any, ...] = ()
    scenario: int | None = None
    freeze_layers: bool = False


class StagedTraining(abc.ABC):
    """A component with its own training schedule, run by ``fit_joint_model``.

    Subclasses list their stages for a budget of ``epochs`` and name their weights so
    that a trained model can be grown by new scenarios.
    """

    @abc.abstractmethod
    def training_stages(self, epochs: int) -> list[TrainingStage]:
        """The stages, in order, that spend a budget of ``epochs`` passes."""

    @abc.abstractmethod
    def shared_weights(self) -> list[Any]:
        """The weights every scenario uses."""

    @abc.abstractmethod
    def scenario_weights(self, scenario: int | None = None) -> list[Any]:
        """The weights of ``scenario`` only (of every scenario when ``None``)."""
