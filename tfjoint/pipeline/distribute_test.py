import json
import types

import pytest
import tensorflow as tf

from tfjoint.pipeline import distribute

Policy = tf.data.experimental.AutoShardPolicy


def _config(workers: int, chief: bool = False) -> str:
    cluster = {"worker": [f"localhost:{2000 + i}" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["localhost:1999"]
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})


def test_cluster_workers_counts_chief_and_workers_only():
    assert distribute.cluster_workers("") == 0
    assert distribute.cluster_workers(_config(2)) == 2
    assert distribute.cluster_workers(_config(2, chief=True)) == 3
    assert distribute.cluster_workers(json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1", "c:1"]}})) == 1
    with pytest.raises(ValueError, match="TF_CONFIG must be a JSON object"):
        distribute.cluster_workers("not json")


def test_pick_strategy_is_multi_worker_when_tf_config_names_several_workers(monkeypatch):
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", lambda: "multi-worker")
    monkeypatch.setenv("TF_CONFIG", _config(2))
    assert distribute.pick_strategy() == "multi-worker"
    monkeypatch.setenv("TF_CONFIG", _config(1))  # one worker: the hardware decides
    assert distribute.pick_strategy() is tf.distribute.get_strategy()


def _strategy(task_type, task_id, chief=False):
    spec = tf.train.ClusterSpec(json.loads(_config(2, chief))["cluster"])
    resolver = types.SimpleNamespace(task_type=task_type, task_id=task_id, cluster_spec=lambda: spec)
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_only_the_chief_writes_the_model(tmp_path):
    assert distribute.is_chief(tf.distribute.get_strategy())
    assert distribute.is_chief(_strategy("worker", 0))
    assert not distribute.is_chief(_strategy("worker", 1))
    assert not distribute.is_chief(_strategy("worker", 0, chief=True))
    assert distribute.is_chief(_strategy("chief", 0, chief=True))
    assert distribute.write_dir(str(tmp_path), _strategy("worker", 0)) == str(tmp_path)
    other = distribute.write_dir(str(tmp_path), _strategy("worker", 1))
    assert other != str(tmp_path) and tf.io.gfile.isdir(other)
    tf.io.gfile.rmtree(other)


def test_shard_policy_shards_files_only_when_each_worker_gets_one():
    assert distribute.shard_policy(4, 2) == Policy.FILE
    assert distribute.shard_policy(1, 2) == Policy.DATA
    assert distribute.shard_policy(4, 1) == Policy.DATA
