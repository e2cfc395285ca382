"""The interface of every top-K retrieval model, and what the models share.

A *recommender* is fitted on an :class:`~tfjoint.features.interactions.InteractionLog` and
scores users against the whole item catalog::

    history = model.fit(train, validate=lambda m: ndcg_on_validation(m.score), epochs=20)
    scores = model.score(users)                  # (len(users), num_items) float32
    scores = model.score(users, history=train_plus_validation)   # sequence models

``fit(train, *, validate=None, epochs, batch_size, seed, patience, ...)`` trains on the rows of
``behaviors`` (by default the target behavior, ``train.spec.target``) and returns a history
dict. ``validate(model) -> float`` (higher is better) is called after every epoch; the model
keeps the weights of the epoch with the best value (validation-selected, never
test-selected) and stops after ``patience`` epochs without improvement. The history records
``loss`` and ``validation`` per epoch, ``best_epoch`` (1-based) and ``epochs_run``.

``score(users, history=None)`` returns one row of scores over all ``num_items`` items per
user. ``history`` is the log to condition on at scoring time: a sequence model (SASRec)
reads each user's latest items from it, so that at test time it also sees the validation
event; models without a sequence input ignore it (EASE reads the user's row from it). Masking
already-seen items is the evaluation protocol's job, not the model's.

Two-tower models (BPR-MF, LightGCN, SASRec) also expose ``user_embeddings(users,
history=None)`` and ``item_embeddings()``, whose dot product is ``score``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tfjoint.features.interactions import InteractionLog


class Recommender(abc.ABC):
    """The protocol of :mod:`tfjoint.layers.retrieval` (see the module docstring); a model
    that lacks ``fit`` or ``score`` cannot be instantiated."""

    num_items: int

    @abc.abstractmethod
    def fit(
        self, train: InteractionLog, *, validate: Callable[[Recommender], float] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Trains on ``train``, keeping the best ``validate`` epoch; returns the history."""

    @abc.abstractmethod
    def score(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        """``(len(users), num_items)`` float32 scores over the whole catalog."""


def behavior_names(log: InteractionLog, behaviors: Sequence[str] | None) -> tuple[str, ...]:
    """``behaviors``, or ``(log.spec.target,)`` when None; raises on a name the log lacks."""
    names = (log.spec.target,) if behaviors is None else tuple(behaviors)
    unknown = [b for b in names if b not in log.spec.behaviors]
    if not names or unknown:
        raise ValueError(f"behaviors must be a non-empty subset of {log.spec.behaviors}. Received: {names}")
    return names


def check_behaviors(behaviors: Sequence[str], target: str | None) -> tuple[list[str], str]:
    """``(names, target)`` of a multi-behavior model: unique, non-empty names; the target one
    of them (None: the last, the end of the funnel)."""
    names = [str(b) for b in behaviors]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"behaviors must be unique and non-empty. Received: behaviors={names}")
    target = names[-1] if target is None else target
    if target not in names:
        raise ValueError(f"target must be one of {names}. Received: target={target!r}")
    return names, target


def training_step(model: Any, optimizer: Any, loss_fn: Callable[..., Any]) -> Callable[..., Any]:
    """A ``tf.function`` ``step(*batch) -> loss``: one ``optimizer`` update of ``model``'s
    trainable variables on ``loss_fn(*batch)`` (retraced only for new shapes)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(*batch: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(*batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def training_rows(log: InteractionLog, behaviors: Sequence[str] | None = None) -> InteractionLog:
    """The rows of ``behaviors`` (default: the target behavior)."""
    codes = [log.spec.behaviors.index(b) for b in behavior_names(log, behaviors)]
    return log.select(np.isin(log.behaviors, codes))


def unique_pairs(log: InteractionLog) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``(user, item)`` pairs of ``log``, sorted by user then item."""
    keys = np.unique(log.users * np.int64(log.num_items) + log.items)
    return keys // log.num_items, keys % log.num_items


def check_users(users: Any, num_users: int | None = None) -> np.ndarray:
    """``users`` as a 1-D int64 array; raises on another shape or an index out of range."""
    users = np.asarray(users)
    if users.ndim != 1 or (users.size and not np.issubdtype(users.dtype, np.integer)):
        raise ValueError(f"users must be a 1-D integer array. Received: shape={users.shape}, dtype={users.dtype}")
    users = users.astype(np.int64)
    if num_users is not None and users.size and (users.min() < 0 or users.max() >= num_users):
        raise ValueError(f"users must lie in [0, {num_users}). Received: [{users.min()}, {users.max()}]")
    return users


def check_catalog(log: InteractionLog, num_items: int) -> None:
    """Raises unless ``log`` indexes the model's ``num_items`` items."""
    if log.num_items != num_items:
        raise ValueError(f"the log has num_items={log.num_items}, the model num_items={num_items}")


def select_best_epoch(
    model: Any,
    run_epoch: Callable[[int], float],
    *,
    epochs: int,
    validate: Callable[[Any], float] | None,
    patience: int | None,
    get_weights: Callable[[], Any],
    set_weights: Callable[[Any], None],
) -> dict[str, Any]:
    """Runs ``run_epoch(epoch) -> loss`` up to ``epochs`` times and keeps the best epoch.

    After each epoch ``validate(model)`` is called (higher is better); the weights of the
    first epoch with the best value are restored at the end, and training stops once
    ``patience`` epochs in a row did not improve on it. Without ``validate`` the last epoch
    is kept. Returns ``{"loss", "validation", "best_epoch", "epochs_run"}`` (epochs 1-based).
    """
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1. Received: epochs={epochs}")
    if patience is not None and int(patience) < 1:
        raise ValueError(f"patience must be >= 1 or None. Received: patience={patience}")
    history: dict[str, Any] = {"loss": [], "validation": []}
    best, best_epoch, best_weights, waited = -np.inf, 0, None, 0
    for epoch in range(int(epochs)):
        history["loss"].append(float(run_epoch(epoch)))
        if validate is None:
            continue
        value = float(validate(model))
        history["validation"].append(value)
        if value > best:
            best, best_epoch, best_weights, waited = value, epoch + 1, get_weights(), 0
        else:
            waited += 1
            if patience is not None and waited >= patience:
                break
    history["epochs_run"] = len(history["loss"])
    if best_weights is not None:
        set_weights(best_weights)
        history["best_epoch"] = best_epoch
    else:  # no validation, or it never returned a finite value: the last epoch
        history["best_epoch"] = history["epochs_run"]
    return history


def validate_once(model: Any, validate: Callable[[Any], float] | None) -> dict[str, Any]:
    """The history of a model fitted in one step (ItemPop, EASE): one validation value."""
    values = [] if validate is None else [float(validate(model))]
    return {"loss": [], "validation": values, "best_epoch": 1, "epochs_run": 1}
