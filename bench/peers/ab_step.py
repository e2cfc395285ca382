"""A/B of tfjoint's peer-shaped training step, before and after a speed change (issue 17).

``PYTHONPATH=. python bench/peers/ab_step.py mmoe 9 [float32] [--only=NAME ...]``: builds
``tfjoint bench train``'s peer model (raw numerics, no scenario field, BatchNorm, LazyAdam)
twice on 8 batches of its workload, ``before`` with the code each change replaced
(:data:`CHANGES`: ``bn``, Keras's ``BatchNormalization`` in the MLPs; ``gates``, one
stack and batched matmul per gate instead of one per layer; ``adam``, Keras's Adam ops for
dense gradients instead of the fused kernel; ``table``, Keras's ``Embedding``, which
reads the whole table before gathering) and ``after`` as the package has it (the einsum
expert mix of session 10 is no longer swappable: MMoE and PLE call ``mix_experts_by_gates``),
then runs ``fit`` over the 8
batches once per repeat, the two taking turns (interleaved). Prints, per variant, the
median and minimum of wall and CPU (process) milliseconds per step, and the per-repeat
ratios before / after of both. On a loaded machine read the CPU ratios. Not imported by
the package.
"""
import sys
import time

import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)
import keras  # noqa: E402

from tfjoint.bench import train as bench  # noqa: E402
from tfjoint.joint import LazyAdam  # noqa: E402
from tfjoint.layers.core import mlp  # noqa: E402
from tfjoint.layers.core import feature_embedding  # noqa: E402
from tfjoint.layers.core.experts import mix_experts  # noqa: E402
from tfjoint.layers.multi_task import multi_gate_mixture_of_experts as mmoe_module  # noqa: E402
from tfjoint.layers.multi_task import progressive_layered_extraction as ple_module  # noqa: E402


def per_gate_mix(gates, experts, members=None):
    """``mix_experts_by_gates`` as it was: one stack and batched matmul per gate."""
    if members is None:
        return [mix_experts(g, experts) for g in gates]
    return [mix_experts(g, [experts[i] for i in m]) for g, m in zip(gates, members)]


def keras_dense_adam(self, gradient, variable, learning_rate):
    """``LazyAdam.update_step`` as it was: Keras's Adam ops for a dense gradient."""
    if not isinstance(gradient, tf.IndexedSlices):
        return keras.optimizers.Adam.update_step(self, gradient, variable, learning_rate)
    return FUSED_UPDATE(self, gradient, variable, learning_rate)


FUSED_UPDATE = LazyAdam.update_step
# What ``before`` swaps back in (module, attribute) -> the code before the change;
# ``--only=NAME`` (repeatable) keeps those changes' entries.
CHANGES = {
    "bn": {(mlp, "BatchNormalization"): keras.layers.BatchNormalization},
    "gates": {(mmoe_module, "mix_experts_by_gates"): per_gate_mix, (ple_module, "mix_experts_by_gates"): per_gate_mix},
    "table": {(feature_embedding, "EmbeddingTable"): keras.layers.Embedding},
    "adam": {(LazyAdam, "update_step"): keras_dense_adam},
}
only = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")]
sys.argv = [a for a in sys.argv if not a.startswith("--only=")]
BEFORE = {key: value for name, entries in CHANGES.items() if not only or name in only
          for key, value in entries.items()}

arch = sys.argv[1]
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 7
precision = sys.argv[3] if len(sys.argv) > 3 else "float32"
STEPS = 8
w = bench.Workload(rows=STEPS * 2048)
x, y = bench.synthetic_data(w)
ds = bench.input_pipeline(x, y, 2048).cache()
models = {}
for name in ("before", "after"):
    saved = {key: getattr(*key) for key in BEFORE}
    if name == "before":
        for (module, attr), value in BEFORE.items():
            setattr(module, attr, value)
    keras.utils.set_random_seed(0)
    model = bench.build_model(arch, "peer", w, precision)
    model.compile(optimizer=LazyAdam(1e-3))
    model.fit(ds.take(2), verbose=0)
    for (module, attr), value in saved.items():
        setattr(module, attr, value)
    models[name] = model
for model in models.values():  # one untimed full pass each (cache, allocator, first-call costs)
    model.fit(ds, verbose=0)
wall = {k: [] for k in models}
cpu = {k: [] for k in models}
for r in range(repeats):
    for k, model in (list(models.items()) if r % 2 == 0 else list(models.items())[::-1]):
        w0, c0 = time.perf_counter(), time.process_time()
        model.fit(ds, verbose=0)
        wall[k].append((time.perf_counter() - w0) / STEPS * 1000)
        cpu[k].append((time.process_time() - c0) / STEPS * 1000)
for k in models:
    print(f"{arch} {precision} {k:6s} wall median {np.median(wall[k]):6.1f} min {min(wall[k]):6.1f} | "
          f"cpu median {np.median(cpu[k]):6.1f} min {min(cpu[k]):6.1f} ms/step", flush=True)
for label, t in (("wall", wall), ("cpu", cpu)):
    ratios = [a / b for a, b in zip(t["before"], t["after"])]
    print(f"{arch} {precision} before/after {label} per repeat " + " ".join(f"{r:.2f}" for r in ratios)
          + f"; median {np.median(ratios):.2f}", flush=True)
