import numpy as np
import pytest

from tfjoint import catalog, registry
from tfjoint.layers.retrieval import ItemPopularity
from tfjoint.layers.retrieval.base import select_best_epoch, training_rows
from tfjoint.layers.retrieval.conftest import make_log

SMALL = {
    "item_pop": {},
    "ease": {"l2_reg": 1.0},
    "bpr_mf": {"embedding_dim": 4},
    "lightgcn": {"embedding_dim": 4, "num_layers": 2},
    "sasrec": {"max_len": 4, "hidden_dim": 4, "num_blocks": 1},
    "nmtr": {"embedding_dim": 4},
    "mbgcn": {"embedding_dim": 4, "num_behaviors": 2},
    "cml": {"embedding_dim": 4, "num_behaviors": 2},
    "mbstr": {"max_len": 4, "hidden_dim": 4, "num_blocks": 1, "num_heads": 1},
    "vbpr": {"embedding_dim": 4, "content_dim": 2, "item_features": np.arange(12, dtype=np.float32).reshape(6, 2) / 12},
    "freedom": {"embedding_dim": 4, "knn_k": 2, "dropout": 0.5,
                "item_features": np.arange(12, dtype=np.float32).reshape(6, 2) / 12},
    "bm3": {"embedding_dim": 4, "item_features": np.arange(12, dtype=np.float32).reshape(6, 2) / 12},
    "nova": {"max_len": 4, "hidden_dim": 4, "num_blocks": 1,
             "item_features": np.arange(12, dtype=np.float32).reshape(6, 2) / 12},
    "mmmlp": {"max_len": 4, "hidden_dim": 4, "num_blocks": 1, "expansion": 1,
              "item_features": np.arange(12, dtype=np.float32).reshape(6, 2) / 12},
}


def test_item_pop_counts_the_target_events_only_unless_told():
    log = make_log([0, 1, 1, 2, 2, 0], [3, 3, 1, 3, 0, 1], behaviors=[1, 1, 1, 1, 0, 0], num_items=5)
    model = ItemPopularity(num_items=5)
    model.fit(log)
    np.testing.assert_array_equal(model.score(np.array([0, 2])), [[0, 1, 0, 3, 0]] * 2)
    model = ItemPopularity(num_items=5, behaviors=["view", "buy"])
    model.fit(log)
    np.testing.assert_array_equal(model.score(np.array([1]))[0], [1, 2, 0, 3, 0])


def test_training_rows_default_to_the_target_and_refuse_unknown_behaviors():
    log = make_log([0, 1, 2], [0, 1, 2], behaviors=[0, 1, 1])
    assert training_rows(log).items.tolist() == [1, 2]
    with pytest.raises(ValueError, match="behaviors must be"):
        training_rows(log, ["click"])


def test_select_best_epoch_restores_the_best_weights_and_stops_on_patience():
    state = {"w": 0}
    values = iter([0.1, 0.5, 0.3, 0.2, 0.9])

    def run_epoch(epoch):
        state["w"] = epoch + 1
        return 1.0 / (epoch + 1)

    history = select_best_epoch(
        None, run_epoch, epochs=5, validate=lambda m: next(values), patience=2,
        get_weights=lambda: state["w"], set_weights=lambda w: state.update(w=w),
    )
    assert history["best_epoch"] == 2 and history["epochs_run"] == 4
    assert history["validation"] == [0.1, 0.5, 0.3, 0.2] and state["w"] == 2


@pytest.mark.parametrize("entry", catalog.entries("retrieval_model"), ids=lambda e: e.name)
def test_every_model_scores_every_item_for_each_user(entry):
    log = make_log([0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 2, 3, 4, 0], num_users=4, num_items=6)
    sizes = {"num_items": 6} if entry.name in ("item_pop", "ease", "sasrec", "mbstr", "nova", "mmmlp") else {"num_users": 4, "num_items": 6}
    model = entry.cls(**sizes, **SMALL[entry.name])
    history = model.fit(log, epochs=1, batch_size=4, seed=0)
    scores = model.score(np.array([0, 3, 1]))
    assert scores.shape == (3, 6) and scores.dtype == np.float32 and np.isfinite(scores).all()
    assert entry.family in ("retrieval", "multi_behavior", "multi_modal") and entry.slot in registry.SLOTS and entry.slot not in registry.JOINT_SLOTS
    assert history["best_epoch"] == 1
    assert type(model).from_config(model.get_config()).get_config() == model.get_config()
