"""End to end over the catalog: multi-task and multi-scenario models as the TFX pipeline's model.

The synthetic end-to-end test runs MMoE and the Ali-CCP one ESMM with MetaBalance; these
runs put other families through the same pipeline on the real samples: PLE's progressive
layered extraction on Ali-CCP (click -> purchase), a joint
multi-scenario multi-task architecture and M-LoRA's two-stage training on Douban's three
domains. Each run is judged by its Evaluator (per task, overall and per scenario) and by
what its serving signature returns.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfjoint.features import SCENARIO_FALLBACK_KEY, get_dataset_spec
from tfjoint.pipeline import evaluation, runners
from tfjoint.pipeline.trainer import TRAINING_SUMMARY_FILENAME

# (dataset, task architecture, hyper-parameters). Ali-CCP's 100 training rows (9 clicks, 2
# purchases) are too few for the Evaluator's log-loss bound on purchase, so blessing is only
# required on Douban's 2,400; an unblessed model must not be pushed.
CASES = {
    "ali-ccp-ple": ("ali-ccp-sample", "ple", {"epochs": 5, "batch_size": 32}),
    "douban-hinet": ("douban-sample", "hinet", {"epochs": 2, "batch_size": 64}),
    "douban-m_lora": ("douban-sample", "mmoe", {"epochs": 2, "batch_size": 64, "scenario_adapter": "m_lora"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_catalog_model_runs_in_the_pipeline(case, tmp_path, shared_data):
    dataset, model, hparams = CASES[case]
    spec = get_dataset_spec(dataset)
    run = runners.run_local(
        dataset=dataset,
        model=model,
        pipeline_root=str(tmp_path / "pipeline"),
        serving_dir=str(tmp_path / "serving"),
        hparams=hparams,
    )
    table = evaluation.metric_table(run.evaluation_dir, spec)
    assert set(table) == {"overall", *spec.scenarios}
    for slice_name in table:
        for task in spec.tasks:
            assert "binary_crossentropy" in table[slice_name][task.name], (slice_name, task.name)
    blessed = evaluation.is_blessed(run.evaluation_dir)
    assert blessed or dataset == "ali-ccp-sample"
    assert (run.pushed_dir is not None) == blessed
    # The Trainer's export is what the Pusher copies when the Evaluator blesses it.
    (exported,) = glob.glob(os.path.join(tmp_path, "pipeline", "Trainer", "model", "*", "Format-Serving"))

    files = sorted(glob.glob(os.path.join(run.data_root, "eval", "*")))
    examples = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(files).take(16)])
    out = tf.saved_model.load(exported).signatures["serving_auxiliary"](examples=examples)
    for task in spec.tasks:
        p = out[task.name].numpy()
        assert p.shape == (16, 1) and np.all((p >= 0) & (p <= 1))
    np.testing.assert_array_equal(out[SCENARIO_FALLBACK_KEY].numpy(), 0)

    with open(os.path.join(run.model_run_dir, TRAINING_SUMMARY_FILENAME)) as f:
        history = json.load(f)["history"]
    if hparams.get("scenario_adapter") == "m_lora":
        # Two stages: pre-training, then each domain's low-rank pair on its own rows.
        assert {"pretrain/loss", "fine_tune_0/loss", "fine_tune_1/loss", "fine_tune_2/loss"} <= set(history)
    else:
        assert len(history["loss"]) == hparams["epochs"]
