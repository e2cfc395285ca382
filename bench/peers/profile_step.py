"""In-process interleaved timing of tfjoint's peer-shaped model variants (issue 17).

``PYTHONPATH=. python bench/peers/profile_step.py mmoe base,no_metrics,no_bn,bf16 5``:
builds each variant of ``tfjoint bench train``'s peer model (raw numerics, no scenario
field, BatchNorm, LazyAdam) on 8 batches of its workload, then times one pass over them
per repeat, the variants taking turns. ``no_metrics``: the training AUCs and gate trackers
not updated; ``no_gates``: only the gate trackers off; ``no_bn``: without BatchNorm;
``bf16``: Keras's ``mixed_bfloat16`` policy. Not imported by the package.
"""
import sys, time, numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2); tf.config.threading.set_inter_op_parallelism_threads(2)
import keras
from tfjoint.bench import train as bench
from tfjoint.joint import LazyAdam
from tfjoint.layers.core import gate_monitor

arch = sys.argv[1]
names = sys.argv[2].split(",")
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
w = bench.Workload(rows=8 * 2048)
x, y = bench.synthetic_data(w)
ds = bench.input_pipeline(x, y, 2048).cache()
models = {}
for name in names:
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if name == "bf16" else "float32")
    variant = dict(bench.VARIANTS["peer"])
    if name == "no_bn":
        variant["batch_norm"] = False
    bench.VARIANTS["x"] = variant
    keras.utils.set_random_seed(0)
    m = bench.build_model(arch, "x", w)
    m.compile(optimizer=LazyAdam(1e-3))
    if name in ("no_metrics", "no_gates"):
        with gate_monitor.disabled():
            if name == "no_metrics":
                m.task_aucs = {}
            m.fit(ds.take(2), verbose=0)
    else:
        m.fit(ds.take(2), verbose=0)
    models[name] = m
keras.mixed_precision.set_global_policy("float32")
times = {k: [] for k in models}
for r in range(repeats):
    for k, m in models.items():
        t0 = time.perf_counter(); m.fit(ds, verbose=0); times[k].append((time.perf_counter() - t0) / 8 * 1000)
base = np.median(times[names[0]])
for k, v in times.items():
    print(f"{arch} {k:12s} median {np.median(v):6.1f} ms/step  min {min(v):6.1f}  ratio to {names[0]} {base/np.median(v):.2f}x  per-repeat", [round(a) for a in v], flush=True)
