"""Mixed precision (issue 17): ``build_joint_model(..., precision=...)``."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfjoint.bench import train as bench
from tfjoint.features import ALIEXPRESS_SAMPLE
from tfjoint.joint import LazyAdam, build_joint_model
from tfjoint.testing import check_joint_model, fake_batch

SPEC = ALIEXPRESS_SAMPLE
SIZES = {k: 7 for k in SPEC.categorical}
PEER = {"numeric": "raw", "scenario_field": False, "batch_norm": True}
UNITS = {
    "mmoe": {"num_experts": 2, "expert_units": [8], "tower_units": [4]},
    "ple": {"expert_units": [8], "tower_units": [4]},
    "esmm": {"tower_units": [8, 4]},
    "escm2": {"tower_units": [8, 4]},
}


def _build(arch, precision, sizes=SIZES, **options):
    return build_joint_model(SPEC, sizes, task_architecture=arch, precision=precision,
                             component_kwargs={"task_architecture": UNITS[arch]}, **PEER, **options)


def _dense_layers(layer):
    return [l for l in layer._flatten_layers(include_self=False, recursive=True) if isinstance(l, keras.layers.Dense)]


@pytest.mark.parametrize("arch", list(UNITS))
def test_experts_and_towers_compute_in_bfloat16_and_every_output_is_float32(arch):
    model = _build(arch, "mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32", "the global policy must be restored after the build"
    dense = _dense_layers(model.task_architecture)
    gates = [l for l in dense if "gate" in l.path]
    compute = {l.path: l.compute_dtype for l in dense if l not in gates}
    assert compute and set(compute.values()) == {"bfloat16"}, compute
    assert all(l.compute_dtype == "float32" for l in gates)  # the gates' softmax stays float32
    assert {v.dtype for v in model.weights} == {"float32"}  # the variables stay float32
    outputs = model(fake_batch(SPEC, n=8)[0], training=False)
    assert {k: keras.backend.standardize_dtype(v.dtype) for k, v in outputs.items()} == dict.fromkeys(outputs, "float32")
    assert model.precision == "mixed_bfloat16"
    assert _build(arch, None).precision == "float32"


def test_a_bfloat16_model_saves_and_reloads_with_its_policy(tmp_path):
    run = check_joint_model(SPEC, SIZES, tmp_path, task_architecture="esmm", precision="mixed_bfloat16",
                            component_kwargs={"task_architecture": UNITS["esmm"]}, **PEER)
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert reloaded.precision == "mixed_bfloat16"
    assert {l.compute_dtype for l in _dense_layers(reloaded.task_architecture)} == {"bfloat16"}
    # check_joint_model compared the reloaded predictions with the original's (atol 1e-6):
    # a reload in float32 would differ by bfloat16's rounding (~1e-3).
    assert all(v.dtype == np.float32 for v in run.predictions.values())


def _loss_after_fit(precision, epochs=4):
    workload = bench.Workload(rows=2048, batch_size=256, min_vocab=10, max_vocab=30)
    x, y = bench.synthetic_data(workload)
    keras.utils.set_random_seed(0)
    model = build_joint_model(bench.SPEC, workload.vocab_sizes(), task_architecture="esmm", precision=precision,
                              component_kwargs={"task_architecture": {"tower_units": [32, 16]}}, **PEER)
    model.compile(optimizer=LazyAdam(1e-2))
    return model.fit(x, y, batch_size=256, epochs=epochs, shuffle=False, verbose=0).history["loss"]


def test_a_short_bfloat16_fit_reaches_the_float32_loss():
    fp32, bf16 = _loss_after_fit("float32"), _loss_after_fit("mixed_bfloat16")
    assert fp32[-1] < fp32[0] - 0.02 and bf16[-1] < bf16[0] - 0.02  # both learn
    # bfloat16 keeps 8 bits of mantissa: the same data, seed and steps end no more than 2%
    # above float32's loss, and within 5% either way (the trajectories drift apart; with the
    # tables at N(0, 1e-4) bfloat16 ended 2.5% below).
    assert bf16[-1] <= fp32[-1] * 1.02
    assert bf16[-1] == pytest.approx(fp32[-1], rel=0.05)


def test_lazy_adam_gets_row_gradients_of_float32_tables_under_bfloat16():
    model = _build("mmoe", "mixed_bfloat16")
    seen = {}

    class Spy(LazyAdam):
        def update_step(self, gradient, variable, learning_rate):
            seen[variable.name] = (type(gradient), keras.backend.standardize_dtype(gradient.dtype),
                                   keras.backend.standardize_dtype(variable.dtype))
            return super().update_step(gradient, variable, learning_rate)

    model.compile(optimizer=Spy(1e-3))
    x, y = fake_batch(SPEC, n=32)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    tables = {k: v for k, v in seen.items() if "/embeddings" in k}
    assert len(tables) == len(SPEC.categorical)
    assert set(tables.values()) == {(tf.IndexedSlices, "float32", "float32")}


def test_float16_scales_the_loss_and_trains():
    model = _build("esmm", "mixed_float16")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x, y = fake_batch(SPEC, n=64)
    assert np.isfinite(model.fit(x, y, batch_size=32, verbose=0).history["loss"][-1])


def test_an_unknown_precision_is_one_line():
    with pytest.raises(ValueError, match=r"precision must be one of .*Received: precision='bf16'"):
        _build("mmoe", "bf16")
    from tfjoint.pipeline.hparams import check_hparams

    with pytest.raises(ValueError, match="hparams 'precision' must be"):
        check_hparams({"precision": "float64"})
    assert check_hparams({"precision": "mixed_bfloat16"})
