"""A/B of tfjoint's peer-shaped training step, before and after a speed change (issue 17).

``PYTHONPATH=. python bench/peers/ab_step.py mmoe 9 [float32]``: builds ``tfjoint bench
train``'s peer model (raw numerics, no scenario field, BatchNorm, LazyAdam) twice on 8
batches of its workload, ``before`` with Keras's own layers where tfjoint now has a faster
one (see :data:`BEFORE`) and ``after`` as the package has it, then runs ``fit`` over the 8
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

# What ``before`` swaps back in: module attribute -> Keras's layer.
BEFORE = {(mlp, "BatchNormalization"): keras.layers.BatchNormalization}

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
