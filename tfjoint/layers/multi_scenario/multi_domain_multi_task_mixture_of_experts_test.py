import keras
import numpy as np
import pytest
import tensorflow as tf

from tfjoint.features import MOVIELENS_100K
from tfjoint.testing import fake_vocab_sizes

SIZES = fake_vocab_sizes(MOVIELENS_100K)
from tfjoint.layers.multi_scenario.multi_domain_multi_task_mixture_of_experts import MultiDomainMultiTaskMixtureOfExperts
from tfjoint.testing import (
    check_joint_model,
    numpy_mlp,
    randomize_weights,
    run_layer_test,
    scenario_batch,
    sigmoid,
    softmax,
)

P, D, TASKS = 3, 5, ["click", "like"]
KWARGS = {
    "task_names": TASKS,
    "num_scenarios": P,
    "representation_units": 4,
    "num_shared_experts": 2,
    "expert_units": [3],
    "tower_units": [2],
}


def batch(n=12, seed=0):
    return scenario_batch(n, D, P, seed)  # ids 0..2 known, 3 unknown


def built(seed=1, **overrides):
    kwargs = {**KWARGS, **overrides}
    x, s = batch()
    layer = MultiDomainMultiTaskMixtureOfExperts(**kwargs)
    layer.build([x.shape, s.shape])
    randomize_weights(layer.trainable_weights, seed, scale=0.7)
    return layer


def logit(p):
    return np.log(p / (1.0 - p)).astype("float32")


def numpy_paths(layer, x, s, alpha_domain, alpha_task, beta_domain, beta_task):
    """From the paper's equations, per row and per known domain d:
    h_{t,d} = S_{t,d}(h) + alpha_d T_t(h) + alpha_t D_d(h) and y_{t,d} = tower_{t,d}(h_{t,d}),
    with h the row's own f_DR (W_sh, b_sh alone for an unknown id).

    Returns ({task: (n, P, e)}, {task: (n, P, u)}).
    """
    k, p = len(layer.task_names), layer.num_scenarios
    w_sh, b_sh = layer.shared_kernel.numpy(), layer.shared_bias.numpy()
    w_d, b_d = layer.domain_kernel.numpy(), layer.domain_bias.numpy()
    fused = {t: [] for t in layer.task_names}
    outputs = {t: [] for t in layer.task_names}
    for row, d in zip(x, s[:, 0]):
        h = row @ (w_d[d] * w_sh) + b_d[d] + b_sh if 0 <= d < p else row @ w_sh + b_sh
        shared = np.stack([numpy_mlp(e, h) for e in layer.shared_experts])
        domain = [numpy_mlp(e, h) for e in layer.domain_experts]
        task = [numpy_mlp(layer.task_experts[t], h) for t in layer.task_names]
        d_views = [
            domain[j]
            if p == 1
            else beta_domain[j] * domain[j]
            + (1 - beta_domain[j]) * sum(domain[m] for m in range(p) if m != j) / (p - 1)
            for j in range(p)
        ]
        for i, t in enumerate(layer.task_names):
            others = sum(task[m] for m in range(k) if m != i) / (k - 1) if k > 1 else 0.0
            t_view = beta_task[i] * task[i] + (1 - beta_task[i]) * others if k > 1 else task[i]
            row_fused = []
            for j in range(p):
                gate = layer.gates[f"{t}_domain_{j}"]
                g = softmax(h @ gate.kernel.numpy() + gate.bias.numpy())
                row_fused.append(g @ shared + alpha_domain[j] * t_view + alpha_task[i] * d_views[j])
            fused[t].append(np.stack(row_fused))
            towers = [numpy_mlp(layer.towers[f"{t}_domain_{j}"], row_fused[j]) for j in range(p)]
            outputs[t].append(np.stack(towers))
    return (
        {t: np.stack(v) for t, v in fused.items()},
        {t: np.stack(v) for t, v in outputs.items()},
    )


def test_shared_layer_checks():
    x, s = batch()
    run_layer_test(
        MultiDomainMultiTaskMixtureOfExperts,
        KWARGS,
        {"inputs": x, "scenario": s},
        registered_name="tfjoint>MultiDomainMultiTaskMixtureOfExperts",
        expected_output_shape={"click": (12, 2), "like": (12, 2)},
    )


