"""Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.balancing.task_balancer import TaskBalancer
from tfjoint.registry import register


@register(
    "dwa",
    slot="balancer",
    family="balancing",
    reference="Liu, Johns, Davison, End-to-End Multi-Task Learning with Attention, CVPR 2019 "
    "(Dynamic Weight Average)",
)
class DynamicWeightAverage(TaskBalancer):
    """Weights each task by how slowly its loss fell over the last two periods.

    Equation 7 of the paper, with a period of ``period_steps`` training steps in place of
    the paper's epoch:

    - ``L_k(t)`` is the mean loss of task ``k`` over period ``t`` (state: ``loss_sums`` and
      ``period_step`` for the running period, ``last_losses`` = ``L(t-1)`` and
      ``previous_losses`` = ``L(t-2)``, ``completed_periods``);
    - ``r_k(t-1) = L_k(t-1) / L_k(t-2)`` (``rates``);
    - ``w_k(t) = K exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T)`` (``weights``, ``T =
      temperature``), and ``w_k = 1`` until two periods are complete;
    - the terms are ``w_k L_k`` with ``w`` held constant (no gradient flows into it).

    Every call of :meth:`weight_losses` counts as one step of the running period.

    Args:
        temperature: ``T > 0``; larger values give more even weights.
        period_steps: ``>= 1``, the steps averaged into one ``L_k(t)``; set it to the
            steps per epoch to reproduce the paper.
        target_task: see :class:`TaskBalancer` (unused).

    Example:
    >>> from tfjoint.features import TaskSpec
    >>> balancer = DynamicWeightAverage(period_steps=1)
    >>> balancer.bind([TaskSpec("click"), TaskSpec("like")])
    >>> for click, like in [(1.0, 1.0), (0.5, 1.0)]:
    ...     _ = balancer.weight_losses({"click": keras.ops.array(click), "like": keras.ops.array(like)})
    >>> terms = balancer.weight_losses({"click": keras.ops.array(1.0), "like": keras.ops.array(1.0)})
    >>> [round(float(terms[name]), 3) for name in ("click", "like")]
    [0.876, 1.124]

    Reference:
        Liu, Johns, Davison. End-to-End Multi-Task Learning with Attention. CVPR 2019.
        https://arxiv.org/abs/1803.10704 (code: github.com/lorenmt/mtan).
    """

    def __init__(self, temperature: float = 2.0, period_steps: int = 100, **kwargs: Any) -> None:
        if temperature <= 0.0:
            raise ValueError(f"temperature must be > 0. Received: temperature={temperature}")
        if int(period_steps) != period_steps or period_steps < 1:
            raise ValueError(f"period_steps must be an integer >= 1. Received: period_steps={period_steps}")
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.period_steps = int(period_steps)

    def build(self, input_shape: Any = None) -> None:
        num_tasks = len(self.tasks)

        def state(name: str, shape: tuple[int, ...]) -> keras.Variable:
            return self.add_weight(
                shape=shape, initializer="zeros", trainable=False, name=name, dtype="float32"
            )

        self.loss_sums = state("loss_sums", (num_tasks,))
        self.period_step = state("period_step", ())
        self.last_losses = state("last_losses", (num_tasks,))
        self.previous_losses = state("previous_losses", (num_tasks,))
        self.completed_periods = state("completed_periods", ())
        self.built = True

    def task_weights(self) -> Any:
        """The current ``w_k(t)``, from the two last complete periods."""
        num_tasks = len(self.tasks)
        previous = ops.convert_to_tensor(self.previous_losses)
        rates = self.last_losses / ops.where(previous > 0.0, previous, 1.0)
        weights = num_tasks * ops.softmax(rates / self.temperature)
        return ops.where(self.completed_periods >= 2.0, weights, ops.ones_like(weights))

    def weight_losses(self, losses: dict[str, Any], training: bool = True) -> dict[str, Any]:
        current = ops.stack([ops.cast(losses[name], "float32") for name in self.task_names])
        weights = ops.stop_gradient(self.task_weights())
        if not training:
            # Evaluation batches are not steps of a training period.
            return {name: weights[k] * current[k] for k, name in enumerate(self.task_names)}
        sums = self.loss_sums + ops.stop_gradient(current)
        steps = self.period_step + 1.0
        period_done = steps >= self.period_steps
        self.previous_losses.assign(ops.where(period_done, self.last_losses, self.previous_losses))
        self.last_losses.assign(ops.where(period_done, sums / steps, self.last_losses))
        self.loss_sums.assign(ops.where(period_done, ops.zeros_like(sums), sums))
        self.period_step.assign(ops.where(period_done, 0.0, steps))
        self.completed_periods.assign(self.completed_periods + ops.cast(period_done, "float32"))
        return {name: weights[k] * current[k] for k, name in enumerate(self.task_names)}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(temperature=self.temperature, period_steps=self.period_steps)
        return config
