"""One way to build a joint model: each slot filled from the catalog or with a layer.

::

    features --> embedding E --+-- sequence encoder  -> E^B --+
                               +-- modality encoder  -> E^M --+--> concat (U) --> E_merge
    E_merge --> scenario adapter --> task architecture --> {task: head(tower_k)}

:func:`build_joint_model` constructs a named component from what the dataset implies
(vocabularies, task names, number of scenarios and behaviors) and the contracts its class
declares (:mod:`tfjoint.layers.core.contracts`); a slot may also take a layer instance, or
an importable ``"package.module:Class"`` path (see :func:`resolve_component`).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import keras
import numpy as np

from tfjoint import catalog, features
from tfjoint.features import DatasetSpec, TaskSpec
from tfjoint.joint.cascade import cascade_steps
from tfjoint.joint.model import JointModel
from tfjoint.joint.precision import precision_scope
from tfjoint.layers.core.contracts import ImputesCascadeSteps, NeedsSequenceContent, NeedsTaskEmbeddings, ScenarioAware


# The embedding tables' initial spread with ``batch_norm=True``: N(0, 1e-4), as DeepCTR and
# torch-rechub start theirs (docs/training_speed.md, "BatchNorm and the embedding tables").
BATCH_NORM_EMBEDDING_STDDEV = 1e-4


def input_shapes(spec: DatasetSpec) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape (without batch) and dtype of every transformed model input of ``spec``."""
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    for key in spec.categorical:
        shapes[key] = ((1,), "int64")
    for key in spec.dense:
        shapes[key] = ((1,), "float32")
    shapes[features.SCENARIO_KEY] = ((1,), "int64")
    if spec.sequence:
        shapes[features.SEQUENCE_ITEMS_KEY] = ((spec.sequence.max_len,), "int64")
        shapes[features.SEQUENCE_BEHAVIORS_KEY] = ((spec.sequence.max_len,), "int64")
    for token in spec.tokens:
        shapes[token.name] = ((token.max_len,), "int64")
    return shapes


def resolve_component(slot: str, choice: str | type) -> type:
    """The class of ``choice`` for ``slot``: a registered name, an importable
    ``"package.module:Class"`` (or ``"package.module.Class"``) path, or a class."""
    if isinstance(choice, type):
        return choice
    if ":" in choice or "." in choice:  # registered names have neither
        module_name, _, attr = choice.partition(":") if ":" in choice else choice.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"{slot} {choice!r} is not an importable class: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
            raise ValueError(f"{slot} {choice!r} must name a keras.layers.Layer subclass. Received: {cls!r}")
        return cls
    return catalog.get(choice, slot=slot).cls


def _component(slot: str, choice: Any, context: dict[str, Any], overrides: dict[str, Any]) -> keras.layers.Layer:
    if isinstance(choice, keras.layers.Layer):
        return choice
    return resolve_component(slot, choice)(**{**context, **overrides}, name=slot)


