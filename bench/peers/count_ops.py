"""Scratch (issue 17): op counts of one traced MMoE training step, tfjoint peer-shaped
(LazyAdam) against DeepCTR (``python bench/peers/count_ops.py tfjoint|deepctr [DATA_DIR]``, DeepCTR
from the peers' environment; reads the arrays ``run_peers.py prepare`` wrote to DATA_DIR,
default runs/peers/data). Not imported by the package."""
import sys, os, collections
fw = sys.argv[1]
data = sys.argv[2] if len(sys.argv) > 2 else "runs/peers/data"
if fw == "deepctr": os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np, tensorflow as tf
sys.argv = ["x", "worker"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_peers as rp
meta, train, test, steps = rp.load(data, 4096)
if fw == "deepctr":
    from deepctr.feature_column import DenseFeat, SparseFeat
    from deepctr.models import MMOE
    cols = [SparseFeat(k, v + 1, embedding_dim=16) for k, v in zip(meta["categorical"], meta["vocab_sizes"])] + [DenseFeat(k, 1) for k in meta["dense"]]
    model = MMOE(cols, num_experts=8, expert_dnn_hidden_units=(256, 128), tower_dnn_hidden_units=(64,), dnn_use_bn=True, task_names=("click", "conversion"))
    import tf_keras  # DeepCTR is Keras 2 (legacy Keras in the peers environment)

    model.compile(tf_keras.optimizers.Adam(1e-3), loss=["binary_crossentropy"] * 2)
    x = {k: train["categorical"][:, i].astype(np.int32) for i, k in enumerate(meta["categorical"])}
    x.update({k: train["dense"][:, j] for j, k in enumerate(meta["dense"])})
    model.fit(x, [train["labels"][:, 0], train["labels"][:, 1]], batch_size=2048, verbose=0)
else:
    import keras
    from tfjoint.bench import train as bench
    from tfjoint.joint import LazyAdam
    w = bench.Workload(rows=4096)
    model = bench.build_model("mmoe", "peer", w)
    model.compile(optimizer=LazyAdam(1e-3))
    xx, yy = bench.synthetic_data(w)
    ds = bench.input_pipeline(xx, yy, 2048)
    model.fit(ds, verbose=0)
    concrete = tf.function(model.train_step).get_concrete_function(next(iter(ds)))
    gd = concrete.graph.as_graph_def()
    counts = collections.Counter(n.op for n in gd.node)
    for f in gd.library.function:
        counts.update(n.op for n in f.node_def)
    print(fw, "total ops", sum(counts.values()), "variables", len(model.trainable_variables))
    print(counts.most_common(25)); sys.exit()
fn = model.train_function
cf = fn.get_concrete_function() if hasattr(fn, "get_concrete_function") and False else None
# find concrete functions from the tf.function
concs = fn._list_all_concrete_functions() if hasattr(fn, "_list_all_concrete_functions") else []
print([type(fn)])
gd = concs[0].graph.as_graph_def()
counts = collections.Counter()
for n in gd.node: counts[n.op] += 1
for f in gd.library.function:
    for n in f.node_def: counts[n.op] += 1
print(fw, "total ops", sum(counts.values()), "variables", len(model.trainable_variables))
print(counts.most_common(25))
