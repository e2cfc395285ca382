import numpy as np

from tfjoint.layers.multi_behavior.behavior_pair_attention import BehaviorPairAttention, relative_position_bucket


def reference(layer, x, beh):
    """A per-position loop over the paper's equations."""
    proj, att, agg, pb = (np.asarray(w) for w in (layer.projections, layer.attention_kernel, layer.aggregation_kernel, layer.position_bias))
    _, length, d = x.shape
    heads, width = proj.shape[3], proj.shape[4]
    out = np.zeros_like(x)
    for b in range(x.shape[0]):
        for h in range(heads):
            q = [x[b, i] @ proj[0, beh[b, i] - 1, :, h] if beh[b, i] else np.zeros(width) for i in range(length)]
            k = [x[b, j] @ proj[1, beh[b, j] - 1, :, h] if beh[b, j] else np.zeros(width) for j in range(length)]
            v = [x[b, j] @ proj[2, beh[b, j] - 1, :, h] if beh[b, j] else np.zeros(width) for j in range(length)]
            for i in range(length):
                if not beh[b, i]:
                    continue
                bi = beh[b, i] - 1
                logits = np.full(length, -1e30)
                for j in range(length):
                    if beh[b, j]:
                        bj = beh[b, j] - 1
                        bucket = relative_position_bucket(np.array(j - i), layer.num_buckets, layer.max_distance)
                        logits[j] = q[i] @ att[bi, bj, h] @ k[j] / np.sqrt(width) + pb[bi, bj, bucket, h]
                a = np.exp(logits - logits.max())
                a /= a.sum()
                g = sum(a[j] * (v[j] @ agg[bi, beh[b, j] - 1, h]) for j in range(length) if beh[b, j])
                out[b, i, h * width : (h + 1) * width] = g
    return out


def test_pair_projected_attention_bias_and_aggregation_match_a_numpy_loop():
    rng = np.random.default_rng(0)
    layer = BehaviorPairAttention(num_behaviors=3, num_heads=2, num_buckets=8, max_distance=6, seed=0)
    x = rng.normal(size=(2, 7, 8)).astype("float32")
    beh = np.array([[0, 0, 1, 2, 3, 1, 2], [3, 3, 1, 2, 2, 1, 3]])
    layer(x, beh)
    for w in (layer.projections, layer.attention_kernel, layer.aggregation_kernel, layer.position_bias):
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.5)
    got = np.asarray(layer(x, beh))
    want = reference(layer, x, beh)
    mask = beh > 0
    np.testing.assert_allclose(got[mask], want[mask], rtol=1e-3, atol=1e-4)


def test_relative_position_bucket_separates_directions_and_is_exact_for_small_distances():
    rel = np.arange(-5, 6)
    buckets = relative_position_bucket(rel, num_buckets=32, max_distance=40)
    # j - i <= 0 go to the lower half exactly (distance), j - i > 0 to the upper half
    assert list(buckets[:6]) == [5, 4, 3, 2, 1, 0]
    assert list(buckets[6:]) == [17, 18, 19, 20, 21]
