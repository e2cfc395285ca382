"""End to end on the real Ali-CCP sample (scenario field 301, click -> purchase), with ESMM
as the task architecture and MetaBalance as the gradient balancer inside the TFX Trainer (the
synthetic end-to-end test runs MMoE with fixed weights)."""

from __future__ import annotations

import glob
import os

import numpy as np
import tensorflow as tf

from tfjoint.features import ALI_CCP_SAMPLE, SCENARIO_FALLBACK_KEY
from tfjoint.pipeline import evaluation, runners


def test_ali_ccp_sample_pipeline(tmp_path, shared_data):
    run = runners.run_local(
        dataset="ali-ccp-sample",
        model="esmm",
        pipeline_root=str(tmp_path / "pipeline"),
        serving_dir=str(tmp_path / "serving"),
        hparams={"epochs": 5, "batch_size": 32, "balancer": "metabalance"},
    )
    table = evaluation.metric_table(run.evaluation_dir, ALI_CCP_SAMPLE)
    # val + test samples: 100 rows, of which 9 clicked; three scenarios from field 301.
    assert set(table) == {"overall", *ALI_CCP_SAMPLE.scenarios}
    assert table["overall"]["click"]["example_count"] == 100
    assert table["overall"]["purchase"]["example_count"] == 9
    assert sum(table[s]["click"]["example_count"] for s in ALI_CCP_SAMPLE.scenarios) == 100
    for task in ("click", "purchase"):
        for metric in ("auc", "binary_crossentropy", "calibration"):
            assert metric in table["overall"][task]
    assert table["overall"]["click"]["binary_crossentropy"] < ALI_CCP_SAMPLE.max_log_loss
    assert evaluation.is_blessed(run.evaluation_dir)
    loaded = tf.saved_model.load(run.pushed_dir)
    assert set(loaded.signatures) == {"serving_default", "serving_auxiliary", "transform_features"}
    # ESMM serves pCTCVR = pCTR * pCVR beside the two task outputs, in the auxiliary signature.
    files = sorted(glob.glob(os.path.join(run.data_root, "eval", "*")))
    examples = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(files).take(8)])
    assert set(loaded.signatures["serving_default"](examples=examples)) == {"click", "purchase"}
    out = loaded.signatures["serving_auxiliary"](examples=examples)
    assert set(out) == {"click", "purchase", "purchase_joint", SCENARIO_FALLBACK_KEY}
    np.testing.assert_array_equal(out[SCENARIO_FALLBACK_KEY].numpy(), 0)
    np.testing.assert_allclose(out["purchase_joint"], out["click"] * out["purchase"], rtol=1e-6)
