"""Did two Beam workers give the output of one? And what did each component cost? (issue 18)

::

    tfjoint pipeline run --dataset movielens-100k --beam-workers 1 --pipeline-root runs/w1 > runs/w1.log
    tfjoint pipeline run --dataset movielens-100k --beam-workers 2 --pipeline-root runs/w2 > runs/w2.log
    python -m tfjoint.bench.beam_workers runs/w1 runs/w2 --logs runs/w1.log runs/w2.log

Compares, between the two pipeline roots:

- Transform's vocabularies (every asset file of the transform graph), byte for byte;
- the transformed examples (ImportExampleGen's records through each run's transform graph,
  as its Trainer sees them; workers may write them in another order and into other shards): ids
  equal, floats within 1e-5 (means and variances summed in another order may differ in the
  last float32 bits), and bit-identity reported apart;
- StatisticsGen's statistics (TFDV) of every split: every feature's counts, means, standard
  deviations, top values and histograms, as protos (the quantile histograms are approximate
  sketches: they are reported apart, since a different merge order may move a boundary);

and prints each component's wall and CPU seconds from the two runs' logs.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

from tfjoint.bench.cost import component_seconds, newest


def _newest(root: str, *parts: str) -> str:
    return newest(os.path.join(root, *parts))


def vocabularies(root: str) -> dict[str, bytes]:
    folder = os.path.join(_newest(root, "Transform", "transform_graph", "*"), "transform_fn", "assets")
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def transformed_rows(root: str) -> dict[str, list[tuple]]:
    """Per split, every ImportExampleGen record through the run's transform graph (what its
    Trainer trains on: Transform writes no transformed examples) as ``((feature, values),
    ...)``, sorted by its ids and its floats rounded to 3 decimals (workers may write another
    order, other shards)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(_newest(root, "Transform", "transform_graph", "*"))
    layer, raw_spec = output.transform_features_layer(), output.raw_feature_spec()
    base = _newest(root, "ImportExampleGen", "examples", "*")
    out = {}
    for split_dir in sorted(glob.glob(os.path.join(base, "Split-*"))):
        files = sorted(glob.glob(os.path.join(split_dir, "*")))
        data = tf.data.TFRecordDataset(files, compression_type="GZIP" if files[0].endswith(".gz") else None)
        rows = []
        for batch in data.batch(4096):
            columns = {k: v.numpy() for k, v in layer(tf.io.parse_example(batch, raw_spec)).items()}
            rows += [tuple((k, tuple(columns[k][i].reshape(-1).tolist())) for k in sorted(columns))
                     for i in range(int(batch.shape[0]))]
        out[os.path.basename(split_dir)] = sorted(
            rows, key=lambda row: tuple((k, tuple(round(v, 3) if isinstance(v, float) else v for v in vs)) for k, vs in row))
    return out


def same_rows(a: dict[str, list[tuple]], b: dict[str, list[tuple]], atol: float = 1e-5) -> bool:
    """Equal ids and bytes, floats within ``atol`` (float32 sums in another order differ by ~1e-7)."""
    if a.keys() != b.keys() or any(len(a[k]) != len(b[k]) for k in a):
        return False
    for split in a:
        for row_a, row_b in zip(a[split], b[split]):
            for (ka, va), (kb, vb) in zip(row_a, row_b):
                if ka != kb or len(va) != len(vb):
                    return False
                if any(x != y if not isinstance(x, float) else abs(x - y) > atol for x, y in zip(va, vb)):
                    return False
    return True


def statistics(root: str) -> dict[str, object]:
    import tensorflow_data_validation as tfdv

    base = _newest(root, "StatisticsGen", "statistics", "*")
    return {os.path.basename(d): tfdv.load_stats_binary(os.path.join(d, "FeatureStats.pb"))
            for d in sorted(glob.glob(os.path.join(base, "Split-*")))}


def canonical(stats, quantiles: bool = True):
    """A copy of ``stats`` with every dataset's features in path order (workers may emit them
    in another order), and without the approximate quantile histograms unless ``quantiles``."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    copy = statistics_pb2.DatasetFeatureStatisticsList()
    copy.CopyFrom(stats)
    for dataset in copy.datasets:
        features = sorted(dataset.features, key=lambda f: (tuple(f.path.step), f.name))
        kept = []
        for feature in features:
            feature = type(feature).FromString(feature.SerializeToString())
            if not quantiles:
                for common in (feature.num_stats.common_stats, feature.string_stats.common_stats):
                    for name in ("num_values_histogram", "feature_list_length_histogram"):
                        common.ClearField(name)
                histograms = [h for h in feature.num_stats.histograms if h.type != h.QUANTILES]
                del feature.num_stats.histograms[:]
                feature.num_stats.histograms.extend(histograms)
            kept.append(feature)
        del dataset.features[:]
        dataset.features.extend(kept)
    return copy


def compare(root_a: str, root_b: str) -> dict[str, bool]:
    """``{check: equal}`` for the checks of the module docstring."""
    result = {"vocabularies": vocabularies(root_a) == vocabularies(root_b)}
    rows_a, rows_b = transformed_rows(root_a), transformed_rows(root_b)
    result["transformed examples (floats within 1e-5)"] = same_rows(rows_a, rows_b)
    result["transformed examples (bit-identical)"] = rows_a == rows_b
    stats_a, stats_b = statistics(root_a), statistics(root_b)
    same_splits = stats_a.keys() == stats_b.keys()
    for label, quantiles in (("all but quantile sketches", False), ("with quantile sketches", True)):
        result[f"statistics ({label})"] = same_splits and all(
            canonical(stats_a[k], quantiles) == canonical(stats_b[k], quantiles) for k in stats_a)
    return result


def timing_table(logs: dict[str, str]) -> str:
    runs = {name: component_seconds(open(path).read()) for name, path in logs.items()}
    components = [c for c in next(iter(runs.values()))]
    lines = ["| component | " + " | ".join(f"{n} wall s | {n} CPU s" for n in runs) + " |",
             "|---|" + "---|---|" * len(runs)]
    for c in components:
        cells = [f"{runs[n].get(c, ('-', '-'))[0]} | {runs[n].get(c, ('-', '-'))[1]}" for n in runs]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root_a")
    parser.add_argument("root_b")
    parser.add_argument("--logs", nargs=2, metavar=("LOG_A", "LOG_B"), help="the two runs' output, for the timing table")
    args = parser.parse_args(argv)
    result = compare(args.root_a, args.root_b)
    for check, equal in result.items():
        print(f"{check}: {'equal' if equal else 'DIFFER'}")
    if args.logs:
        print(timing_table({os.path.basename(args.root_a): args.logs[0], os.path.basename(args.root_b): args.logs[1]}))
    exact = [k for k in result if "with quantile" not in k and "bit-identical" not in k]
    return 0 if all(result[k] for k in exact) else 1


if __name__ == "__main__":
    sys.exit(main())
