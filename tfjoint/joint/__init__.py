"""The joint model: one way to build it, one model class, cascade wiring, staged training.

- :mod:`~tfjoint.joint.builder`: :func:`build_joint_model` fills each slot from the catalog.
- :mod:`~tfjoint.joint.model`: :class:`JointModel`, the loss over tasks and the balanced step.
- :mod:`~tfjoint.joint.cascade`: tasks with a parent and entire-space outputs.
- :mod:`~tfjoint.joint.staged`: components with their own schedule (M-LoRA's stages).
- :mod:`~tfjoint.joint.optimizers`: :class:`LazyAdam`, row-wise updates of embedding tables.
"""

from tfjoint.joint.builder import build_joint_model, input_shapes, resolve_component
from tfjoint.joint.model import JointModel
from tfjoint.joint.optimizers import LazyAdam
from tfjoint.joint.staged import add_scenarios, fine_tune, fit_joint_model, pretrain

__all__ = [
    "JointModel",
    "LazyAdam",
    "add_scenarios",
    "build_joint_model",
    "fine_tune",
    "fit_joint_model",
    "input_shapes",
    "pretrain",
    "resolve_component",
]
