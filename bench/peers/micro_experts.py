"""Scratch timing (issue 17): 8 experts [256, 128] with BatchNorm as a Python loop of
Dense layers against fused layouts, forward + backward, batch 2048, input 319, 2 threads.

- ``loop``: one Dense -> BatchNorm -> relu stack per expert (tfjoint's and DeepCTR's layout);
- ``fused_einsum``: every expert's first layer as one (319, 8*256) matmul, the second as
  one ``einsum("bei,eio->beo")`` (its BatchNorm over (batch, expert) jointly: a timing
  prototype only, not the per-expert equations);
- ``fused_first``: the first layer fused, the second per expert.

Run: ``python bench/peers/micro_experts.py`` (prints the median and min ms per step of 7
interleaved repeats of 5 steps). Not imported by the package.
"""
import time, numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2); tf.config.threading.set_inter_op_parallelism_threads(2)
import keras
from keras import ops
B, D, E, H = 2048, 319, 8, (256, 128)
x = tf.random.normal((B, D))
def mlp_loop():
    layers = []
    for e in range(E):
        ls = []
        d = D
        for h in H:
            dn = keras.layers.Dense(h, use_bias=False); dn.build((None, d))
            bn = keras.layers.BatchNormalization(); bn.build((None, h))
            ls.append((dn, bn)); d = h
        layers.append(ls)
    def f(x):
        outs = []
        for ls in layers:
            y = x
            for dn, bn in ls:
                y = ops.relu(bn(dn(y), training=True))
            outs.append(y)
        return ops.stack(outs, 1)
    vars_ = [v for ls in layers for dn, bn in ls for v in dn.trainable_weights + bn.trainable_weights]
    return f, vars_
def fused():
    w0 = tf.Variable(tf.random.normal((D, E * H[0])) * 0.05)
    bn0 = keras.layers.BatchNormalization(); bn0.build((None, E * H[0]))
    w1 = tf.Variable(tf.random.normal((E, H[0], H[1])) * 0.05)
    bn1 = keras.layers.BatchNormalization(); bn1.build((None, E, H[1]))
    def f(x):
        y = ops.relu(bn0(x @ w0, training=True))
        y = ops.reshape(y, (-1, E, H[0]))
        y = tf.einsum("bei,eio->beo", y, w1)
        return ops.relu(bn1(y, training=True))
    return f, [w0, w1] + bn0.trainable_weights + bn1.trainable_weights
def fused_bmm():
    w0 = tf.Variable(tf.random.normal((D, E * H[0])) * 0.05)
    bn0 = keras.layers.BatchNormalization(); bn0.build((None, E * H[0]))
    w1 = tf.Variable(tf.random.normal((E, H[0], H[1])) * 0.05)
    bn1 = keras.layers.BatchNormalization(); bn1.build((None, E * H[1]))
    def f(x):
        y = ops.relu(bn0(x @ w0, training=True))
        y = tf.transpose(tf.reshape(y, (-1, E, H[0])), (1, 0, 2))  # E,B,H
        y = tf.matmul(y, w1)  # E,B,H1
        y = tf.reshape(tf.transpose(y, (1, 0, 2)), (-1, E * H[1]))
        return tf.reshape(ops.relu(bn1(y, training=True)), (-1, E, H[1]))
    return f, [w0, w1] + bn0.trainable_weights + bn1.trainable_weights
def fused_first():
    w0 = tf.Variable(tf.random.normal((D, E * H[0])) * 0.05)
    bn0 = keras.layers.BatchNormalization(); bn0.build((None, E * H[0]))
    rest = []
    for e in range(E):
        dn = keras.layers.Dense(H[1], use_bias=False); dn.build((None, H[0]))
        bn = keras.layers.BatchNormalization(); bn.build((None, H[1]))
        rest.append((dn, bn))
    def f(x):
        y = ops.relu(bn0(x @ w0, training=True))
        parts = tf.split(y, E, axis=1)
        return ops.stack([ops.relu(bn(dn(p), training=True)) for p, (dn, bn) in zip(parts, rest)], 1)
    return f, [w0] + bn0.trainable_weights + [v for dn, bn in rest for v in dn.trainable_weights + bn.trainable_weights]
def step_fn(f, vs):
    @tf.function
    def step(x):
        with tf.GradientTape() as t:
            y = f(x); loss = tf.reduce_sum(y * y)
        g = t.gradient(loss, vs)
        return loss, g
    return step
variants = {"loop": step_fn(*mlp_loop()), "fused_einsum": step_fn(*fused()), "fused_first": step_fn(*fused_first())}
for s in variants.values(): s(x)
times = {k: [] for k in variants}
for r in range(7):
    for k, s in variants.items():
        t0 = time.perf_counter()
        for _ in range(5): out = s(x)
        out[0].numpy()
        times[k].append((time.perf_counter() - t0) / 5 * 1000)
for k, v in times.items(): print(k, "median %.1f ms  min %.1f" % (np.median(v), min(v)), [round(a) for a in v])