def test_domain_representation_kernel_is_the_elementwise_product():
    layer = built()
    w_hat, b_hat = (np.asarray(v) for v in layer.domain_representation_weights())
    w_sh, b_sh = layer.shared_kernel.numpy(), layer.shared_bias.numpy()
    for d in range(P):
        np.testing.assert_array_equal(w_hat[d], layer.domain_kernel.numpy()[d] * w_sh)
        np.testing.assert_array_equal(b_hat[d], layer.domain_bias.numpy()[d] + b_sh)
    np.testing.assert_array_equal(w_hat[P], w_sh)  # unknown domain: the shared layer alone
    np.testing.assert_array_equal(b_hat[P], b_sh)


def test_no_parameter_is_reserved_for_the_unknown_domain():
    layer = built()
    names = [f"domain_{d}" for d in range(P)]
    assert sorted(layer.gates) == sorted(f"{t}_{n}" for t in TASKS for n in names)
    assert sorted(layer.towers) == sorted(layer.gates)
    assert tuple(layer.domain_alpha_logits.shape) == (P,)
    assert not any(w.path.endswith("_shared") or "_shared/" in w.path for w in layer.weights)


def test_fusion_equals_shared_plus_alpha_task_plus_alpha_domain_on_hand_set_weights():
    layer = built()
    alpha_domain = np.array([0.2, 0.5, 0.9], "float32")  # one per known domain
    alpha_task = np.array([0.7, 0.1], "float32")
    beta_domain = np.array([0.6, 0.8, 0.3], "float32")
    beta_task = np.array([0.25, 0.9], "float32")
    layer.domain_alpha_logits.assign(logit(alpha_domain))
    layer.task_alpha_logits.assign(logit(alpha_task))
    layer.domain_balance_logits.assign(logit(beta_domain))
    layer.task_balance_logits.assign(logit(beta_task))
    x, s = batch()
    known = s[:, 0] < P
    rows = np.arange(len(s))[known]
    fused_np, towers_np = numpy_paths(layer, x, s, alpha_domain, alpha_task, beta_domain, beta_task)
    fused, _, mixture = layer._fuse(x, s, training=False)
    out = layer([x, s], training=False)
    expected_mixture = np.where(known[:, None], np.eye(P)[np.minimum(s[:, 0], P - 1)], 1.0 / P)
    np.testing.assert_allclose(np.asarray(mixture), expected_mixture, rtol=1e-6)
    for t in TASKS:
        # Each known row's own domain fusion; an unknown row's fusions for every known domain.
        own = np.asarray(fused[t])[rows, s[known, 0]]
        np.testing.assert_allclose(own, fused_np[t][rows, s[known, 0]], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(fused[t])[~known], fused_np[t][~known], rtol=1e-4, atol=1e-5)
        expected = np.einsum("bd,bdu->bu", expected_mixture, towers_np[t])
        np.testing.assert_allclose(np.asarray(out[t]), expected, rtol=1e-4, atol=1e-5)


def test_view_weights_mix_own_and_other_experts():
    layer = built()
    layer.domain_balance_logits.assign(logit(np.array([0.6, 0.8, 0.3], "float32")))
    expected = np.array([[0.6, 0.2, 0.2], [0.1, 0.8, 0.1], [0.35, 0.35, 0.3]])
    np.testing.assert_allclose(np.asarray(layer.domain_view_weights()), expected, rtol=1e-5)
    layer.task_balance_logits.assign(logit(np.array([0.25, 0.9], "float32")))
    np.testing.assert_allclose(np.asarray(layer.task_view_weights()), [[0.25, 0.75], [0.1, 0.9]], rtol=1e-5)


def test_changing_one_domains_tower_changes_only_that_domains_rows():
    layer = built()
    x, s = batch()
    before = {t: np.asarray(v) for t, v in layer([x, s]).items()}
    kernel = layer.towers["click_domain_1"].dense_layers[0].kernel
    kernel.assign(kernel.numpy() + 1.0)
    after = {t: np.asarray(v) for t, v in layer([x, s]).items()}
    # Domain 1's rows, and the unknown domain's rows, which average every known domain's tower.
    rows = (s[:, 0] == 1) | (s[:, 0] == P)
    assert not np.allclose(after["click"][rows], before["click"][rows])
    np.testing.assert_array_equal(after["click"][~rows], before["click"][~rows])
    np.testing.assert_array_equal(after["like"], before["like"])


