

def test_sgd_keeps_no_optimizer_state():
    row = vocab.measure(1000, dim=4, batch_size=32, steps=1, optimizer="sgd")
    assert row["optimizer_bytes"] == 0 and row["table_bytes"] == 1000 * 4 * 4
    with pytest.raises(ValueError, match="optimizer must be 'adam' or 'sgd'"):
        vocab.measure(10, optimizer="adagrad")
