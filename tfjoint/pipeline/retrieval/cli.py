"""``tfjoint pipeline retrieval``: the retrieval pipeline from the command line.

::

    tfjoint pipeline retrieval --dataset retailrocket --model bpr_mf --loss bpr --epochs 50 \\
        --patience 10 --threshold NDCG@10=0.001 --query-server
    tfjoint pipeline retrieval --dataset movielens-100k --model vbpr --item-features minilm --query-server
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from tfjoint.retrieval.builtin import DATASETS

LOSSES = ("bpr", "softmax", "sampled_softmax")


def add_parser(pipeline_sub: Any) -> None:
    """Adds ``retrieval`` to the ``tfjoint pipeline`` subcommands."""
    from tfjoint.pipeline.retrieval.trainer import DEFAULT_HPARAMS as H

    p = pipeline_sub.add_parser(
        "retrieval",
        help="train, rank-evaluate and push a top-K retrieval model from an interaction log",
        description="ImportExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> Transform "
        "(user and item vocabularies) -> Trainer (epoch chosen on validation NDCG@10) -> RankingEvaluator "
        "(HR/NDCG/Recall/MRR, full ranking and 99 sampled negatives; thresholds judged on validation) -> Pusher.",
    )
    p.add_argument("--dataset", default="retailrocket", choices=DATASETS)
    p.add_argument("--model", default=H["model"], help="a registered retrieval_model (`tfjoint models --slot retrieval_model`)")
    p.add_argument("--loss", default=H["loss"], choices=LOSSES, help="two-tower models only")
    p.add_argument("--embedding-dim", type=int, default=H["embedding_dim"], help="embedding size (hidden_dim of SASRec and MB-STR)")
    p.add_argument("--epochs", type=int, default=H["epochs"])
    p.add_argument("--batch-size", type=int, default=H["batch_size"])
    p.add_argument("--learning-rate", type=float, default=H["learning_rate"])
    p.add_argument("--patience", type=int, default=H["patience"], help="epochs without a better validation score")
    p.add_argument("--item-features", choices=("minilm", "hashed", "metadata", "none"),
                   help="fixed item features of feature models (vbpr): minilm title embeddings (ItemTextEmbeddings "
                   "component; falls back to metadata on movielens-100k, else hashed, without the weights), hashed "
                   "bag of tokens, metadata (movielens-100k genres + year), none (default: minilm for vbpr, else none)")
    p.add_argument("--item-texts", default="", metavar="TSV",
                   help="item_id<TAB>text lines for minilm/hashed features (default: movielens-100k's titles)")
    p.add_argument("--k", type=int, default=H["k"], help="items the served model returns")
    p.add_argument("--seed", type=int, default=H["seed"])
    p.add_argument("--threshold", action="append", default=[], metavar="METRIC=MIN",
                   help="blessing threshold on validation, full ranking (repeatable), e.g. NDCG@10=0.001")
    p.add_argument("--pipeline-root", default="runs/retrieval/pipeline")
    p.add_argument("--serving-dir", default="runs/retrieval/serving")
    p.add_argument("--model-name", help="served model name (default: <dataset>_topk)")
    p.add_argument("--json", help="also write the metrics and paths to this JSON file")
    p.add_argument("--query-server", action="store_true",
                   help="serve the pushed model and query it over gRPC with the official TF Serving stubs")
    p.set_defaults(func=cmd_retrieval)


def check_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The Trainer's hparams; a bad value is one line naming the flag, before any work."""
    from tfjoint import catalog
    from tfjoint.pipeline.retrieval import item_features
    from tfjoint.pipeline.retrieval.evaluator import parse_thresholds

    catalog.get(args.model, slot="retrieval_model")
    features = item_features.check(args.item_features, args.model, args.dataset, args.item_texts)
    for flag in ("embedding_dim", "epochs", "batch_size", "patience", "k"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1. Received: {getattr(args, flag)}")
    if not args.learning_rate > 0:
        raise ValueError(f"--learning-rate must be > 0. Received: {args.learning_rate}")
    parse_thresholds(",".join(args.threshold))
    return {"model": args.model, "loss": args.loss, "embedding_dim": args.embedding_dim, "epochs": args.epochs,
            "batch_size": args.batch_size, "learning_rate": args.learning_rate, "patience": args.patience,
            "k": args.k, "seed": args.seed, "item_features": features}


def query_served_topk(
    pushed_dir: str, model_name: str, user_ids: Sequence[bytes], recent: Sequence[tuple[Any, Any]] | None = None
) -> tuple[Any, Any]:
    """Serves ``pushed_dir`` with ``tfjoint serve``'s server, asks it for the top-K of each
    original user id over gRPC with only the official ``tensorflow_serving.apis`` stubs, and
    returns ``(served ids, in-process ids)``: the second from the SavedModel loaded here.
    ``recent``: per user, ``(recent_items, recent_behaviors)`` to send (sequence models)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from tfjoint.serving.server import serve_in_background

    requests = []
    for n, user_id in enumerate(user_ids):
        ex = tf.train.Example()
        ex.features.feature["user_id"].bytes_list.value.append(user_id)
        if recent is not None:
            ex.features.feature["recent_items"].int64_list.value.extend(int(i) for i in recent[n][0])
            ex.features.feature["recent_behaviors"].int64_list.value.extend(int(b) for b in recent[n][1])
        requests.append(ex.SerializeToString())
    local = tf.saved_model.load(pushed_dir).signatures["serving_default"](examples=tf.constant(requests))
    with serve_in_background(model_name=model_name, model_base_path=os.path.dirname(pushed_dir), port=0,
                             rest_api_port=0, file_system_poll_wait_seconds=0) as server:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = "serving_default"
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(requests, dtype=tf.string))
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.Predict(request, timeout=60)
    served = tf.make_ndarray(response.outputs["top_k_item_ids"])
    return served, local["top_k_item_ids"].numpy()


def cmd_retrieval(args: argparse.Namespace) -> int:
    import numpy as np

    from tfjoint.pipeline.retrieval import item_features
    from tfjoint.pipeline.retrieval.pipeline import run_retrieval_local

    try:
        hparams = check_arguments(args)
    except ValueError as e:
        print(f"tfjoint pipeline retrieval: error: {e}", file=sys.stderr)
        return 2
    name = args.model_name or f"{args.dataset.replace('-', '_')}_topk"
    start = time.time()
    hparams["item_features"], features_line = item_features.resolve(hparams["item_features"], args.dataset)
    print(features_line, flush=True)
    run = run_retrieval_local(dataset=args.dataset, pipeline_root=args.pipeline_root, serving_dir=args.serving_dir,
                              model_name=name, hparams=hparams, thresholds=",".join(args.threshold),
                              item_texts=args.item_texts)
    m = run.metrics
    print(f"\n== {args.dataset} / {args.model}: RankingEvaluator (validation-selected epoch) ==")
    for stage in ("valid", "test"):
        for protocol in ("full", "sampled"):
            r = m[stage][protocol]
            print(f"{stage:>5} {protocol:>7}: HR@10 {r['HR@10']:.4f}  NDCG@10 {r['NDCG@10']:.4f}  "
                  f"MRR {r['MRR']:.4f}  users {r['users']}  ({r['protocol']})")
    print(features_line)
    print(f"held-out events not rankable (user or item in no training event): {m.get('not_rankable', 0)}")
    print(f"\nblessed: {m['blessed']} (thresholds {m['thresholds'] or 'none'}, judged on {m['judged_on']})"
          f"    pipeline time: {time.time() - start:.0f} s")
    if run.pushed_dir is None:
        print(f"not blessed ({m['failed']}), so nothing was pushed", file=sys.stderr)
        return 1
    print(f"pushed SavedModel (TF Serving layout): {run.pushed_dir}")
    if args.query_server:
        users = [line.rstrip(b"\n") for line in open(_vocabulary_file(args.pipeline_root), "rb")][:4]
        recent = recent_events(args.dataset, args.pipeline_root, run.pushed_dir, users)
        served, local = query_served_topk(run.pushed_dir, name, users, recent)
        print(f"\n== gRPC Predict (official TF Serving stubs) on users {[u.decode() for u in users]} ==")
        for user, row in zip(users, served):
            print(f"{user.decode():>10}: " + " ".join(v.decode() for v in row))
        np.testing.assert_array_equal(served, local)
        print("the served top-K equals the in-process SavedModel's; server stopped")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"metrics": m, "item_features": features_line, "pushed_dir": run.pushed_dir, "model_run_dir": run.model_run_dir}, f, indent=1)
    return 0


def _vocabulary_file(pipeline_root: str, name: str = "user_id") -> str:
    """The newest Transform run's ``name`` vocabulary (``user_id`` or ``item_id``)."""
    from tfjoint.pipeline.runners import latest_version

    graph = latest_version(os.path.join(os.path.abspath(pipeline_root), "Transform", "transform_graph", "*"))
    return os.path.join(graph, "transform_fn", "assets", name)


def recent_events(dataset: str, pipeline_root: str, pushed_dir: str, user_ids: Sequence[bytes]) -> list[tuple[Any, Any]] | None:
    """Each user's events (training and validation, time order) of the behaviors a pushed
    multi-behavior sequence model reads, as its ``(recent_items, recent_behaviors)``
    (Transform's item indices); None for a model that names no ``behaviors``."""
    import numpy as np
    import tensorflow as tf

    from tfjoint.retrieval import builtin, history

    loaded = tf.saved_model.load(pushed_dir)
    if not hasattr(loaded, "behaviors"):
        return None
    names = [b.decode() for b in loaded.behaviors.numpy()]
    log = history(builtin.load_split(dataset), "test").sorted()
    items = {line.rstrip(b"\n"): i for i, line in enumerate(open(_vocabulary_file(pipeline_root, "item_id"), "rb"))}
    user_index = {_as_bytes(u if log.user_ids is None else log.user_ids[u]): u for u in range(log.num_users)}
    out = []
    for user_id in user_ids:
        rows = np.flatnonzero(log.users == user_index.get(user_id, -1))
        pairs = [(items.get(_as_bytes(log.items[r] if log.item_ids is None else log.item_ids[log.items[r]])),
                  log.spec.behaviors[log.behaviors[r]]) for r in rows]
        pairs = [(i, names.index(b)) for i, b in pairs if i is not None and b in names]
        out.append((np.array([i for i, _ in pairs], np.int64), np.array([b for _, b in pairs], np.int64)))
    return out


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
