import pytest

from tfjoint.bench.mtl_budget import STEPS_PER_EXECUTION, Budget, mean_std


def test_mean_std_is_the_sample_std_over_seeds():
    # mean 2, squared deviations 1 + 0 + 1 over n - 1 = 2: std 1.
    assert mean_std([1, 2, 3]) == {"mean": 2.0, "std": 1.0, "values": [1.0, 2.0, 3.0]}
    assert mean_std([0.5]) == {"mean": 0.5, "std": 0.0, "values": [0.5]}


def test_traced_budgets_run_several_steps_per_execution():
    assert Budget(1, 8, 1e-3).compile_kwargs() == {
        "run_eagerly": False,
        "steps_per_execution": STEPS_PER_EXECUTION,
    }
    assert Budget(1, 8, 1e-3, run_eagerly=True).compile_kwargs() == {"run_eagerly": True}


@pytest.mark.parametrize("args", [(0, 8, 1e-3), (1, 0, 1e-3), (1, 8, 0.0)])
def test_bad_budget(args):
    with pytest.raises(ValueError, match="Received"):
        Budget(*args)