def build_joint_model(
    spec: DatasetSpec,
    vocab_sizes: dict[str, int],
    *,
    task_architecture: str | keras.layers.Layer = "mmoe",
    sequence_encoder: str | keras.layers.Layer | None = "behavior_pooling",
    modality_encoder: str | keras.layers.Layer | None = "gating_fusion",
    scenario_adapter: str | keras.layers.Layer | None = None,
    embedding: str | keras.layers.Layer = "feature_embedding",
    balancer: str | keras.layers.Layer = "fixed",
    tasks: list[TaskSpec] | None = None,
    embedding_dim: int = 16,
    component_kwargs: dict[str, dict[str, Any]] | None = None,
    unknown_scenario_rate: float = 0.05,
    item_vectors: dict[str, Any] | None = None,
    numeric: str = "embedded",
    scenario_field: bool | str = True,
    batch_norm: bool = False,
    precision: str | None = None,
) -> JointModel:
    """Builds the joint model of ``spec`` with one component per slot.

    Each slot takes a registered name (see ``tfjoint models``) or a layer instance. A named
    component is constructed from what the dataset implies (vocabularies, task names,
    number of scenarios and behaviors), updated with ``component_kwargs[slot]``. A slot
    whose input the dataset lacks (no sequence, no token modality) is left empty.

    ``unknown_scenario_rate`` (see :class:`JointModel`) hides the scenario of that fraction
    of the training rows, which trains every component's unknown-scenario fallback. 0.05
    gives the fallback about 13 rows of a 256-row batch, enough to train one embedding
    row and the shared paths, while each known scenario keeps 95% of its rows; 0 turns
    it off.

    ``item_vectors`` ``{name: (V, width) array}`` adds fixed per-item vectors computed
    offline (e.g. MiniLM title embeddings, :mod:`tfjoint.modality`), row ``i`` for
    vocabulary index ``i`` of the dataset's item feature (``spec.sequence.item_feature``):
    the embedding slot holds them as frozen tables (so serving looks them up in the graph,
    with no text op), projects each to ``embedding_dim`` and passes it to the modality
    encoder as one more modality, beside the token features. A sequence encoder that
    declares :class:`~tfjoint.layers.core.contracts.NeedsSequenceContent` (NOVA's) also
    gets them at every history position: the embedding is built with
    ``sequence_content=True``, which needs ``item_vectors``.

    Three options give the model DeepCTR's and torch-rechub's shape (issue 17):
    ``numeric="raw"`` (or ``"normalized"``, through a BatchNormalization) feeds the dense
    features beside the categorical embeddings instead of as ``x_j v_j`` fields (the
    first layer reads ``C d + n`` values instead of ``(C + 1 + n) d``);
    ``scenario_field=False`` leaves the scenario out of the embedded fields (``"auto"``:
    only when the dataset has more than one scenario); ``batch_norm=True`` puts a
    BatchNormalization in every expert, bottom and tower layer of the task architecture
    (which must take a ``batch_norm`` argument: MMoE, OMoE, PLE, CGC, shared bottom,
    ESMM, ESCM2, independent towers) and starts a named embedding's tables at
    ``N(0, 1e-4)`` (DeepCTR's and torch-rechub's initializer; ``component_kwargs["embedding"]
    ["embeddings_initializer"]`` still overrides it) instead of Keras's ``Uniform(-0.05,
    0.05)``: with BatchNorm in the experts the uniform start cost 0.04 to 0.06 held-out AUC
    after one epoch of the issue-17 workload, without it about 0.01. The defaults (embedded numerics, the scenario
    field, no BatchNorm) are the model every tfjoint result was measured with; see
    :class:`~tfjoint.layers.core.feature_embedding.FeatureEmbedding` and
    docs/training_speed.md for the speed each option buys.

    ``precision`` is the Keras dtype policy every named component is built with:
    ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"``; ``None`` (the default):
    Keras's global policy, float32 unless set (float32
    variables, 16-bit compute; the heads, and so the outputs, losses and AUCs, stay
    float32; :mod:`tfjoint.joint.precision`). A given layer instance keeps the policy it
    was built with. With ``"mixed_float16"``, ``compile`` wraps the optimizer in Keras's
    ``LossScaleOptimizer``.

    Example:
    >>> from tfjoint.features import SYNTHETIC
    >>> sizes = {k: 10 for k in SYNTHETIC.categorical + ("item_tags",)}
    >>> model = build_joint_model(SYNTHETIC, sizes, task_architecture="shared_bottom")
    >>> sorted(model.output_names) == sorted(SYNTHETIC.label_keys)
    True
    """
    with precision_scope(precision):
        overrides = component_kwargs or {}
        unknown = set(overrides) - set(catalog.JOINT_SLOTS)
        if unknown:
            raise ValueError(f"component_kwargs keys must be slots {catalog.JOINT_SLOTS}. Received: {sorted(unknown)}")
        task_specs = list(tasks or spec.tasks)
        arch_cls = (
            type(task_architecture)
            if isinstance(task_architecture, keras.layers.Layer)
            else resolve_component("task_architecture", task_architecture)
        )
        if scenario_field == "auto":
            scenario_field = spec.num_scenarios > 1
        options = {"numeric": numeric, "scenario_field": scenario_field}
        requested = {k: v for k, v in options.items() if v != {"numeric": "embedded", "scenario_field": True}[k]}
        embedding_context: dict[str, Any] = {
            "vocab_sizes": vocab_sizes,
            "categorical": list(spec.categorical),
            "dense": list(spec.dense),
            "num_scenarios": spec.num_scenarios,
            "embedding_dim": embedding_dim,
            "sequence_item_feature": spec.sequence.item_feature if spec.sequence else None,
            "num_behaviors": spec.sequence.num_behaviors if spec.sequence else 0,
            "tokens": [t.name for t in spec.tokens],
        }
        vectors = {str(k): np.asarray(v, np.float32) for k, v in (item_vectors or {}).items()}
        if vectors:
            if spec.sequence is None:
                raise ValueError(f"item_vectors need the dataset's item feature; {spec.name} has no sequence item feature")
            if isinstance(embedding, keras.layers.Layer):
                raise ValueError("item_vectors need a named embedding slot; fill a given embedding layer's tables yourself")
            bad = {k: v.shape for k, v in vectors.items() if v.ndim != 2}
            if bad:
                raise ValueError(f"item_vectors must be (V, width) arrays. Received shapes: {bad}")
            embedding_context["item_vectors"] = {k: int(v.shape[1]) for k, v in vectors.items()}
        if issubclass(arch_cls, NeedsTaskEmbeddings) and not isinstance(embedding, keras.layers.Layer):
            # STEM: the embedding slot adds one set of field tables per task.
            embedding_cls = resolve_component("embedding", embedding)
            if "task_tables" not in inspect.signature(embedding_cls).parameters:
                raise ValueError(
                    f"task_architecture {arch_cls.__name__} needs per-task embedding tables, but the embedding "
                    f"{embedding_cls.__name__} takes no `task_tables` argument. Received: embedding={embedding!r}"
                )
            embedding_context["task_tables"] = [t.name for t in task_specs]
        if spec.sequence is not None and _needs_sequence_content(sequence_encoder):
            _request_sequence_content(embedding, sequence_encoder, vectors)
            embedding_context["sequence_content"] = True
        if batch_norm and not isinstance(embedding, keras.layers.Layer):
            # The peers' tables (DeepCTR's SparseFeat, torch-rechub's SparseFeature): see the docstring.
            embedding_cls = resolve_component("embedding", embedding)
            if "embeddings_initializer" in inspect.signature(embedding_cls).parameters:
                embedding_context["embeddings_initializer"] = keras.initializers.RandomNormal(stddev=BATCH_NORM_EMBEDDING_STDDEV)
        if requested:
            if isinstance(embedding, keras.layers.Layer):
                raise ValueError(f"{sorted(requested)} apply to a named embedding; build the given layer with them")
            _check_takes("embedding", resolve_component("embedding", embedding), requested)
            embedding_context.update(requested)
        embedding_layer = _component("embedding", embedding, embedding_context, overrides.get("embedding", {}))
        seq = None
        if sequence_encoder is not None and spec.sequence is not None:
            seq = _component(
                "sequence_encoder",
                sequence_encoder,
                {"num_behaviors": spec.sequence.num_behaviors},
                overrides.get("sequence_encoder", {}),
            )
        modal = None
        if modality_encoder is not None and (spec.tokens or vectors):
            modal = _component(
                "modality_encoder",
                modality_encoder,
                {"modalities": [t.name for t in spec.tokens] + list(vectors)},
                overrides.get("modality_encoder", {}),
            )
        adapter = None
        if scenario_adapter is not None:
            adapter = _component(
                "scenario_adapter",
                scenario_adapter,
                {"num_scenarios": spec.num_scenarios},
                overrides.get("scenario_adapter", {}),
            )
        arch_context: dict[str, Any] = {"task_names": [t.name for t in task_specs]}
        named_arch = not isinstance(task_architecture, keras.layers.Layer)
        if named_arch and issubclass(arch_cls, ScenarioAware):
            arch_context["num_scenarios"] = spec.num_scenarios
        if named_arch and issubclass(arch_cls, ImputesCascadeSteps):
            arch_context["imputed_tasks"] = cascade_steps(task_specs)
        if batch_norm:
            if not named_arch:
                raise ValueError("batch_norm applies to a named task_architecture; build the given layer with it")
            _check_takes("task_architecture", arch_cls, {"batch_norm": batch_norm})
            arch_context["batch_norm"] = batch_norm
        arch = _component(
            "task_architecture",
            task_architecture,
            arch_context,
            overrides.get("task_architecture", {}),
        )
        model = JointModel(
            input_shapes(spec),
            task_specs,
            embedding=embedding_layer,
            task_architecture=arch,
            sequence_encoder=seq,
            modality_encoder=modal,
            scenario_adapter=adapter,
            balancer=_component("balancer", balancer, {}, overrides.get("balancer", {})),
            num_scenarios=spec.num_scenarios,
            unknown_scenario_rate=unknown_scenario_rate,
            name=f"joint_{arch.__class__.__name__}",
            precision=precision,
        )
        for name, table in vectors.items():
            embedding_layer.set_item_vectors(name, table)
        return model


