"""``tfjoint bench ...``: the benchmark commands.

::

    tfjoint bench mtl --dataset movielens-100k [--seeds 3] [--epochs 1] [--train-rows 40000]
    tfjoint bench msr --dataset movielens-100k [--models star hamur ...] [--seeds 3] [--epochs 2]
    tfjoint bench topk --dataset retailrocket [--models item_pop bpr_mf ...] [--seeds 3]
    tfjoint bench joint --dataset movielens-100k [--configs full no_behavior ...] [--seeds 3] [--plot PNG]
    tfjoint bench mbr --dataset synthetic [--models nmtr bpr_mf ...] [--seeds 3] [--signals 1 0]
        [--epochs 20] [--patience 5]
    tfjoint bench mmr --dataset synthetic [--models vbpr nova mmmlp freedom bm3 bm3_infonce bpr_mf sasrec lightgcn bm3_ids item_pop] [--seeds 3] [--signals 1 0]
    tfjoint bench mtl-synthetic [--quick] [--seeds 3] [--correlations 1 0.9 0.5 0]
        [--architectures shared_bottom omoe mmoe ple] [--epochs 6]
        [--output runs/bench/mtl_synthetic.png] [--json results.json] [--no-selection-bias]
    tfjoint bench serve [--model-base-path DIR] [--clients 4] [--seconds 5] [--max-requests 2000]
    tfjoint bench train [--rows 50000] [--repeats 1] [--architectures mmoe ple esmm]
        [--variants default peer] [--optimizers adam lazy_adam] [--precisions float32 mixed_bfloat16] [--json FILE]
    tfjoint bench serve-faults [--clients 4] [--rest-clients 2] [--requests-per-step 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

DEFAULT_PNG = "runs/bench/mtl_synthetic.png"


def _add_retrieval_args(
    parser: argparse.ArgumentParser, dataset: str, models_help: str, datasets: tuple[str, ...] | None = None
) -> None:
    """``--dataset`` (a built-in interaction dataset, or one of ``datasets``), ``--models``,
    ``--seeds``, ``--json``."""
    from tfjoint.retrieval.builtin import DATASETS

    parser.add_argument("--dataset", default=dataset, choices=datasets or DATASETS)
    parser.add_argument("--models", nargs="+", help=models_help)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", help="write the results to this JSON file")


def _write_json(destination: str | None, results: Any) -> None:
    """Writes ``results`` to ``destination`` (``--json``) when one was given."""
    if not destination:
        return
    path = pathlib.Path(destination)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    print(f"results: {path}")


def _mtl_synthetic_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``run_mtl_synthetic`` arguments: the quick or default sizing, then explicit flags."""
    from tfjoint.bench import mtl_synthetic

    kwargs = dict(mtl_synthetic.QUICK if args.quick else mtl_synthetic.DEFAULTS)
    for key in ("seeds", "correlations", "architectures", "epochs", "n_train", "n_eval", "scale", "sinusoid_seed"):
        value = getattr(args, key)
        if value is not None:
            kwargs[key] = value
    kwargs["selection_bias"] = args.selection_bias
    kwargs["output_png"] = args.output
    return kwargs


def cmd_mtl_synthetic(args: argparse.Namespace) -> int:
    from tfjoint.bench.mtl_synthetic import run_mtl_synthetic

    results = run_mtl_synthetic(**_mtl_synthetic_kwargs(args), verbose=True)
    _write_json(args.json, results)
    return 0


def cmd_mtl(args: argparse.Namespace) -> int:
    from tfjoint.bench.mtl_movielens import format_report, run_mtl

    report = run_mtl(
        dataset=args.dataset,
        architectures=args.architectures,
        balancers=args.balancers,
        seeds=args.seeds,
        epochs=args.epochs,
        train_rows=args.train_rows,
        sequence_encoders=args.sequence_encoders or (),
    )
    print(format_report(report))
    _write_json(args.json, report)
    return 0


def cmd_msr(args: argparse.Namespace) -> int:
    from tfjoint.bench.msr import format_report, run_msr

    report = run_msr(
        dataset=args.dataset,
        models=args.models,
        seeds=args.seeds,
        epochs=args.epochs,
        train_rows=args.train_rows,
        base_architecture=args.base_architecture,
    )
    print(format_report(report))
    _write_json(args.json, report)
    return 0


