"""One registry of every model component, reachable by name from Python and the CLI.

Each component belongs to one *slot* and one *family* (the survey's four families, plus
``core`` for the plumbing every joint model uses). The slots in :data:`JOINT_SLOTS` are those
of the joint model (see :mod:`tfjoint.joint.model`); ``retrieval_model`` holds the top-K
retrieval models of the ``retrieval`` family (:mod:`tfjoint.layers.retrieval`), which score
a user against the whole item catalog and are not parts of a joint model.
``tfjoint models --json`` prints this registry.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, TypeVar

import keras

JOINT_SLOTS = (
    "embedding",
    "sequence_encoder",
    "modality_encoder",
    "scenario_adapter",
    "task_architecture",
    "balancer",
)
SLOTS = JOINT_SLOTS + ("retrieval_model",)
FAMILIES = ("core", "multi_task", "multi_scenario", "multi_behavior", "multi_modal", "balancing", "retrieval")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    slot: str
    family: str
    reference: str
    cls: type

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "reference": self.reference,
            "slot": self.slot,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
        }


_REGISTRY: dict[str, Entry] = {}


def register(name: str, *, slot: str, family: str, reference: str) -> Callable[[T], T]:
    """Class decorator: registers a component under ``name`` in ``slot``, and with Keras."""
    if slot not in SLOTS:
        raise ValueError(f"slot must be one of {SLOTS}. Received: slot={slot!r}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}. Received: family={family!r}")

    def decorator(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"component {name!r} is already registered")
        cls = keras.saving.register_keras_serializable(package="tfjoint")(cls)
        _REGISTRY[name] = Entry(name, slot, family, reference, cls)  # type: ignore[arg-type]
        return cls

    return decorator


def lookup(name: str, slot: str | None = None) -> Entry:
    """The entry registered as ``name`` (in ``slot``), among the modules imported so far."""
    entry = _REGISTRY.get(name)
    if entry is None or (slot is not None and entry.slot != slot):
        known = sorted(e.name for e in _REGISTRY.values() if slot is None or e.slot == slot)
        raise ValueError(
            f"unknown {slot or 'component'} {name!r}. Registered: {', '.join(known)}"
        )
    return entry


def registered(slot: str | None = None) -> list[Entry]:
    """The entries registered so far (in ``slot``), by slot then name."""
    return sorted(
        (e for e in _REGISTRY.values() if slot is None or e.slot == slot),
        key=lambda e: (SLOTS.index(e.slot), e.name),
    )