def _needs_sequence_content(choice: Any) -> bool:
    """Whether the sequence encoder ``choice`` (a layer, a name, a path or ``None``) declares
    :class:`~tfjoint.layers.core.contracts.NeedsSequenceContent`."""
    if choice is None or isinstance(choice, keras.layers.Layer):
        return isinstance(choice, NeedsSequenceContent)
    return issubclass(resolve_component("sequence_encoder", choice), NeedsSequenceContent)


def _request_sequence_content(embedding: Any, sequence_encoder: Any, vectors: dict[str, Any]) -> None:
    """One-line errors when the embedding slot cannot give the history's content."""
    name = getattr(sequence_encoder, "name", sequence_encoder)
    if not vectors:
        raise ValueError(
            f"sequence_encoder {name} reads each history item's content, which the embedding looks up by item id "
            "in item_vectors; build with item_vectors (pipeline: --item-text-encoder minilm|hashed)"
        )
    if isinstance(embedding, keras.layers.Layer):
        raise ValueError(f"sequence_encoder {name} needs a named embedding slot; build the given layer with sequence_content=True")
    _check_takes("embedding", resolve_component("embedding", embedding), {"sequence_content": True})


def _check_takes(slot: str, cls: type, arguments: dict[str, Any]) -> None:
    """A one-line error when ``cls``'s constructor lacks one of ``arguments``."""
    # Every constructor along the MRO: a mixin first in the bases hides the real one.
    parameters = {p for c in cls.__mro__ if "__init__" in vars(c) for p in inspect.signature(c.__init__).parameters}
    missing = sorted(k for k in arguments if k not in parameters)
    if missing:
        received = ", ".join(f"{k}={arguments[k]!r}" for k in missing)
        raise ValueError(f"{slot} {cls.__name__} takes no {missing} argument. Received: {received}")


def check_combination(spec: DatasetSpec, **slots: Any) -> None:
    """Builds the joint model of ``slots`` (the keyword arguments of
    :func:`build_joint_model`) on stand-in vocabularies, so that a combination the dataset or
    the components cannot support fails in one line naming the slots, before any data is
    read or any component of a pipeline runs."""
    sizes = {k: 2 for k in (*spec.categorical, *(t.name for t in spec.tokens))}
    try:
        build_joint_model(spec, sizes, **slots)
    except (ValueError, TypeError) as e:
        chosen = ", ".join(f"{k}={v}" for k, v in slots.items() if not isinstance(v, dict))
        raise ValueError(f"cannot build the joint model of {spec.name} ({chosen}): {e}") from None
