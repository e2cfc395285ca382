"""The catalog: every family's components, imported and looked up by name.

Importing this module imports every family package, whose components register themselves
with :mod:`tfjoint.registry`. The joint-model builder, the CLI and the benches look
components up here; a user's own component registers with
:func:`tfjoint.registry.register` and is found the same way once its module is imported.
"""

from __future__ import annotations

import tfjoint.balancing  # noqa: F401
import tfjoint.layers.core  # noqa: F401
import tfjoint.layers.multi_behavior  # noqa: F401
import tfjoint.layers.multi_modal  # noqa: F401
import tfjoint.layers.multi_scenario  # noqa: F401
import tfjoint.layers.multi_task  # noqa: F401
import tfjoint.layers.retrieval  # noqa: F401
from tfjoint.registry import FAMILIES, JOINT_SLOTS, SLOTS, Entry, lookup, registered

__all__ = ["FAMILIES", "JOINT_SLOTS", "SLOTS", "Entry", "entries", "get"]


def get(name: str, slot: str | None = None) -> Entry:
    """The component registered as ``name`` (in ``slot``); a ``ValueError`` lists the known ones."""
    return lookup(name, slot)


def entries(slot: str | None = None) -> list[Entry]:
    """Every registered component (in ``slot``), by slot then name."""
    return registered(slot)
