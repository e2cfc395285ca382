import pytest

from tfjoint.bench import vocab


def test_memory_is_the_table_and_two_adam_moments_per_row():
    row = vocab.measure(1000, dim=4, batch_size=32, steps=1)
    assert row["table_bytes"] == 1000 * 4 * 4
    # Adam's m and v for every weight (table and MLP); the table's share is 2x the table.
    assert row["optimizer_bytes"] == 2 * row["model_bytes"]
    assert row["model_bytes"] > row["table_bytes"] and row["ms_per_step"] > 0


def test_arguments_are_checked_first():
    with pytest.raises(ValueError, match="must be >= 1"):
        vocab.measure(0)


def test_sgd_keeps_no_optimizer_state():
    row = vocab.measure(1000, dim=4, batch_size=32, steps=1, optimizer="sgd")
    assert row["optimizer_bytes"] == 0 and row["table_bytes"] == 1000 * 4 * 4
    with pytest.raises(ValueError, match="optimizer must be one of"):
        vocab.measure(10, optimizer="adagrad")


def test_lazy_adam_keeps_the_same_state_as_adam():
    row = vocab.measure(1000, dim=4, batch_size=32, steps=1, optimizer="lazy_adam")
    assert row["optimizer_bytes"] == 2 * row["model_bytes"] and row["table_bytes"] == 1000 * 4 * 4