def cmd_topk(args: argparse.Namespace) -> int:
    from tfjoint.bench.topk import format_report, run_topk

    report = run_topk(dataset=args.dataset, models=args.models, seeds=args.seeds)
    print(format_report(report))
    _write_json(args.json, report)
    return 0


def cmd_joint(args: argparse.Namespace) -> int:
    from tfjoint.bench.joint import FULL, format_report, plot_heatmap, run_joint

    full = {slot: getattr(args, slot) for slot in FULL}
    full = {slot: None if value in ("none", "") else value for slot, value in full.items()}
    report = run_joint(dataset=args.dataset, configs=args.configs, full=full, seeds=args.seeds,
                       epochs=args.epochs, train_rows=args.train_rows)
    print(format_report(report))
    if args.plot and {"full", "shared_bottom"} <= set(report["results"]):
        print(f"heatmap: {plot_heatmap(report, args.plot)}")
    _write_json(args.json, report)
    return 0


def cmd_mbr(args: argparse.Namespace) -> int:
    from tfjoint.bench.mbr import format_report, run_mbr

    report = run_mbr(
        dataset=args.dataset, models=args.models, seeds=args.seeds, signals=args.signals,
        epochs=args.epochs, patience=args.patience,
    )
    print(format_report(report))
    _write_json(args.json, report)
    return 0


def cmd_mmr(args: argparse.Namespace) -> int:
    from tfjoint.bench.mmr import format_report, run_mmr

    report = run_mmr(dataset=args.dataset, models=args.models, seeds=args.seeds, signals=args.signals)
    print(format_report(report))
    _write_json(args.json, report)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import sys

    from tfjoint.bench.serve import format_table, run_serve_bench

    try:
        results = run_serve_bench(
            model_base_path=args.model_base_path,
            model_name=args.model_name,
            examples=args.examples,
            clients=args.clients,
            seconds=args.seconds,
            max_requests=args.max_requests,
            rest=args.rest,
            verbose=True,
        )
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    _write_json(args.json, results)
    return 0


def cmd_serve_faults(args: argparse.Namespace) -> int:
    from tfjoint.bench.serve_faults import format_report, passed, run_serve_faults

    results = run_serve_faults(clients=args.clients, rest_clients=args.rest_clients,
                               requests_per_step=args.requests_per_step, poll_seconds=args.poll_seconds,
                               step_timeout=args.step_timeout)
    print(format_report(results))
    _write_json(args.json, results)
    return 0 if passed(results) else 1


