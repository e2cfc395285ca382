"""Bisection of the peer-shaped model's AUC loss with BatchNorm (issue 17; docs/training_speed.md,
"BatchNorm and the embedding tables"). Not part of the package.

Each experiment trains one epoch of ``run_peers.py``'s workload (its ``prepare`` arrays) and
prints the held-out click / CTCVR AUC: ``esmm_*`` and ``mmoe_*`` are tfjoint's peer-shaped
models with one option changed, ``bare_*`` and ``bmmoe_*`` bare Keras 3 controls (no tfjoint
layer) with and without BatchNorm, tables started at Keras's uniform or at N(0, 1e-4).

Usage::

    python bench/peers/run_peers.py prepare --out /tmp/peers
    PYTHONPATH=. python bench/peers/bn_bisect.py --data /tmp/peers esmm_bn bare_bn bare_bn_n4
    PYTHONPATH=. python bench/peers/bn_bisect.py --list
"""
import argparse, sys, time, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)
import keras
import run_peers as rp
from tfjoint import features
from tfjoint.bench import train as bench
from tfjoint.joint import LazyAdam

meta = train = test = steps = None

def columns(part):
    x = {k: part["categorical"][:, i:i+1].astype(np.int64) for i, k in enumerate(meta["categorical"])}
    x.update({k: part["dense"][:, j:j+1].astype(np.float32) for j, k in enumerate(meta["dense"])})
    x[features.SCENARIO_KEY] = np.zeros((len(part["labels"]), 1), np.int64)
    return x

def tfj(arch, extra, opt="lazy_adam", cfg=None, seed=0):
    x = columns(train); y = {"click": train["labels"][:, :1], "conversion": train["labels"][:, 1:]}
    workload = bench.Workload(rows=steps * rp.BATCH)
    keras.utils.set_random_seed(seed)
    kw = {**bench.VARIANTS["peer"], **extra}
    from tfjoint.joint import build_joint_model
    comp = {"task_architecture": {**bench.ARCHITECTURES[arch], **(cfg or {})}}
    emb = kw.pop("embedding_kwargs", None)
    if emb: comp["embedding"] = emb
    model = build_joint_model(bench.SPEC, workload.vocab_sizes(), task_architecture=arch, embedding_dim=16,
                              component_kwargs=comp, **kw)
    model.compile(optimizer=(LazyAdam if opt == "lazy_adam" else keras.optimizers.Adam)(rp.LR))
    ds = bench.input_pipeline(x, y, rp.BATCH)
    model.fit(ds.take(3), epochs=1, verbose=0)
    model.fit(ds, epochs=1, verbose=0)
    pred = model.predict(columns(test), batch_size=8192, verbose=0)
    click = np.ravel(pred["click"])
    ctcvr = np.ravel(pred["conversion_joint"]) if "conversion_joint" in pred else click * np.ravel(pred["conversion"])
    if "tasks" in extra: ctcvr = np.ravel(pred["conversion"])
    return rp.aucs(test, click, ctcvr), model

def bare(bn, emb_init="uniform", bias=None, opt="adam", kinit="glorot_uniform", l2=None, seed=0):
    """Bare Keras 3: embeddings + raw dense -> two towers [256,128,64] -> click, ctcvr=click*cvr."""
    keras.utils.set_random_seed(seed)
    cat = keras.Input((len(meta["categorical"]),), dtype="int64"); den = keras.Input((len(meta["dense"]),))
    embs = [keras.layers.Embedding(v + 2, 16, embeddings_initializer=emb_init, embeddings_regularizer=l2 and keras.regularizers.L2(l2))(cat[:, i]) for i, v in enumerate(meta["vocab_sizes"])]
    h0 = keras.layers.Concatenate()(embs + [den])
    outs = []
    for t in range(2):
        h = h0
        for u in (256, 128, 64):
            h = keras.layers.Dense(u, use_bias=(not bn) if bias is None else bias, kernel_initializer=kinit)(h)
            if bn: h = keras.layers.BatchNormalization()(h)
            h = keras.layers.ReLU()(h)
        outs.append(keras.layers.Dense(1, activation="sigmoid")(h))
    ctcvr = outs[0] * outs[1]
    model = keras.Model([cat, den], [outs[0], ctcvr])
    model.compile((LazyAdam if opt == "lazy_adam" else keras.optimizers.Adam)(rp.LR), loss=["binary_crossentropy", "binary_crossentropy"])
    xs = [train["categorical"].astype(np.int64), train["dense"]]
    ys = [train["labels"][:, 0], train["labels"][:, 1]]
    model.fit(xs, ys, batch_size=rp.BATCH, epochs=1, verbose=0, shuffle=False)
    c, v = model.predict([test["categorical"].astype(np.int64), test["dense"]], batch_size=8192, verbose=0)
    return rp.aucs(test, np.ravel(c), np.ravel(v)), model

class StatsStoppedBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization whose batch mean and variance carry no gradient: a row's loss then
    moves no other row through the statistics (a check of the mechanism, not a layer of tfjoint)."""

    def call(self, inputs, training=None, mask=None):
        if not training:
            return super().call(inputs, training=False)
        mean, var = keras.ops.moments(inputs, axes=[0])
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + var * (1 - self.momentum))
        mean, var = keras.ops.stop_gradient(mean), keras.ops.stop_gradient(var)
        return (inputs - mean) * keras.ops.rsqrt(var + self.epsilon) * self.gamma + self.beta


def bare_mmoe(bn, conditional, seed=0, experts=8, norm=keras.layers.BatchNormalization):
    keras.utils.set_random_seed(seed)
    init = keras.initializers.RandomNormal(stddev=1e-4)
    cat = keras.Input((len(meta["categorical"]),), dtype="int64"); den = keras.Input((len(meta["dense"]),))
    embs = [keras.layers.Embedding(v + 2, 16, embeddings_initializer=init)(cat[:, i]) for i, v in enumerate(meta["vocab_sizes"])]
    h0 = keras.layers.Concatenate()(embs + [den])
    def mlp(h, units):
        for u in units:
            h = keras.layers.Dense(u, use_bias=not bn)(h)
            if bn: h = norm()(h)
            h = keras.layers.ReLU()(h)
        return h
    ex = keras.ops.stack([mlp(h0, (256, 128)) for _ in range(experts)], axis=1)
    outs = []
    for t in range(2):
        g = keras.layers.Dense(experts, activation="softmax")(h0)
        mixed = keras.ops.einsum("be,bed->bd", g, ex)
        outs.append(keras.layers.Dense(1, activation="sigmoid")(mlp(mixed, (64,))))
    model = keras.Model([cat, den], outs)
    model.compile(keras.optimizers.Adam(rp.LR), loss=["binary_crossentropy", "binary_crossentropy"])
    xs = [train["categorical"].astype(np.int64), train["dense"]]
    ys = [train["labels"][:, 0], train["labels"][:, 1]]
    sw = [np.ones(len(ys[0]), np.float32), ys[0] / ys[0].mean()] if conditional else None
    model.fit(xs, ys, sample_weight=sw, batch_size=rp.BATCH, epochs=1, verbose=0, shuffle=False)
    c, v = model.predict([test["categorical"].astype(np.int64), test["dense"]], batch_size=8192, verbose=0)
    c, v = np.ravel(c), np.ravel(v)
    return rp.aucs(test, c, c * v if conditional else v), model

# tfjoint experiments build with the code checked out: since the fix, batch_norm=True starts the
# tables at N(0, 1e-4), so esmm_bn equals esmm_bn_n4 there, and esmm_bn_uniform is the old start
# (with a draw per table). The results in docs/training_speed.md name the commit they ran at.
EXPS = {
    "esmm_bn_uniform": lambda: tfj("esmm", {"embedding_kwargs": {"embeddings_initializer": "uniform"}}),
    "bmmoe_bn_all": lambda: bare_mmoe(True, False),
    "bmmoe_bn_cond": lambda: bare_mmoe(True, True),
    "bmmoe_nobn_cond": lambda: bare_mmoe(False, True),
    "bmmoe_sgbn_cond": lambda: bare_mmoe(True, True, norm=StatsStoppedBatchNorm),
    "bmmoe_sgbn_all": lambda: bare_mmoe(True, False, norm=StatsStoppedBatchNorm),
    "bmmoe_nobn_all": lambda: bare_mmoe(False, False),
    "bmmoe_bn_cond_s1": lambda: bare_mmoe(True, True, seed=1),
    "bmmoe_bn_all_s1": lambda: bare_mmoe(True, False, seed=1),
    "esmm_bn": lambda: tfj("esmm", {}),
    "esmm_nobn": lambda: tfj("esmm", {"batch_norm": False}),
    "bare_bn": lambda: bare(True),
    "bare_nobn": lambda: bare(False),
    "bare_bn_n4": lambda: bare(True, keras.initializers.RandomNormal(stddev=1e-4)),
    "esmm_bn_n4": lambda: tfj("esmm", {"embedding_kwargs": {"embeddings_initializer": {"class_name": "RandomNormal", "config": {"stddev": 1e-4}}}}),
    "bare_bn_n4_lazy": lambda: bare(True, keras.initializers.RandomNormal(stddev=1e-4), opt="lazy_adam"),
    "esmm_bn_n4_adam": lambda: tfj("esmm", {"embedding_kwargs": {"embeddings_initializer": {"class_name": "RandomNormal", "config": {"stddev": 1e-4}}}}, opt="adam"),
    "mmoe_bn_n4": lambda: tfj("mmoe", {"embedding_kwargs": {"embeddings_initializer": {"class_name": "RandomNormal", "config": {"stddev": 1e-4}}}}),
    "esmm_nobn_n4": lambda: tfj("esmm", {"batch_norm": False, "embedding_kwargs": {"embeddings_initializer": {"class_name": "RandomNormal", "config": {"stddev": 1e-4}}}}),
    "bare_bn_zero": lambda: bare(True, "zeros"),
    "bare_bn_u005": lambda: bare(True, keras.initializers.RandomUniform(-0.005, 0.005)),
    "bare_bn_n4_s1": lambda: bare(True, keras.initializers.RandomNormal(stddev=1e-4), seed=1),
    "bare_bn_s1": lambda: bare(True, seed=1),
    "bare_bn_dctr": lambda: bare(True, keras.initializers.RandomNormal(stddev=1e-4), bias=True, kinit="glorot_normal", l2=1e-5),
    "bare_bn_n4_l2": lambda: bare(True, keras.initializers.RandomNormal(stddev=1e-4), l2=1e-5),
    "esmm_default_n4": lambda: tfj("esmm", {"batch_norm": False, "numeric": "embedded", "scenario_field": True, "embedding_kwargs": {"embeddings_initializer": {"class_name": "RandomNormal", "config": {"stddev": 1e-4}}}}),
    "esmm_default": lambda: tfj("esmm", {"batch_norm": False, "numeric": "embedded", "scenario_field": True}),
    "esmm_bn_s1": lambda: tfj("esmm", {}, seed=1),
    "esmm_bn_n4_s1": lambda: tfj("esmm", {"embedding_kwargs": {"embeddings_initializer": {"class_name": "RandomNormal", "config": {"stddev": 1e-4}}}}, seed=1),
    "bare_nobn_n4": lambda: bare(False, keras.initializers.RandomNormal(stddev=1e-4)),
    "bare_nobn_s1": lambda: bare(False, seed=1),
    "mmoe_fix_adam": lambda: tfj("mmoe", {}, opt="adam"),
    "mmoe_fix_s1": lambda: tfj("mmoe", {}, seed=1),
    "mmoe_fix_nobn": lambda: tfj("mmoe", {"batch_norm": False}),
    "mmoe_fix_allrows": lambda: tfj("mmoe", {"tasks": [features.TaskSpec("click", "binary"), features.TaskSpec("conversion", "binary")]}),
    "ple_fix_allrows": lambda: tfj("ple", {"tasks": [features.TaskSpec("click", "binary"), features.TaskSpec("conversion", "binary")]}),
    "mmoe_bn": lambda: tfj("mmoe", {}),
    "mmoe_nobn": lambda: tfj("mmoe", {"batch_norm": False}),
}
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="run_peers.py prepare's folder")
parser.add_argument("--list", action="store_true")
parser.add_argument("names", nargs="*")
args = parser.parse_args()
if args.list:
    print("\n".join(EXPS))
    sys.exit(0)
unknown = [n for n in args.names if n not in EXPS]
if unknown or not args.data:
    sys.exit(f"give --data and names among {list(EXPS)}. Received: --data {args.data}, names {args.names}")
meta, train, test, steps = rp.load(args.data)
for name in args.names:
    t = time.time()
    r, m = EXPS[name]()
    print(f"RESULT {name:20s} click {r['click_auc']:.3f} ctcvr {r['ctcvr_auc']:.3f}  {time.time()-t:.0f}s", flush=True)
