import numpy as np
import pytest

from tfjoint.bench.mtl_movielens import format_report, score
from tfjoint.features import MOVIELENS_100K


def test_scores_respect_the_cascade():
    labels = {
        "watch": np.array([[1.0], [1.0], [0.0], [0.0]]),
        "like": np.array([[1.0], [0.0], [0.0], [0.0]]),
        "rating": np.array([[5.0], [2.0], [0.0], [0.0]]),
    }
    predictions = {
        "watch": np.array([[0.9], [0.8], [0.1], [0.95]]),
        # like is perfect on watched rows; the unwatched rows must not count.
        "like": np.array([[0.9], [0.1], [0.99], [0.99]]),
        "rating": np.array([[4.0], [2.0], [9.0], [9.0]]),
    }
    out = score(MOVIELENS_100K, predictions, labels)
    assert out["watch_auc"] == pytest.approx(0.5)  # 2 of the 4 positive-negative pairs ordered
    assert out["like_auc"] == pytest.approx(1.0)
    assert out["rating_rmse"] == pytest.approx(np.sqrt(0.5))


def test_report_is_a_markdown_table():
    stats = {"watch_auc": {"mean": 0.8, "std": 0.01}, "examples_per_second": {"mean": 1000.0, "std": 10.0},
             "parameters": {"mean": 1234.0, "std": 0.0}}
    report = {"config": {"dataset": "movielens-100k", "train_rows": 10, "eval_rows": 5, "epochs": 1,
                         "batch_size": 4, "learning_rate": 0.1, "seeds": 3},
              "results": {"mmoe+fixed": stats, "mmoe+pcgrad": stats}}
    text = format_report(report)
    assert "| mmoe + pcgrad | 0.8000 ± 0.0100 | 1000 ± 10 | 1,234 |" in text


def test_an_unknown_sequence_encoder_fails_before_any_work():
    from tfjoint.bench.mtl_movielens import run_mtl

    with pytest.raises(ValueError, match="nope"):
        run_mtl(architectures=["mmoe"], balancers=["fixed"], sequence_encoders=["nope"])
