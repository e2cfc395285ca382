"""BPR-MF: matrix factorization trained with Bayesian Personalized Ranking."""

from __future__ import annotations

from tfjoint.layers.retrieval.two_tower import TwoTowerRecommender
from tfjoint.registry import register


@register(
    "bpr_mf",
    slot="retrieval_model",
    family="retrieval",
    reference="Rendle et al., BPR: Bayesian Personalized Ranking from Implicit Feedback, UAI 2009",
)
class BPRMatrixFactorization(TwoTowerRecommender):
    """Matrix factorization ``x_ui = <p_u, q_i>`` trained with BPR-Opt.

    The paper's model (Sec. 4.3.1, ``x̂_ui = <w_u, h_i>``, no biases) and criterion (Sec. 4.1,
    BPR-Opt ``sum ln σ(x̂_ui - x̂_uj) - λ_Θ ||Θ||^2``), with one negative ``j`` drawn uniformly
    from the items ``u`` has not interacted with. The paper optimizes with LearnBPR
    (bootstrap SGD); this trains with Adam over shuffled epochs of the distinct training pairs
    and the L2 term on the batch's rows, as the LightGCN authors' BPR-MF baseline (``PureMF``
    in gusye1234/LightGCN-PyTorch ``code/model.py``), which is how BPR-MF is compared with
    LightGCN. ``loss="in_batch_softmax"`` or ``"sampled_softmax"`` train the same towers with
    a softmax instead (see :mod:`tfjoint.layers.retrieval.two_tower`).

    Args: see :class:`~tfjoint.layers.retrieval.two_tower.TwoTowerRecommender`.

    Example:
    >>> import numpy as np
    >>> model = BPRMatrixFactorization(num_users=3, num_items=5, embedding_dim=4, seed=0)
    >>> model.score(np.array([0, 2])).shape
    (2, 5)

    Reference:
        Rendle, Freudenthaler, Gantner, Schmidt-Thieme. BPR: Bayesian Personalized Ranking
        from Implicit Feedback. UAI 2009.
    """
