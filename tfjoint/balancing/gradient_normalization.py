"""GradNorm: task weights that equalise the tasks' training rates (Chen et al., ICML 2018)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfjoint.balancing.task_balancer import TaskBalancer
from tfjoint.registry import register

# Weights are clipped here before renormalisation so that one large step cannot make a
# weight zero or negative (the paper does not say what to do then).
_MIN_WEIGHT = 1e-4


@register(
    "gradnorm",
    slot="balancer",
    family="balancing",
    reference="Chen, Badrinarayanan, Lee, Rabinovich, GradNorm: Gradient Normalization for Adaptive Loss "
    "Balancing in Deep Multitask Networks, ICML 2018",
)
class GradientNormalization(TaskBalancer):
    """Learns loss weights ``w_k`` so that every task's gradient norm tracks its training rate.

    The objective is ``sum_k w_k L_k`` (:meth:`weight_losses`, with ``w`` a constant there),
    so the model hands :meth:`combine_gradients` the gradients ``w_k grad L_k`` of those
    terms on the shared parameters and the terms themselves. The norms are taken on ``W``,
    "the last shared layer of weights" (section 3.2 of the paper): with ``norm_weights=
    "last_shared_layer"`` (the default) the variables of the layer that holds the *last*
    shared variable, in the model's variable order (the order in which the functional
    model's layers run, each layer's variables in creation order): the last layer of a
    shared bottom, of the last expert of an MMoE, or, where the towers are not shared
    (ESMM), the last shared layer before them (an encoder's, or the embedding's last
    table). ``norm_weights="shared"`` takes the whole shared
    vector (the paper allows any subset of the weights; the last layer is its choice, for
    cost). The layer comes from the layout the model hands over
    (:meth:`bind_gradient_layout`); without one the whole vector is ``W``.
    With the paper's notation (section 3.2 and Algorithm 1):

    - ``G_k = ||grad_W w_k L_k|| = w_k ||grad_W L_k||`` (``norms``) and ``G_avg = mean_k G_k``;
    - ``L~_k = L_k / L_k(0)``, with ``L_k(0)`` the losses of the first step (state
      ``initial_losses``), and the relative inverse training rate
      ``r_k = L~_k / mean_j L~_j`` (``rates``);
    - ``L_grad = sum_k |G_k - G_avg r_k^alpha|``, the targets ``G_avg r_k^alpha`` held constant;
    - ``w_k <- w_k - learning_rate dL_grad/dw_k`` with
      ``dL_grad/dw_k = sign(G_k - target_k) ||grad_W L_k||`` (``weight_gradient``), then
      ``w <- K w / sum_j w_j``. The weights are state updated here, not by the model's
      optimizer; this step's update uses the weights from before it, as in Algorithm 1.
    - the update of the shared parameters is ``sum_k w_k grad L_k``: the sum of the gradients
      received. As that is the plain gradient of the objective, :meth:`gradients_read` asks
      the model for the per-task gradients of ``W`` only (with ``"last_shared_layer"``); the
      other shared parameters get the objective's gradient, one backward pass instead of
      ``T`` (issue 17).

    Args:
        alpha: ``>= 0``, the strength of the restoring force toward equal training rates.
        learning_rate: ``> 0``, the step size of the weights.
        norm_weights: ``"last_shared_layer"`` (the paper's) or ``"shared"``: the ``W`` of
            the norms ``G_k``.
        target_task: see :class:`TaskBalancer` (unused).

    Example:
    >>> from tfjoint.features import TaskSpec
    >>> balancer = GradientNormalization(alpha=1.0, learning_rate=0.1)
    >>> balancer.bind([TaskSpec("click"), TaskSpec("like")])
    >>> losses = {"click": keras.ops.array(1.0), "like": keras.ops.array(1.0)}
    >>> _ = balancer.combine_gradients([keras.ops.array([2.0, 0.0]), keras.ops.array([0.0, 1.0])], losses)
    >>> [round(float(w), 3) for w in keras.ops.convert_to_numpy(balancer.task_weights)]
    [0.842, 1.158]

    Reference:
        Chen, Badrinarayanan, Lee, Rabinovich. GradNorm: Gradient Normalization for Adaptive
        Loss Balancing in Deep Multitask Networks. ICML 2018. https://arxiv.org/abs/1711.02257
    """

    uses_task_gradients = True

    def __init__(
        self,
        alpha: float = 1.5,
        learning_rate: float = 0.025,
        norm_weights: str = "last_shared_layer",
        **kwargs: Any,
    ) -> None:
        if alpha < 0.0:
            raise ValueError(f"alpha must be >= 0. Received: alpha={alpha}")
        if learning_rate <= 0.0:
            raise ValueError(f"learning_rate must be > 0. Received: learning_rate={learning_rate}")
        if norm_weights not in ("last_shared_layer", "shared"):
            raise ValueError(
                f"norm_weights must be 'last_shared_layer' or 'shared'. Received: norm_weights={norm_weights!r}"
            )
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)
        self.norm_weights = norm_weights

    def build(self, input_shape: Any = None) -> None:
        num_tasks = len(self.tasks)
        self.task_weights = self.add_weight(
            shape=(num_tasks,), initializer="ones", trainable=False, name="task_weights", dtype="float32"
        )
        self.initial_losses = self.add_weight(
            shape=(num_tasks,), initializer="zeros", trainable=False, name="initial_losses", dtype="float32"
        )
        self.initialized = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="initialized", dtype="float32"
        )
        self.built = True

    def weight_losses(self, losses: dict[str, Any], training: bool = True) -> dict[str, Any]:
        weights = ops.stop_gradient(ops.convert_to_tensor(self.task_weights))
        return {
            name: weights[k] * ops.cast(losses[name], "float32") for k, name in enumerate(self.task_names)
        }

    def combine_gradients(self, gradients: list[Any], losses: dict[str, Any]) -> Any:
        num_tasks = len(gradients)
        weights = ops.convert_to_tensor(self.task_weights)
        stacked = ops.stack([ops.cast(g, "float32") for g in gradients])
        norms = ops.norm(stacked * self.norm_mask(stacked.shape[1])[None, :], axis=1)
        task_losses = ops.stack([ops.cast(losses[name], "float32") for name in self.task_names]) / weights
        first_step = ops.equal(self.initialized, 0.0)
        initial_losses = ops.where(first_step, task_losses, self.initial_losses)
        self.initial_losses.assign(initial_losses)
        self.initialized.assign(1.0)
        loss_ratios = task_losses / ops.where(initial_losses > 0.0, initial_losses, 1.0)
        mean_ratio = ops.mean(loss_ratios)
        rates = loss_ratios / ops.where(mean_ratio > 0.0, mean_ratio, 1.0)
        targets = ops.mean(norms) * ops.power(rates, self.alpha)
        weight_gradient = ops.sign(norms - targets) * norms / weights
        new_weights = ops.maximum(weights - self.learning_rate * weight_gradient, _MIN_WEIGHT)
        self.task_weights.assign(num_tasks * new_weights / ops.sum(new_weights))
        return ops.cast(ops.sum(stacked, axis=0), gradients[0].dtype)

    def gradients_read(self, layers: list[str]) -> list[int]:
        """Only ``W``'s tensors with ``"last_shared_layer"``: the update is the plain sum of
        the task gradients, so the model need not compute them per task elsewhere."""
        if self.norm_weights == "shared" or not layers:
            return list(range(len(layers)))
        return [i for i, layer in enumerate(layers) if layer == layers[-1]]

    def norm_mask(self, num_entries: int) -> Any:
        """``(P,)``: 1 on the entries of ``W``, 0 elsewhere."""
        if self.norm_weights == "shared" or self.gradient_layers is None:
            return ops.ones((num_entries,), "float32")
        last = self.gradient_layers[-1]
        in_layer = ops.convert_to_tensor([layer == last for layer in self.gradient_layers])
        return ops.cast(ops.take(in_layer, self.tensor_ids(num_entries)), "float32")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(alpha=self.alpha, learning_rate=self.learning_rate, norm_weights=self.norm_weights)
        return config
