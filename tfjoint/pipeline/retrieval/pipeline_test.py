"""The retrieval pipeline: its data, its evaluator's blessing, and a run served over gRPC."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfjoint import cli
from tfjoint.datasets.interactions import synthetic_behaviors
from tfjoint.layers.retrieval import BPRMatrixFactorization
from tfjoint.pipeline.retrieval import data
from tfjoint.pipeline.retrieval.evaluator import parse_thresholds, rank_and_judge
from tfjoint.retrieval import evaluate, history, leave_one_out
from tfjoint.retrieval.export import export_topk_model


@pytest.fixture(scope="module")
def split():
    return leave_one_out(synthetic_behaviors(120, 300, signal=1.0, seed=0))


def _read(path):
    spec = {k: tf.io.FixedLenFeature([1], tf.string) for k in (data.USER_ID, data.ITEM_ID, data.BEHAVIOR)}
    spec.update({k: tf.io.FixedLenFeature([1], tf.int64) for k in (data.TIMESTAMP, data.STAGE)})
    records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    return {k: v.numpy()[:, 0] for k, v in tf.io.parse_example(tf.constant(records), spec).items()}


def test_the_split_is_written_as_events_and_read_back_unchanged(split, tmp_path):
    root = data.write_split(split, str(tmp_path))
    train, held = (_read(os.path.join(root, s, "data.tfrecord")) for s in ("train", "eval"))
    assert len(train[data.STAGE]) == len(split.train) and set(train[data.STAGE]) == {data.TRAIN}
    assert (held[data.STAGE] == data.VALID).sum() == (split.valid_items >= 0).sum()
    assert (held[data.STAGE] == data.TEST).sum() == (split.test_items >= 0).sum()
    # Transform's vocabularies, here the identity on the decimal ids, give the split back.
    to_index = lambda col: np.array([int(v) for v in col])  # noqa: E731
    names = {b.encode(): i for i, b in enumerate(split.spec.behaviors)}
    columns = lambda cols: {data.USER: to_index(cols[data.USER_ID]), data.ITEM: to_index(cols[data.ITEM_ID]),  # noqa: E731
                            data.BEHAVIOR: np.array([names[b] for b in cols[data.BEHAVIOR]]),
                            data.TIMESTAMP: cols[data.TIMESTAMP], data.STAGE: cols[data.STAGE]}
    back, dropped = data.split_from_arrays(split.spec, columns(train), columns(held),
                                           split.train.num_users, split.train.num_items)
    assert dropped == 0
    np.testing.assert_array_equal(back.valid_items, split.valid_items)
    np.testing.assert_array_equal(back.test_items, split.test_items)
    order = np.lexsort((split.train.timestamps, split.train.items, split.train.users))
    order_back = np.lexsort((back.train.timestamps, back.train.items, back.train.users))
    np.testing.assert_array_equal(back.train.items[order_back], split.train.items[order])
    np.testing.assert_array_equal(back.train.behaviors[order_back], split.train.behaviors[order])


def test_held_out_events_outside_the_vocabulary_are_dropped_and_counted(split):
    cols = lambda users, items, stage: {data.USER: np.array(users), data.ITEM: np.array(items),  # noqa: E731
                                        data.BEHAVIOR: np.full(len(users), 2), data.TIMESTAMP: np.arange(len(users)),
                                        data.STAGE: np.full(len(users), stage)}
    back, dropped = data.split_from_arrays(split.spec, cols([0, 1], [3, 4], data.TRAIN),
                                           cols([0, 1, -1], [5, -1, 2], data.TEST), 2, 10)
    assert dropped == 2 and back.test_items.tolist() == [5, -1]


def test_thresholds_parse_from_flags_or_json_and_reject_non_numbers():
    assert parse_thresholds("NDCG@10=0.001,HR@10=0.01") == {"NDCG@10": 0.001, "HR@10": 0.01}
    assert parse_thresholds('{"MRR": 0.2}') == {"MRR": 0.2} and parse_thresholds("") == {}
    with pytest.raises(ValueError, match="needs a number"):
        parse_thresholds("NDCG@10=high")


def test_the_evaluator_ranks_with_the_saved_model_and_blesses_on_validation_only(split, tmp_path):
    model = BPRMatrixFactorization(split.train.num_users, split.train.num_items, embedding_dim=8, seed=0)
    model.fit(split.train, epochs=3, batch_size=64)
    served = export_topk_model(model, str(tmp_path / "m"), k=5)
    report = rank_and_judge(served, split, {"NDCG@10": 0.0})
    # The SavedModel's ranking is the model's own: the same metrics as in-process scoring.
    for stage in ("valid", "test"):
        own = evaluate(lambda u: model.score(u, history(split, stage)), split, stage=stage, protocol="full")
        assert report[stage]["full"]["NDCG@10"] == pytest.approx(own["NDCG@10"], abs=1e-6)
    assert report["blessed"] and report["judged_on"].startswith("valid")
    valid = report["valid"]["full"]["NDCG@10"]
    test = report["test"]["full"]["NDCG@10"]
    assert valid != test  # so the next check tells the stages apart
    between = (min(valid, test) + max(valid, test)) / 2
    verdict = rank_and_judge(served, split, {"NDCG@10": between})["blessed"]
    assert verdict == (valid >= between)  # judged on validation, not on test
    with pytest.raises(ValueError, match="unknown metrics"):
        rank_and_judge(served, split, {"AUC": 0.5})


def test_the_evaluator_gives_a_multi_behavior_sequence_model_every_event_with_its_behavior(split, tmp_path):
    from tfjoint.layers.multi_behavior import MultiBehaviorSequentialTransformer

    model = MultiBehaviorSequentialTransformer(split.train.num_items, max_len=8, hidden_dim=8, num_blocks=1, seed=0)
    model.fit(split.train, epochs=1, batch_size=64)
    report = rank_and_judge(export_topk_model(model, str(tmp_path / "m"), k=5), split, {})
    for stage in ("valid", "test"):
        own = evaluate(lambda u: model.score(u, history(split, stage)), split, stage=stage, protocol="full")
        assert report[stage]["full"]["NDCG@10"] == pytest.approx(own["NDCG@10"], abs=1e-6)


def test_bad_flags_fail_in_one_line_before_any_work(capsys):
    assert cli.main(["pipeline", "retrieval", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert cli.main(["pipeline", "retrieval", "--threshold", "NDCG@10=x"]) == 2


def test_a_pipeline_run_pushes_a_model_whose_grpc_top_k_matches_in_process(split, tmp_path):
    from tfjoint.pipeline.retrieval.cli import query_served_topk
    from tfjoint.pipeline.retrieval.pipeline import run_retrieval_local

    run = run_retrieval_local(
        dataset="synthetic", pipeline_root=str(tmp_path / "pipeline"), serving_dir=str(tmp_path / "serving"),
        model_name="topk", hparams={"model": "bpr_mf", "epochs": 4, "embedding_dim": 8, "batch_size": 128},
        thresholds="NDCG@10=0.0", split=split,
    )
    assert run.metrics["blessed"] and run.pushed_dir is not None
    assert run.data_root.startswith(str(tmp_path / "pipeline"))
    summary = json.load(open(os.path.join(run.model_run_dir, "training_summary.json")))
    curve = summary["validation"]["NDCG@10"]
    assert 1 <= summary["best_epoch"] <= 4 and curve.index(max(curve)) + 1 == summary["best_epoch"]
    users = [str(u).encode() for u in (0, 7, 42)] + [b"no-such-user"]
    served, local = query_served_topk(run.pushed_dir, "topk", users)
    assert served.shape == (4, 10)
    np.testing.assert_array_equal(served, local)
    # The catalog is Transform's item vocabulary: the items seen in training.
    loaded = tf.saved_model.load(run.pushed_dir)
    scores = loaded.signatures["scores"](examples=tf.constant([_by_index(0)]))["scores"].numpy()
    seen = len(np.unique(split.train.items))
    assert summary["items"] == seen and scores.shape == (1, seen)


def test_vbpr_runs_on_item_text_embeddings_blesses_pushes_and_its_grpc_top_k_matches_in_process(split, tmp_path):
    from tfjoint.pipeline.retrieval.cli import query_served_topk
    from tfjoint.pipeline.retrieval.pipeline import run_retrieval_local

    texts = tmp_path / "items.tsv"  # item texts keyed by the log's item ids (decimal strings)
    texts.write_text("".join(f"{i}\titem {i} shelf {i % 7}\n" for i in range(split.train.num_items)))
    run = run_retrieval_local(
        dataset="synthetic", pipeline_root=str(tmp_path / "pipeline"), serving_dir=str(tmp_path / "serving"),
        model_name="topk", thresholds="NDCG@10=0.0", split=split, item_texts=str(texts),
        hparams={"model": "vbpr", "item_features": "hashed", "epochs": 2, "embedding_dim": 8, "batch_size": 128},
    )
    assert run.metrics["blessed"] and run.pushed_dir is not None
    summary = json.load(open(os.path.join(run.model_run_dir, "training_summary.json")))
    features = summary["item_features"]
    assert features["kind"] == "hashed" and features["dim"] == 384 and features["missing"] == 0
    assert features["items"] == summary["items"] and "ItemTextEmbeddings" in features["source"]
    users = [str(u).encode() for u in (0, 7, 42)] + [b"no-such-user"]
    served, local = query_served_topk(run.pushed_dir, "topk", users)
    assert served.shape == (4, 10)
    np.testing.assert_array_equal(served, local)
    # the served graph holds the features as a fixed table: no tf-text (or other custom) op in it
    loaded = tf.saved_model.load(run.pushed_dir)
    graph = loaded.signatures["serving_default"].graph.as_graph_def()
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    assert not [o for o in ops if "Sentencepiece" in o or "Wordpiece" in o or o.startswith("Regex")]


def test_item_feature_flags_fail_in_one_line_naming_the_flag(capsys):
    assert cli.main(["pipeline", "retrieval", "--model", "vbpr", "--item-features", "none"]) == 2
    assert "--item-features none: model 'vbpr' needs item features" in capsys.readouterr().err
    assert cli.main(["pipeline", "retrieval", "--model", "bpr_mf", "--item-features", "minilm"]) == 2
    assert "takes no item features" in capsys.readouterr().err
    assert cli.main(["pipeline", "retrieval", "--dataset", "synthetic", "--model", "vbpr"]) == 2
    assert "--item-features minilm needs --item-texts" in capsys.readouterr().err
    assert cli.main(["pipeline", "retrieval", "--dataset", "synthetic", "--model", "vbpr", "--item-features", "metadata"]) == 2
    assert "--item-features metadata needs --dataset movielens-100k" in capsys.readouterr().err


def _by_index(user):
    ex = tf.train.Example()
    ex.features.feature["user"].int64_list.value.append(user)
    return ex.SerializeToString()