def cmd_train(args: argparse.Namespace) -> int:
    from tfjoint.bench.train import Workload, format_report, run_train_bench

    workload = Workload(rows=args.rows, batch_size=args.batch_size, repeats=args.repeats,
                        min_vocab=args.min_vocab, max_vocab=args.max_vocab)
    report = run_train_bench(workload, args.architectures, args.variants, args.optimizers, verbose=True,
                             precisions=args.precisions)
    print(format_report(report))
    _write_json(args.json, report)
    return 0


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``bench`` and its commands to the ``tfjoint`` sub-parsers; returns ``bench``."""
    bench = subparsers.add_parser("bench", help="run a benchmark that reproduces a published experiment")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)

    mtl = bench_sub.add_parser(
        "mtl-synthetic",
        help="MMoE's synthetic task-correlation experiment and ESMM's selection bias",
        description="Trains every task architecture on the MMoE paper's synthetic two-task "
        "regression at several task correlations (same budget for all), then compares the "
        "pCVR bias of ESMM and naive CVR models on unclicked impressions. The default run "
        "takes about 6 minutes on 2 CPU cores; --quick takes under two.",
    )
    mtl.add_argument("--quick", action="store_true", help="a tiny version (1 seed, 2 correlations, 1 epoch)")
    mtl.add_argument("--seeds", type=int, help="number of seeds (default: 3)")
    mtl.add_argument("--correlations", type=float, nargs="+", help="task correlations (default: 1 0.9 0.5 0)")
    mtl.add_argument(
        "--architectures",
        nargs="+",
        help="registered task architectures (default: shared_bottom omoe mmoe ple)",
    )
    mtl.add_argument(
        "--epochs", type=int, help="epochs of every fit of the correlation experiment (default: 6)"
    )
    mtl.add_argument("--n-train", dest="n_train", type=int, help="training rows per correlation and seed")
    mtl.add_argument("--n-eval", dest="n_eval", type=int, help="eval rows per correlation and seed")
    mtl.add_argument("--scale", type=float, help="the generator's scale c of the task weight vectors (default: 1)")
    mtl.add_argument(
        "--sinusoid-seed",
        dest="sinusoid_seed",
        type=int,
        help="draw the sinusoids' alpha, beta once from this seed for every run (default: per seed)",
    )
    mtl.add_argument("--output", default=DEFAULT_PNG, help=f"figure (PNG) to write (default: {DEFAULT_PNG})")
    mtl.add_argument("--json", help="also write the results to this JSON file")
    mtl.add_argument(
        "--no-selection-bias",
        dest="selection_bias",
        action="store_false",
        help="skip the ESMM selection-bias experiment",
    )
    mtl.set_defaults(func=cmd_mtl_synthetic)
    from tfjoint.bench.mtl_movielens import DEFAULTS as MTL

    mtl_real = bench_sub.add_parser(
        "mtl",
        help="every task architecture and balancer on a real joint dataset, one identical budget",
        description="Trains every registered task architecture (fixed weights) and every balancer "
        "(on MMoE) with the same epochs, rows, batch and optimizer; prints per-task AUC/RMSE mean +- "
        "std over seeds and training examples per second.",
    )
    mtl_real.add_argument("--dataset", default="movielens-100k", choices=["movielens-100k", "synthetic"])
    mtl_real.add_argument("--architectures", nargs="+", help="default: every registered task architecture")
    mtl_real.add_argument("--balancers", nargs="+", help="default: every registered balancer")
    mtl_real.add_argument("--seeds", type=int, default=MTL["seeds"])
    mtl_real.add_argument("--epochs", type=int, default=MTL["epochs"])
    mtl_real.add_argument("--train-rows", type=int, default=MTL["train_rows"])
    mtl_real.add_argument("--sequence-encoders", nargs="+",
                          help="also compare these sequence encoders (E^B) on MMoE with fixed weights")
    mtl_real.add_argument("--json", help="write the results to this JSON file")
    mtl_real.set_defaults(func=cmd_mtl)
    from tfjoint.bench.msr import DEFAULTS as MSR
    from tfjoint.features import DATASETS

    msr = bench_sub.add_parser(
        "msr",
        help="every multi-scenario model vs one shared and one-per-scenario models, per scenario and task",
        description="Trains every scenario adapter (under --base-architecture) and every scenario-aware "
        "task architecture with one identical budget beside two baselines (one shared model; one model "
        "per scenario); prints per-scenario by per-task AUC/RMSE mean +- std over seeds and marks cells "
        "better/worse than the shared model and the seesaw. --dataset synthetic adds the error against "
        "the true click probability in the scenario with a known shift.",
    )
    msr.add_argument(
        "--dataset", default="movielens-100k",
        choices=sorted(name for name, spec in DATASETS.items() if spec.num_scenarios > 1),
    )
    msr.add_argument("--models", nargs="+", help="default: every scenario adapter and scenario-aware architecture")
    msr.add_argument("--seeds", type=int, default=MSR["seeds"])
    msr.add_argument("--epochs", type=int, default=MSR["epochs"])
    msr.add_argument(
        "--train-rows",
        type=int,
        help=f"training rows (default: {MSR['train_rows']}; every training row on synthetic)",
    )
    msr.add_argument("--base-architecture", default=MSR["base_architecture"],
                     help="task architecture under the scenario adapters and of the baselines")
    msr.add_argument("--json", help="write the results to this JSON file")
    msr.set_defaults(func=cmd_msr)

    topk = bench_sub.add_parser(
        "topk",
        help="every retrieval baseline, full ranking and 99 sampled negatives, validation-selected",
        description="Fits every registered retrieval model on a leave-one-out split with one "
        "budget per model, keeps the epoch with the best validation NDCG@10 (full ranking) and "
        "reports its test HR@10, NDCG@10 and MRR under full ranking and against 99 sampled "
        "negatives, mean +- std over seeds, with the wall time of each fit.",
    )
    _add_retrieval_args(topk, "retailrocket", "default: every registered retrieval model but the multi-modal ones (bench mmr)")
    topk.set_defaults(func=cmd_topk)

    from tfjoint.bench import joint as JOINT

    joint = bench_sub.add_parser(
        "joint",
        help="the joint model across the four families, minus each family in turn, and a shared-bottom baseline",
        description="Trains the full joint model (E^B, E^M, scenario adapter, task architecture, balancer), "
        "the full model minus each family in turn, one single-task model per task, and a plain shared-bottom "
        "model, with one budget and several seeds; reports every task overall and per scenario, mean +- std, "
        "marked where it differs from the full model by more than two standard errors, and draws the full "
        "model's gain over shared-bottom per scenario and task.",
    )
    joint.add_argument("--dataset", default="movielens-100k", choices=JOINT.DATASETS)
    joint.add_argument("--configs", nargs="+", choices=list(JOINT.ABLATIONS), help="default: all")
    for slot, default in JOINT.FULL.items():
        joint.add_argument(f"--{slot.replace('_', '-')}", dest=slot, default=default,
                           help=f"the full model's {slot} (default: {default}; 'none' leaves an optional slot empty)")
    joint.add_argument("--seeds", type=int, default=MSR["seeds"])
    joint.add_argument("--epochs", type=int, default=MSR["epochs"])
    joint.add_argument("--train-rows", type=int, default=MSR["train_rows"])
    joint.add_argument("--plot", default="runs/bench/joint_heatmap.png", help="heatmap PNG ('' for none)")
    joint.add_argument("--json", help="write the results to this JSON file")
    joint.set_defaults(func=cmd_joint)

    mbr = bench_sub.add_parser(
        "mbr",
        help="multi-behavior models against their single-behavior counterparts, per signal",
        description="Fits every multi-behavior retrieval model and its single-behavior counterpart "
        "(NMTR: BPR-MF; MBGCN, CML: LightGCN; MB-STR: SASRec) with the topk bench's budget, "
        "validation-selected, and reports test HR@10 and NDCG@10 under full ranking and 99 sampled "
        "negatives, mean +- std over seeds, log events per second, and each model's HR@10 gap to its "
        "counterpart in standard errors. On synthetic data it runs once per --signals value.",
    )
    _add_retrieval_args(mbr, "synthetic", "default: every multi-behavior model and its counterpart")
    mbr.add_argument("--signals", nargs="+", type=float, default=[1.0, 0.0],
                     help="synthetic only: signal of the auxiliary behaviors about the target, in [0, 1]")
    mbr.add_argument("--epochs", type=int, help="replaces the budget's epochs of every model trained by epochs")
    mbr.add_argument("--patience", type=int, help="replaces the budget's patience of every model trained by epochs")
    mbr.set_defaults(func=cmd_mbr)

    from tfjoint.retrieval.cold_start import DATASETS as MMR_DATASETS

    mmr = bench_sub.add_parser(
        "mmr",
        help="multi-modal retrieval (VBPR, NOVA, MMMLP, FREEDOM, BM3) against their id-only counterparts (BPR-MF, SASRec, LightGCN) and ItemPop "
        "on warm and on cold items, per signal",
        description="Holds a set of items out of training entirely (cold items), fits every multi-modal "
        "retrieval model with the item features, its id-only counterpart and ItemPop on the rest, validation-selected on warm "
        "items, and reports test HR@10 and NDCG@10 on warm items (ranked among warm items) and on cold items "
        "(ranked among cold items), mean +- std over seeds. On synthetic data it runs once per --signals value.",
    )
    _add_retrieval_args(mmr, "synthetic", "default: every multi-modal model, its id-only counterpart (bpr_mf, sasrec, lightgcn) and item_pop; "
                       "bm3_infonce: bm3 with the InfoNCE alignment; bm3_ids: bm3 without modalities (its id-only counterpart)", MMR_DATASETS)
    mmr.add_argument("--signals", nargs="+", type=float, default=[1.0, 0.0],
                     help="synthetic only: how much of the preference signal the item features carry, in [0, 1]")
    mmr.set_defaults(func=cmd_mmr)
    from tfjoint.bench import serve as SERVE

    serve = bench_sub.add_parser(
        "serve",
        help="closed-loop load on the model server (gRPC, gRPC+batching, REST) vs in-process inference",
        description="For request batch sizes 1 and 64, N concurrent clients on 127.0.0.1 each send their "
        "next request as soon as the previous returns, against in-process serving_default calls, the "
        "gRPC server without and with server-side batching, and REST; every loop is bounded by "
        "--seconds and --max-requests. Prints requests/s, examples/s, p50/p95/p99 latency and the "
        "ratio to in-process throughput.",
    )
    serve.add_argument(
        "--model-base-path", default=SERVE.DEFAULT_MODEL_BASE_PATH, help="pushed model base path"
    )
    serve.add_argument("--model-name", default=SERVE.DEFAULT_MODEL_NAME)
    serve.add_argument(
        "--examples", default=SERVE.DEFAULT_EXAMPLES, help="TFRecord of serialized tf.Examples"
    )
    serve.add_argument("--clients", type=int, default=4, help="concurrent closed-loop clients")
    serve.add_argument("--seconds", type=float, default=5.0, help="time limit of each cell")
    serve.add_argument("--max-requests", type=int, default=2000, help="request limit of each cell")
    serve.add_argument("--no-rest", dest="rest", action="store_false", help="skip the REST row")
    serve.add_argument("--json", help="write the results to this JSON file")
    serve.set_defaults(func=cmd_serve)
    from tfjoint.bench import serve_faults as FAULTS

    from tfjoint.bench import train

    speed = bench_sub.add_parser(
        "train",
        help="training examples/s of MMoE, PLE and ESMM on an AliExpress-shaped workload, with FLOPs and matmul peak",
        description="Trains MMoE, PLE and ESMM, each as build_joint_model's default and as the peer-shaped "
        "model (raw numerics, no scenario field, BatchNorm), with Adam and with row-wise LazyAdam (and, with "
        "--precisions, under a mixed-precision policy), interleaved, "
        "on a synthetic AliExpress-shaped workload; prints examples/s, FLOPs per example, the fp32 matmul rate "
        "measured in the same run and the fraction of it reached, and the input pipeline alone. The default "
        "run takes 2 to 3 minutes on 2 idle CPU cores.",
    )
    defaults = train.Workload()
    speed.add_argument("--rows", type=int, default=defaults.rows, help=f"training rows (default: {defaults.rows})")
    speed.add_argument("--batch-size", type=int, default=defaults.batch_size)
    speed.add_argument("--repeats", type=int, default=defaults.repeats, help="timed epochs per model, interleaved")
    speed.add_argument("--min-vocab", type=int, default=defaults.min_vocab)
    speed.add_argument("--max-vocab", type=int, default=defaults.max_vocab)
    speed.add_argument("--architectures", nargs="+", default=list(train.ARCHITECTURES), choices=list(train.ARCHITECTURES))
    speed.add_argument("--variants", nargs="+", default=list(train.VARIANTS), choices=list(train.VARIANTS))
    speed.add_argument("--optimizers", nargs="+", default=list(train.OPTIMIZERS), choices=list(train.OPTIMIZERS))
    speed.add_argument("--precisions", "--precision", nargs="+", default=["float32"], choices=list(train.PRECISIONS),
                       help="dtype policies each model is built with (default: float32); e.g. float32 mixed_bfloat16")
    speed.add_argument("--json", help="also write the results to this JSON file")
    speed.set_defaults(func=cmd_train)

    faults = bench_sub.add_parser(
        "serve-faults",
        help="closed-loop load on the model server while versions are pushed, copied half way, rolled back "
        "and reloaded; counts failed requests",
        description="Serves a small toy model on 127.0.0.1 to closed-loop gRPC and REST Predict "
        "clients while a script pushes v2, copies v3 half way (saved_model.pb before variables/) and "
        "then completes it, deletes v3 (rollback), reloads the config pinned to v1 and back to latest, "
        "and finally deletes every version. Prints the requests sent, the failures (with reasons) "
        "while a complete version existed and after the last one was deleted, and the requests each "
        "version answered. Exit 1 if any request failed while a complete version existed or a step "
        "did not reach its version in time.",
    )
    faults.add_argument("--clients", type=int, default=FAULTS.DEFAULT_CLIENTS,
                        help="closed-loop gRPC clients")
    faults.add_argument("--rest-clients", type=int, default=FAULTS.DEFAULT_REST_CLIENTS,
                        help="closed-loop REST clients besides them")
    faults.add_argument("--requests-per-step", type=int, default=FAULTS.DEFAULT_REQUESTS_PER_STEP,
                        help="requests sent after each step reached its expected version")
    faults.add_argument("--poll-seconds", type=float, default=FAULTS.DEFAULT_POLL_SECONDS,
                        help="the server's --file_system_poll_wait_seconds (and load retry interval)")
    faults.add_argument("--step-timeout", type=float, default=FAULTS.DEFAULT_STEP_TIMEOUT_S,
                        help="seconds a step may take to reach its expected version")
    faults.add_argument("--json", help="write the results to this JSON file")
    faults.set_defaults(func=cmd_serve_faults)
    return bench
