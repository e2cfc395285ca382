import types

import pytest
import tensorflow as tf

from tfjoint.pipeline import trainer


def test_strategy_follows_the_hardware(monkeypatch):
    assert trainer.pick_strategy() is tf.distribute.get_strategy()  # CPU only here

    def fake_devices(n):
        return lambda kind: [types.SimpleNamespace(name=f"/device:GPU:{i}") for i in range(n)] if kind == "GPU" else []

    monkeypatch.setattr(tf.config, "list_logical_devices", fake_devices(1))
    strategy = trainer.pick_strategy()
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    monkeypatch.setattr(tf.config, "list_logical_devices", fake_devices(2))
    created = []
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda: created.append("mirrored") or "mirrored")
    assert trainer.pick_strategy() == "mirrored"
    resolver_args = []
    monkeypatch.setattr(
        tf.distribute.cluster_resolver, "TPUClusterResolver", lambda tpu: resolver_args.append(tpu) or tpu
    )
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda r: None)
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda r: None)
    monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda r: ("tpu", r))
    monkeypatch.setenv("TPU_NAME", "my-tpu-node")
    assert trainer.pick_strategy() == ("tpu", "my-tpu-node")


def test_run_fn_refuses_keras_2(monkeypatch):
    from tfjoint.joint import model as joint_model

    monkeypatch.setattr(joint_model.keras, "__version__", "2.16.0")
    with pytest.raises(RuntimeError, match="needs Keras 3"):
        trainer.run_fn(types.SimpleNamespace(custom_config={"dataset": "synthetic", "model": "mmoe"}))
