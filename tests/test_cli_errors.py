"""Bad input to the CLI is one line on stderr and a non-zero exit, checked before heavy work (issue 19)."""

import pytest

from tfjoint import cli


def _fails(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code not in (0, None)
    return str(e.value.code) + capsys.readouterr().err


def test_hparams_that_are_not_an_object_are_one_line(capsys):
    out = _fails(["pipeline", "compile", "--output", "x.json", "--hparams", "[1]"], capsys)
    assert "must be a JSON object" in out and "Traceback" not in out


@pytest.mark.parametrize("hparams, extra, says", [
    ('{"model": "nope"}', [], "may not set ['model']"),
    ('{"learnin_rate": 5}', [], "unknown hparams ['learnin_rate']"),
    ('{"epochs": "two"}', [], "--epochs must be an integer > 0"),
    ("{}", ["--epochs", "-3"], "--epochs must be an integer > 0"),
    ("{}", ["--batch-size", "0"], "--batch-size must be an integer > 0"),
    ('{"item_text_encoder": "bert"}', [], "must be null, 'minilm' or 'hashed'"),
    ("{}", ["--dataset", "synthetic", "--item-text-encoder", "minilm"], "--item-text-encoder needs item texts"),
])
def test_pipeline_compile_refuses_bad_hparams_before_writing(tmp_path, capsys, hparams, extra, says):
    out = _fails(["pipeline", "compile", "--output", str(tmp_path / "p.json"), "--hparams", hparams, *extra], capsys)
    assert says in out
    assert not (tmp_path / "p.json").exists()


def test_pipeline_run_refuses_batch_size_zero_before_any_component(tmp_path, capsys):
    out = _fails(["pipeline", "run", "--dataset", "synthetic", "--batch-size", "0",
                  "--pipeline-root", str(tmp_path / "p")], capsys)
    assert "--batch-size must be an integer > 0" in out
    assert not (tmp_path / "p").exists()


def test_models_with_an_unknown_slot_is_one_line(capsys):
    out = _fails(["models", "--slot", "nope"], capsys)
    assert "--slot 'nope' is not a slot" in out


@pytest.mark.parametrize("flag, content, says", [
    ("--examples", None, "no such file"),
    ("--examples", b"not a tfrecord at all, just text\n" * 4, "is not a TFRecord file"),
    ("--json", b"{not json", "cannot read"),
])
def test_predict_with_a_bad_input_file_is_one_line(tmp_path, capsys, flag, content, says):
    path = tmp_path / "in"
    if content is not None:
        path.write_bytes(content)
    out = _fails(["predict", "--target", "127.0.0.1:1", "--model_name", "m", flag, str(path)], capsys)
    assert says in out and "Traceback" not in out


def test_data_to_an_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = _fails(["data", "--dataset", "synthetic", "--output", str(blocker / "sub")], capsys)
    assert "cannot write --output" in out


def test_an_unreported_error_is_one_line_unless_debug_asks_for_the_traceback(capsys, monkeypatch):
    from tfjoint import cli

    def boom(args):
        raise ValueError("something the command did not catch")

    monkeypatch.setattr(cli, "cmd_models", boom)
    assert cli.main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tfjoint models: error: something the command did not catch" in err
    with pytest.raises(ValueError):
        cli.main(["--debug", "models"])
    monkeypatch.setenv("TFJOINT_DEBUG", "1")
    with pytest.raises(ValueError):
        cli.main(["models"])


def test_serve_refuses_a_port_outside_the_tcp_range(capsys):
    from tfjoint import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["serve", "--model_name", "m", "--model_base_path", "/tmp", "--port", "70000"])
    assert e.value.code == 2 and "70000 is outside [0, 65535]" in capsys.readouterr().err
