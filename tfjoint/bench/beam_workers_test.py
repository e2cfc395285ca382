"""The comparison of two pipeline roots' statistics: feature order is not a difference, a value is."""

from tensorflow_metadata.proto.v0 import statistics_pb2

from tfjoint.bench.beam_workers import canonical


def _stats(order, mean_of_b=2.0):
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add()
    for name in order:
        feature = dataset.features.add()
        feature.path.step.append(name)
        feature.num_stats.mean = {"a": 1.0, "b": mean_of_b}[name]
        quantiles = feature.num_stats.histograms.add()
        quantiles.type = quantiles.QUANTILES
        quantiles.buckets.add(low_value=0.0, high_value=mean_of_b if name == "b" else 1.0)
    return stats


def test_feature_order_is_not_a_difference():
    assert _stats("ab") != _stats("ba")
    assert canonical(_stats("ab")) == canonical(_stats("ba"))
    assert canonical(_stats("ab"), quantiles=False) == canonical(_stats("ba"), quantiles=False)


def test_a_value_is_a_difference_and_quantile_sketches_can_be_left_out():
    assert canonical(_stats("ab")) != canonical(_stats("ba", mean_of_b=3.0))
    only_sketch = _stats("ab")
    only_sketch.datasets[0].features[1].num_stats.histograms[0].buckets[0].high_value = 9.0
    assert canonical(_stats("ab"), quantiles=False) == canonical(only_sketch, quantiles=False)
    assert canonical(_stats("ab")) != canonical(only_sketch)
    canonical(only_sketch, quantiles=False)
    assert only_sketch.datasets[0].features[1].num_stats.histograms  # the input is not modified