def test_unknown_domain_averages_the_known_domains_on_the_shared_representation():
    layer = built()
    x, s = batch()
    s[:3, 0] = [99, -1, P]
    unknown = (s[:, 0] < 0) | (s[:, 0] >= P)
    fused, gates, _ = layer._fuse(x, s, training=False)
    out = layer([x, s])
    h = x[unknown] @ layer.shared_kernel.numpy() + layer.shared_bias.numpy()
    alpha_domain = sigmoid(layer.domain_alpha_logits.numpy())
    alpha_task = sigmoid(layer.task_alpha_logits.numpy())
    beta_domain = sigmoid(layer.domain_balance_logits.numpy())
    beta_task = sigmoid(layer.task_balance_logits.numpy())
    shared = np.stack([numpy_mlp(e, h) for e in layer.shared_experts], axis=1)
    domain = [numpy_mlp(e, h) for e in layer.domain_experts]
    task = [numpy_mlp(layer.task_experts[t], h) for t in TASKS]
    for i, t in enumerate(TASKS):
        t_view = beta_task[i] * task[i] + (1 - beta_task[i]) * task[1 - i]
        g_sum, y_sum = 0.0, 0.0
        for d in range(P):
            gate = layer.gates[f"{t}_domain_{d}"]
            g = softmax(h @ gate.kernel.numpy() + gate.bias.numpy())
            others = sum(domain[j] for j in range(P) if j != d) / (P - 1)
            d_view = beta_domain[d] * domain[d] + (1 - beta_domain[d]) * others
            h_td = np.einsum("be,bed->bd", g, shared) + alpha_domain[d] * t_view + alpha_task[i] * d_view
            np.testing.assert_allclose(np.asarray(fused[t])[unknown, d], h_td, rtol=1e-4, atol=1e-5)
            g_sum = g_sum + g
            y_sum = y_sum + numpy_mlp(layer.towers[f"{t}_domain_{d}"], h_td)
        # The reported gate is the mean gate; the output is the mean of the towers' outputs.
        np.testing.assert_allclose(np.asarray(gates[t])[unknown], g_sum / P, rtol=1e-5, atol=1e-6)
        value = np.asarray(out[t])
        assert np.all(np.isfinite(value))
        np.testing.assert_allclose(value[unknown], y_sum / P, rtol=1e-4, atol=1e-5)
    # Every id outside [0, P) is the same unknown domain.
    same = layer([np.repeat(x[:1], 3, axis=0), np.array([[99], [-1], [P]])])
    for t in TASKS:
        np.testing.assert_allclose(
            np.asarray(same[t]), np.repeat(np.asarray(same[t])[:1], 3, axis=0), atol=1e-6
        )


def test_training_on_known_domains_only_trains_the_unknown_domain_path():
    layer = built()
    x, s = batch(n=200)  # enough rows that no ReLU unit is dead on a whole domain
    known = s[:, 0] < P
    x_known, s_known = x[known], s[known]  # every known domain, no unknown id
    assert set(s_known[:, 0]) == set(range(P))
    s_unknown = np.full_like(s, P)
    weights = layer.trainable_weights

    def nonzero_grads(inputs, scenario):
        with tf.GradientTape() as tape:
            out = layer([inputs, scenario], training=True)
            loss = sum(tf.reduce_sum(tf.square(out[t] - 1.0)) for t in TASKS)
        grads = tape.gradient(loss, weights)
        return {w.path for w, g in zip(weights, grads) if g is not None and np.any(np.asarray(g) != 0)}

    # Every parameter the unknown domain's output uses gets a gradient from known rows alone;
    # W_d and b_d are the only parameters it leaves out.
    used_by_unknown = nonzero_grads(x, s_unknown)
    trained_by_known = nonzero_grads(x_known, s_known)
    assert used_by_unknown <= trained_by_known
    assert {w.path for w in weights} - used_by_unknown == {
        layer.domain_kernel.path,
        layer.domain_bias.path,
    }
    before = {t: np.asarray(v) for t, v in layer([x, s_unknown]).items()}
    with tf.GradientTape() as tape:
        out = layer([x_known, s_known], training=True)
        loss = sum(tf.reduce_mean(tf.square(out[t] - 1.0)) for t in TASKS)
    keras.optimizers.SGD(0.1).apply(tape.gradient(loss, weights), weights)
    after = {t: np.asarray(v) for t, v in layer([x, s_unknown]).items()}
    for t in TASKS:
        assert not np.allclose(after[t], before[t], atol=1e-4)


