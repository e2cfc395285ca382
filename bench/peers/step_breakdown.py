"""Where a peer-shaped training step spends its time (issue 17), by subtraction.

``PYTHONPATH=. python bench/peers/step_breakdown.py esmm float32,mixed_bfloat16 7 [keras_fit,keras_step]``:
builds ``tfjoint bench train``'s peer model (raw numerics, no scenario field, BatchNorm,
LazyAdam) once per precision on 8 batches of its workload, then times, the parts taking
turns within each repeat (interleaved), each as its own traced function over the same
batches:

- ``keras_fit``: Keras's train function on a ``tf.data`` iterator, as ``fit`` calls it
  (Keras 3.12 wraps the step in a ``tf.while_loop`` over ``get_next_as_optional``): forward,
  loss, gradients, LazyAdam, the loss trackers, the AUCs and every metric's result;
- ``keras_step``: the same train step, given each batch from Python (Keras's own path for an
  iterator that is not ``tf.data``: no while loop);
- ``no_aucs``: the same step by hand (forward, ``compute_loss``, gradients, LazyAdam),
  without the AUCs and metric results;
- ``gradients``: forward, loss and gradients, no optimizer;
- ``forward_loss``: forward (training mode) and loss, no gradient;
- ``forward``: the model's training-mode forward only;
- ``lookups``: the embedding layer alone, forward and the gradient of its tables.

Differences give the cost of fit's loop (keras_fit - keras_step), the AUC/metric cost (keras_step - no_aucs), the optimizer's
(no_aucs - gradients), the backward pass (gradients - forward_loss) and the loss
(forward_loss - forward). Median ms per step over the repeats. Not imported by the package.
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

arch = sys.argv[1]
precisions = sys.argv[2].split(",")
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
chosen = sys.argv[4].split(",") if len(sys.argv) > 4 else None  # a subset of the parts, for an A/B
STEPS = 8
w = bench.Workload(rows=STEPS * 2048)
x, y = bench.synthetic_data(w)
batches = list(bench.input_pipeline(x, y, 2048).cache())


def parts(model):
    variables = model.trainable_variables
    train_function = model.make_train_function()

    def keras_step(xb, yb):
        return train_function(iter([(xb, yb)]))

    iterator = iter(bench.input_pipeline(x, y, 2048).cache().repeat())

    def keras_fit(xb, yb):  # the same 8 batches, in turn, from the tf.data iterator
        return train_function(iterator)

    @tf.function
    def no_aucs(xb, yb):
        with tf.GradientTape() as tape:
            pred = model(xb, training=True)
            loss = model.compute_loss(xb, yb, pred)
        model.optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    @tf.function
    def gradients(xb, yb):
        with tf.GradientTape() as tape:
            pred = model(xb, training=True)
            loss = model.compute_loss(xb, yb, pred)
        return tape.gradient(loss, variables)

    @tf.function
    def forward_loss(xb, yb):
        return model.compute_loss(xb, yb, model(xb, training=True))

    @tf.function
    def forward(xb, yb):
        return model(xb, training=True)

    tables = model.embedding.trainable_variables

    @tf.function
    def lookups(xb, yb):
        with tf.GradientTape() as tape:
            out = model.embedding(xb, training=True)
            total = sum(tf.reduce_sum(tf.cast(v, tf.float32)) for v in tf.nest.flatten(out))
        return tape.gradient(total, tables)

    return {"keras_fit": keras_fit, "keras_step": keras_step, "no_aucs": no_aucs, "gradients": gradients, "forward_loss": forward_loss,
            "forward": forward, "lookups": lookups}


functions = {}
for precision in precisions:
    keras.utils.set_random_seed(0)
    model = bench.build_model(arch, "peer", w, precision)
    model.compile(optimizer=LazyAdam(1e-3))
    model.fit(bench.input_pipeline(x, y, 2048).take(2), verbose=0)
    for name, fn in parts(model).items():
        if chosen and name not in chosen:
            continue
        fn(*batches[0])  # trace
        functions[(precision, name)] = fn

times = {k: [] for k in functions}
for _ in range(repeats):
    for key, fn in functions.items():
        start = time.perf_counter()
        for xb, yb in batches:
            out = fn(xb, yb)
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
        times[key].append((time.perf_counter() - start) / STEPS * 1000)

for precision in precisions:
    med = {name: float(np.median(times[(precision, name)])) for (p, name) in functions if p == precision}
    print(f"{arch} {precision}: median ms/step over {repeats} interleaved repeats of {STEPS} steps")
    for name, value in med.items():
        print(f"  {name:13s} {value:7.1f}  (min {min(times[(precision, name)]):6.1f})", flush=True)
    if chosen:
        first, *others = chosen
        for other in others:
            ratios = [a / b for a, b in zip(times[(precision, first)], times[(precision, other)])]
            print(f"  {first} / {other} per repeat: " + " ".join(f"{r:.2f}" for r in ratios)
                  + f"; median {np.median(ratios):.2f}", flush=True)
        continue
    print(f"  -> fit's loop {med['keras_fit'] - med['keras_step']:6.1f}, AUCs and metric results {med['keras_step'] - med['no_aucs']:6.1f}, optimizer "
          f"{med['no_aucs'] - med['gradients']:6.1f}, backward {med['gradients'] - med['forward_loss']:6.1f}, "
          f"loss {med['forward_loss'] - med['forward']:6.1f}, forward {med['forward']:6.1f} "
          f"(of which lookups fwd+bwd {med['lookups']:5.1f})", flush=True)
