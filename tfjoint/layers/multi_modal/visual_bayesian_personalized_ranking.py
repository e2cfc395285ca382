"""VBPR: BPR-MF whose items also score through a linear embedding of their content features."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfjoint.features.interactions import InteractionLog
from tfjoint.layers.core.arguments import non_negative, positive, positive_int
from tfjoint.layers.multi_modal.item_content import (
    check_cold_start,
    check_item_features,
    cold_adjusted,
    content_embedding,
    warm_flags,
)
from tfjoint.layers.retrieval.base import (
    Recommender,
    behavior_names,
    check_catalog,
    check_users,
    select_best_epoch,
    training_rows,
    unique_pairs,
)
from tfjoint.layers.retrieval.two_tower import bpr_loss, sample_negatives
from tfjoint.registry import register


@register(
    "vbpr",
    slot="retrieval_model",
    family="multi_modal",
    reference="He & McAuley, VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback, AAAI 2016",
)
class VisualBayesianPersonalizedRanking(Recommender, keras.Model):
    """VBPR: ``x̂_ui = β_i + γ_u·γ_i + θ_u·(E f_i) + β'·f_i``, trained with BPR-Opt.

    The paper's preference predictor (He & McAuley, AAAI 2016, "Preference Predictor":
    ``θ_i = E f_i``, with the user-independent visual bias term ``β'^T f_i``) for a fixed
    content feature ``f_i ∈ R^F`` per item (CNN image features in the paper; any
    dense modality vector here), mapped to the weights:

    - ``β_i``: ``item_bias`` (the global offset and the user bias cancel in BPR's
      differences and are dropped, as in the paper);
    - ``γ_u, γ_i ∈ R^K``: ``gamma_user``, ``gamma_item`` (``K = embedding_dim``);
    - ``θ_u ∈ R^D``: ``theta_user``; ``E ∈ R^(D x F)``, stored transposed as ``projection``
      ``(F, D)`` so that ``E f_i`` is the row ``f_i @ projection`` (``D = content_dim``);
    - ``β' ∈ R^F``: ``feature_bias``, the user-independent visual bias ``β'^T f_i``;
    - ``f_i``: the non-trainable ``item_features`` ``(num_items, F)``.

    Training maximizes BPR-OPT ("Model Learning Using BPR") over ``(u, i, j)`` with ``i`` a training item of ``u``
    and ``j`` drawn uniformly from the *warm* items (those with training rows) ``u`` has not
    interacted with, as the authors' evaluation framework Cornac does
    (PreferredAI/cornac ``cornac/models/vbpr/recom_vbpr.py``, ``_fit_torch``: negatives come
    from the training set's items): per batch of ``B`` triples the loss is
    ``mean softplus(x̂_uj - x̂_ui)`` plus, divided by ``B``,
    ``l2_reg * ½(|γ_u|² + |γ_i|² + |γ_j|² + |θ_u|²) + bias_reg * ½(β_i² + β_j²) +
    projection_reg * ½(|E|² + |β'|²)`` -- Cornac's ``lambda_w``, ``lambda_b``, ``lambda_e``
    objective divided by the batch size (Cornac regularizes ``β_j`` with ``lambda_b / 10``;
    this uses the paper's one ``λ_β``). Initialization follows Cornac: Glorot-uniform ``γ``,
    ``θ``, ``E``, ``β'`` and zero ``β``. Training uses Adam over shuffled epochs of the
    distinct training pairs, validation-selected like the rest of
    :mod:`tfjoint.layers.retrieval`.

    Cold items (no training rows of the trained behaviors): their ``γ_i`` and ``β_i`` never
    receive a gradient (they are not negatives either) and stay at their random init, so
    scoring them with it adds noise ``γ_u·γ_i`` to a ranking that only the features can
    inform. ``cold_start`` chooses what :meth:`score` uses for them:

    - ``"features"`` (default): ``γ_i = 0`` and ``β_i = 0``, i.e. the content part
      ``θ_u·(E f_i) + β'·f_i`` only -- the paper's case for VBPR in cold start (visual
      features let it score items with few or no interactions);
    - ``"mean"``: ``γ_i`` and ``β_i`` replaced by their mean over warm items (the expected
      collaborative part of an item, which keeps cold scores on the warm items' scale);
    - ``"none"``: the stored (untrained) rows, as a plain implementation would score them.

    Measured (``tfjoint bench mmr``, synthetic, signal 1, 3 seeds, cold test item ranked
    among all items): HR@10 .360 ± .008 (``"features"``), .358 ± .008 (``"mean"``), .359 ±
    .008 (``"none"``); within the cold items the three rank alike (.675 / .675 / .674);
    MovieLens-100K (genres and year): cold .106 / .106 / .110 ± .006, and 0 for all three
    among all items (popular warm items always outrank a cold one). The differences are
    within noise because Glorot init keeps the untrained ``γ_i`` small; the
    default is chosen for what it means -- a cold item's score depends on its features only,
    whatever the init -- not for a measured gain. Which items are warm is set by :meth:`fit`
    and saved with the model (``warm_items``).
    ``embedding_dim=0`` removes ``γ``; with ``use_item_bias=False`` too, the model ranks by
    the features alone.

    Args:
        num_users, num_items: sizes of the index spaces of the logs it is fitted on.
        item_features: ``(num_items, F)`` float features ``f_i``; or None and ``feature_dim``
            (then pass them to :meth:`fit`; a ``.keras`` file restores them as a weight).
        feature_dim: ``F``; inferred from ``item_features`` when it is given.
        embedding_dim: ``K``, size of ``γ_u, γ_i`` (0 allowed: features only).
        content_dim: ``D``, size of ``θ_u`` and of ``E f_i``.
        l2_reg: ``λ_Θ`` of ``γ`` and ``θ``. bias_reg: ``λ_β`` of ``β_i``.
        projection_reg: ``λ_E`` of ``E`` and ``β'`` (Cornac's default 0).
        cold_start: ``"features"``, ``"mean"`` or ``"none"`` (see above).
        use_item_bias: keep ``β_i``; False with ``embedding_dim=0`` leaves a purely
            content-based model (no per-item parameter).
        behaviors: behaviors trained on (default: the log's target behavior).
        seed: seed of the initializers.

    Call arguments:
        users: int user indices ``(batch,)``.

    Returns:
        Scores ``(batch, num_items)``.

    Example:
    >>> import numpy as np
    >>> features = np.eye(5, 3, dtype="float32")
    >>> model = VisualBayesianPersonalizedRanking(3, 5, item_features=features, embedding_dim=4, content_dim=2, seed=0)
    >>> model.score(np.array([0, 2])).shape
    (2, 5)

    Reference:
        He, McAuley. VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback.
        AAAI 2016.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_features: Any = None,
        feature_dim: int | None = None,
        embedding_dim: int = 64,
        content_dim: int = 64,
        l2_reg: float = 1e-4,
        bias_reg: float = 1e-4,
        projection_reg: float = 0.0,
        cold_start: str = "features",
        use_item_bias: bool = True,
        behaviors: list[str] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_users = positive_int("num_users", num_users)
        self.num_items = positive_int("num_items", num_items)
        if item_features is None and feature_dim is None:
            raise ValueError("VBPR needs item_features or feature_dim. Received: both None")
        if item_features is not None:
            item_features = self._check_features(item_features, feature_dim)
            feature_dim = item_features.shape[1]
        self.feature_dim = positive_int("feature_dim", feature_dim)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim, minimum=0)
        self.content_dim = positive_int("content_dim", content_dim)
        self.l2_reg = non_negative("l2_reg", l2_reg)
        self.bias_reg = non_negative("bias_reg", bias_reg)
        self.projection_reg = non_negative("projection_reg", projection_reg)
        self.cold_start = check_cold_start(cold_start)
        self.use_item_bias = bool(use_item_bias)
        self.behaviors = None if behaviors is None else list(behaviors)
        self.seed = seed

        def glorot(offset: int) -> Any:
            return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)

        u, i, f = self.num_users, self.num_items, self.feature_dim
        self.gamma_user = self.add_weight(shape=(u, self.embedding_dim), initializer=glorot(0), name="gamma_user")
        self.gamma_item = self.add_weight(shape=(i, self.embedding_dim), initializer=glorot(1), name="gamma_item")
        self.theta_user = self.add_weight(shape=(u, self.content_dim), initializer=glorot(2), name="theta_user")
        self.projection = self.add_weight(shape=(f, self.content_dim), initializer=glorot(3), name="projection")
        self.feature_bias = self.add_weight(shape=(f,), initializer=glorot(4), name="feature_bias")
        self.item_bias = self.add_weight(shape=(i,), initializer="zeros", name="item_bias")
        self.item_features = self.add_weight(shape=(i, f), initializer="zeros", trainable=False, name="item_features")
        self.warm_items = self.add_weight(shape=(i,), initializer="ones", trainable=False, name="warm_items")
        if item_features is not None:
            self.item_features.assign(item_features)
        self.built = True  # every weight exists: a .keras file restores them without a call

    def _check_features(self, features: Any, feature_dim: int | None) -> np.ndarray:
        return check_item_features(features, self.num_items, feature_dim)

    # -- the predictor ---------------------------------------------------------------
    def pair_scores(self, users: Any, items: Any) -> Any:
        """``x̂_ui = β_i + γ_u·γ_i + θ_u·(E f_i) + β'·f_i`` for aligned ``users``, ``items``."""
        f_i = ops.take(self.item_features, items, axis=0)
        return (
            ops.take(self._item_bias(), items, axis=0)
            + ops.sum(ops.take(self.gamma_user, users, axis=0) * ops.take(self.gamma_item, items, axis=0), axis=-1)
            + ops.sum(ops.take(self.theta_user, users, axis=0) * content_embedding(f_i, self.projection), axis=-1)
            + ops.matmul(f_i, ops.expand_dims(self.feature_bias, -1))[:, 0]
        )

    def _item_bias(self) -> Any:
        """``β_i``, or zeros without ``use_item_bias`` (the weight exists either way)."""
        return self.item_bias if self.use_item_bias else ops.zeros_like(self.item_bias)

    def _cold_adjusted(self) -> tuple[Any, Any]:
        """``(γ_i, β_i)`` of every item, the cold ones replaced as ``cold_start`` says."""
        gamma, bias = cold_adjusted(self.cold_start, self.warm_items, self.gamma_item, self._item_bias())
        return gamma, bias

    def _user_table(self, users: Any) -> Any:
        """``[γ_u, θ_u, 1]``: with :meth:`_item_table` its dot product is ``x̂_ui``."""
        ones = ops.ones((ops.shape(users)[0], 1), dtype=self.theta_user.dtype)
        return ops.concatenate(
            [ops.take(self.gamma_user, users, axis=0), ops.take(self.theta_user, users, axis=0), ones], axis=-1
        )

    def _item_table(self) -> Any:
        """``[γ_i, E f_i, β_i + β'·f_i]`` for every item (cold items per ``cold_start``)."""
        gamma, bias = self._cold_adjusted()
        visual_bias = ops.matmul(self.item_features, ops.expand_dims(self.feature_bias, -1))
        return ops.concatenate(
            [gamma, content_embedding(self.item_features, self.projection), bias[:, None] + visual_bias], axis=-1
        )

    def final_tables(self) -> tuple[Any, Any]:
        """``([γ_u, θ_u, 1] for every user, [γ_i, E f_i, β_i + β'·f_i] for every item)``: the
        two-tower form of ``x̂_ui`` (cold items as ``cold_start`` says), which
        :func:`tfjoint.retrieval.export.export_topk_model` copies into the SavedModel."""
        return self._user_table(ops.arange(self.num_users, dtype="int32")), self._item_table()

    def call(self, users: Any, training: bool | None = None) -> Any:
        users = ops.cast(users, "int32")
        return ops.matmul(self._user_table(users), ops.transpose(self._item_table()))

    def user_embeddings(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        """``[γ_u, θ_u, 1]`` per user; its dot product with :meth:`item_embeddings` is the score."""
        users = check_users(users, self.num_users)
        return np.asarray(self._user_table(ops.convert_to_tensor(users.astype(np.int32))), dtype=np.float32)

    def item_embeddings(self) -> np.ndarray:
        """``[γ_i, E f_i, β_i + β'·f_i]`` per item, cold items as ``cold_start`` says."""
        return np.asarray(self._item_table(), dtype=np.float32)

    def score(self, users: Any, history: InteractionLog | None = None) -> np.ndarray:
        """``x̂_ui`` for every item; ``history`` is ignored (the model reads ids and features)."""
        users = check_users(users, self.num_users)
        return np.asarray(self(users), dtype=np.float32).reshape(len(users), self.num_items)

    # -- training -------------------------------------------------------------------
    def batch_loss(self, users: Any, positives: Any, negatives: Any) -> Any:
        """BPR-Opt of one batch of ``(u, i, j)`` triples (see the class docstring)."""
        main = bpr_loss(self.pair_scores(users, positives), self.pair_scores(users, negatives))

        def sq(table: Any, rows: Any) -> Any:
            return ops.sum(ops.square(ops.take(table, rows, axis=0)))

        factors = sq(self.gamma_user, users) + sq(self.gamma_item, positives) + sq(self.gamma_item, negatives)
        factors = factors + sq(self.theta_user, users)
        biases = sq(self.item_bias, positives) + sq(self.item_bias, negatives)
        projection = ops.sum(ops.square(self.projection)) + ops.sum(ops.square(self.feature_bias))
        reg = self.l2_reg * factors + self.bias_reg * biases + self.projection_reg * projection
        return main + 0.5 * reg / ops.cast(ops.shape(users)[0], "float32")

    def fit(  # type: ignore[override]
        self,
        train: InteractionLog,
        *,
        item_features: Any = None,
        validate: Callable[[Any], float] | None = None,
        epochs: int = 20,
        batch_size: int = 2048,
        learning_rate: float = 1e-3,
        seed: int = 0,
        patience: int | None = None,
    ) -> dict[str, Any]:
        """Adam on the distinct ``(user, item)`` pairs of the training behaviors, one shuffled
        pass per epoch, a warm negative redrawn per pair every batch; validation-selected.
        ``item_features`` (optional) replaces the stored ``f_i`` first."""
        check_catalog(train, self.num_items)
        if train.num_users != self.num_users:
            raise ValueError(f"the log has num_users={train.num_users}, the model num_users={self.num_users}")
        batch_size = positive_int("batch_size", batch_size)
        learning_rate = positive("learning_rate", learning_rate)
        behavior_names(train, self.behaviors)
        if item_features is not None:
            self.item_features.assign(self._check_features(item_features, self.feature_dim))
        users, items = unique_pairs(training_rows(train, self.behaviors))
        if not len(users):
            raise ValueError("the training log has no rows of the trained behaviors")
        warm = np.unique(items)
        self.warm_items.assign(warm_flags(warm, self.num_items))
        # Negatives are drawn among the warm items: index them 0..len(warm)-1 for the sampler.
        seen = users * np.int64(len(warm)) + np.searchsorted(warm, items)
        rng = np.random.default_rng(seed)
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        optimizer.build(self.trainable_variables)

        @tf.function(reduce_retracing=True)
        def step(u: Any, p: Any, n: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = self.batch_loss(u, p, n)
            variables = self.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        def run_epoch(epoch: int) -> float:
            order = rng.permutation(len(users))
            total = 0.0
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                negatives = warm[sample_negatives(rng, users[batch], len(warm), seen)]
                loss = step(tf.constant(users[batch], tf.int32), tf.constant(items[batch], tf.int32), tf.constant(negatives, tf.int32))
                total += float(loss) * len(batch)
            return total / len(order)

        return select_best_epoch(
            self, run_epoch, epochs=epochs, validate=validate, patience=patience,
            get_weights=self.get_weights, set_weights=self.set_weights,
        )

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments but ``item_features``, which is saved as a weight."""
        return {
            **super().get_config(),
            "num_users": self.num_users,
            "num_items": self.num_items,
            "feature_dim": self.feature_dim,
            "embedding_dim": self.embedding_dim,
            "content_dim": self.content_dim,
            "l2_reg": self.l2_reg,
            "bias_reg": self.bias_reg,
            "projection_reg": self.projection_reg,
            "cold_start": self.cold_start,
            "use_item_bias": self.use_item_bias,
            "behaviors": self.behaviors,
            "seed": self.seed,
        }
