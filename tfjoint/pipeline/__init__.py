"""The TFX pipeline: tf.Transform preprocessing, the Trainer's run_fn, the Evaluator config
and the pure ``create_pipeline`` factory."""
