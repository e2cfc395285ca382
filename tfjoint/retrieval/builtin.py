"""The built-in interaction datasets as leave-one-out splits, and retrieval models by name.

One owner for what the ``topk``/``mbr`` benches and the retrieval pipeline share: which
datasets exist, how each is split, and how a registered ``retrieval_model`` is sized for a
split.
"""

from __future__ import annotations

import inspect
from typing import Any

from tfjoint.features.interactions import InteractionSpec
from tfjoint.retrieval.protocols import LeaveOneOut, leave_one_out

DATASETS = ("retailrocket", "movielens-100k", "synthetic")


def check_dataset(dataset: str) -> str:
    """``dataset`` if it is built in; a ValueError listing them otherwise."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}. Received: dataset={dataset!r}")
    return dataset


def spec_of(dataset: str) -> InteractionSpec:
    """The behaviors and target of a built-in dataset, without loading its events."""
    from tfjoint.datasets import interactions

    specs = {
        "retailrocket": interactions.RETAILROCKET,
        "movielens-100k": interactions.MOVIELENS_BEHAVIORS,
        "synthetic": interactions.SYNTHETIC_BEHAVIORS,
    }
    return specs[check_dataset(dataset)]


def load_split(dataset: str, seed: int = 0, signal: float = 1.0) -> LeaveOneOut:
    """The leave-one-out split of a built-in interaction dataset (``signal``: synthetic only).

    Retailrocket: its held-out buy per user is the test item; MovieLens-100K: dislike /
    neutral / like, target like; synthetic: 1,000 users, 500 items, views and carts with
    ``signal`` about the buys (:func:`tfjoint.datasets.interactions.synthetic_behaviors`).
    """
    from tfjoint.datasets import interactions

    check_dataset(dataset)
    if dataset == "retailrocket":
        train, test_items = interactions.load_retailrocket()
        return leave_one_out(train, test_items)
    if dataset == "movielens-100k":
        return leave_one_out(interactions.movielens_behaviors())
    return leave_one_out(interactions.synthetic_behaviors(1000, 500, signal=signal, seed=seed))


def build_model(
    name: str, num_users: int, num_items: int, seed: int, optional: dict[str, Any] | None = None, **kwargs: Any
) -> Any:
    """The registered retrieval model ``name`` for ``num_users`` x ``num_items``, with ``kwargs``
    (an argument its constructor does not take is an error naming it) and those of
    ``optional`` that its constructor takes (e.g. ``embedding_dim`` and ``loss``, which
    ItemPop and EASE do not have)."""
    from tfjoint import catalog

    entry = catalog.get(name, slot="retrieval_model")
    params = inspect.signature(entry.cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    sizes = {"num_users": num_users, "num_items": num_items, "seed": seed}
    taken = {k: v for k, v in {**(optional or {}), **sizes}.items() if k in params}
    unknown = [k for k in kwargs if k not in params]
    if unknown and not accepts_any:
        raise ValueError(f"retrieval model {name!r} takes no argument {unknown}")
    return entry.cls(**{**taken, **kwargs})