def test_gates_are_softmaxes_and_are_monitored():
    layer = MultiDomainMultiTaskMixtureOfExperts(**KWARGS)
    x, s = batch()
    layer([x, s])
    gates = {t: np.asarray(g) for t, g in layer.gate_weights([x, s]).items()}
    for t in TASKS:
        assert gates[t].shape == (12, 2)
        np.testing.assert_allclose(gates[t].sum(-1), 1.0, rtol=1e-6)
        means = [float(m.result()) for m in layer.gate_trackers[t]]
        np.testing.assert_allclose(means, gates[t].mean(0), rtol=1e-5)


def test_one_domain_and_one_task():
    layer = built(task_names=["click"], num_scenarios=1)
    assert not hasattr(layer, "domain_balance_logits") and not hasattr(layer, "task_balance_logits")
    x, _ = batch()
    s = np.zeros((12, 1), "int64")
    s[::2] = 1  # the unknown domain: domain 0's path on the shared representation
    alpha_domain = sigmoid(layer.domain_alpha_logits.numpy())
    alpha_task = sigmoid(layer.task_alpha_logits.numpy())
    fused, _, _ = layer._fuse(x, s, training=False)
    out = layer([x, s], training=False)
    for row in range(12):
        d = int(s[row, 0])
        w = layer.shared_kernel.numpy() * (layer.domain_kernel.numpy()[0] if d == 0 else 1.0)
        b = layer.shared_bias.numpy() + (layer.domain_bias.numpy()[0] if d == 0 else 0.0)
        h = x[row] @ w + b
        gate = layer.gates["click_domain_0"]
        g = softmax(h @ gate.kernel.numpy() + gate.bias.numpy())
        shared = g @ np.stack([numpy_mlp(e, h) for e in layer.shared_experts])
        expected = (
            shared
            + alpha_domain[0] * numpy_mlp(layer.task_experts["click"], h)
            + alpha_task[0] * numpy_mlp(layer.domain_experts[0], h)
        )
        np.testing.assert_allclose(np.asarray(fused["click"])[row, 0], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(out["click"])[row],
            numpy_mlp(layer.towers["click_domain_0"], expected),
            rtol=1e-4,
            atol=1e-5,
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task_names": [], "num_scenarios": 2}, "task_names"),
        ({"task_names": ["a", "a"], "num_scenarios": 2}, "task_names"),
        ({"task_names": ["a"], "num_scenarios": 0}, "num_scenarios"),
        ({"task_names": ["a"], "num_scenarios": 2, "representation_units": 0}, "representation_units=0"),
        ({"task_names": ["a"], "num_scenarios": 2, "num_shared_experts": 0}, "num_shared_experts=0"),
        ({"task_names": ["a"], "num_scenarios": 2, "expert_units": []}, "expert_units"),
        ({"task_names": ["a"], "num_scenarios": 2, "tower_units": [2, 0]}, "tower_units"),
        ({"task_names": ["a"], "num_scenarios": 2, "dropout": -0.1}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiDomainMultiTaskMixtureOfExperts(**kwargs)


def test_as_joint_model_task_architecture(tmp_path):
    history = check_joint_model(
        MOVIELENS_100K,
        SIZES,
        tmp_path,
        task_architecture="m3oe",
        component_kwargs={
            "task_architecture": {
                "representation_units": 16,
                "num_shared_experts": 2,
                "expert_units": [8],
                "tower_units": [8],
            }
        },
    ).history
    assert "gate_watch_expert_0" in history
