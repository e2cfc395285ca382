import numpy as np
import pytest

from tfjoint.features.interactions import InteractionLog, InteractionSpec

SPEC = InteractionSpec("toy", ("view", "buy"), "buy")


def make_log(users, items, behaviors=None, timestamps=None, num_users=None, num_items=None) -> InteractionLog:
    users, items = np.asarray(users), np.asarray(items)
    return InteractionLog(
        SPEC,
        users,
        items,
        np.ones(len(users), np.int64) if behaviors is None else np.asarray(behaviors),
        np.arange(len(users)) if timestamps is None else np.asarray(timestamps),
        num_users=int(users.max()) + 1 if num_users is None else num_users,
        num_items=int(items.max()) + 1 if num_items is None else num_items,
    )


@pytest.fixture
def clusters():
    """Users 0-9 buy items 0-9, users 10-19 items 10-19; each user's training holds 6 of its
    block's 10 items, the other 4 are held out. Returns (train log, held-out boolean matrix)."""
    rng = np.random.default_rng(0)
    users, items = [], []
    held_out = np.zeros((20, 20), bool)
    for u in range(20):
        block = np.arange(10) + 10 * (u >= 10)
        chosen = rng.permutation(block)
        users += [u] * 6
        items += list(chosen[:6])
        held_out[u, chosen[6:]] = True
    return make_log(users, items, num_users=20, num_items=20), held_out


def in_cluster_auc(scores: np.ndarray, held_out: np.ndarray) -> float:
    """Fraction of (held-out in-cluster item, out-of-cluster item) pairs ranked in order, over users."""
    wins = []
    for u in range(len(scores)):
        out = scores[u, np.arange(20) // 10 != u // 10]
        wins.append((scores[u, held_out[u]][:, None] > out[None, :]).mean())
    return float(np.mean(wins))
