"""Mixed precision for a joint model (issue 17): Keras 3's dtype policies.

Micikevicius et al., "Mixed Precision Training" (ICLR 2018): the variables stay float32
(the master weights), each layer computes in a 16-bit type, and the loss is summed in
float32; with float16 the loss is scaled (``L * S`` before the backward pass, the gradients
divided by ``S``) so small gradients do not underflow. bfloat16 keeps float32's exponent
range, so it needs no loss scaling.

:func:`precision_scope` sets Keras's global dtype policy while a model's layers are
built, so every layer takes it (``keras.mixed_precision.DTypePolicy``), except those
built with an explicit ``dtype="float32"``: the task heads (their sigmoid outputs, and so
the losses and the AUCs, are float32) and the experts' gates (their softmax). An embedding
table is a float32 variable; its lookup gathers float32 rows and casts them, so its
gradient stays an ``IndexedSlices`` of the rows read (row-wise updates with
:class:`~tfjoint.joint.optimizers.LazyAdam` keep working).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; otherwise a one-line ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}. Received: precision={precision!r}")
    return precision


@contextlib.contextmanager
def precision_scope(precision: str | None) -> Iterator[None]:
    """Keras's global dtype policy set to ``precision`` inside the block, the previous one
    restored after it; ``None`` leaves the policy as it is."""
    if precision is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(check_precision(precision))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
