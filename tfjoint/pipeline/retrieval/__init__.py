"""The TFX pipeline of a top-K retrieval model, from an interaction log to TF Serving.

ImportExampleGen -> StatisticsGen -> ImportSchemaGen (``tfjoint/schemas/interactions.pbtxt``) ->
ExampleValidator -> Transform (user and item vocabularies) -> Trainer (a registered
``retrieval_model``, its epoch chosen on the validation hold-out) -> RankingEvaluator (HR,
NDCG, Recall, MRR under full ranking and sampled negatives; blessing thresholds judged on
validation) -> Pusher (a SavedModel whose ``serving_default`` returns the top-K original item
ids of a user named by its original id).

- :mod:`~tfjoint.pipeline.retrieval.data`: a leave-one-out split as ``train/`` and ``eval/``
  TFRecords of ``tf.Example`` and back;
- :mod:`~tfjoint.pipeline.retrieval.transform`: the ``preprocessing_fn``;
- :mod:`~tfjoint.pipeline.retrieval.trainer`: the ``run_fn``;
- :mod:`~tfjoint.pipeline.retrieval.item_features`: fixed item features of feature models
  (VBPR): MiniLM text embeddings from the ``ItemTextEmbeddings`` component (which then runs
  before the Trainer), a hashed bag of tokens, or MovieLens genres and year, aligned to the
  item vocabulary;
- :mod:`~tfjoint.pipeline.retrieval.evaluator`: the ``RankingEvaluator`` component;
- :mod:`~tfjoint.pipeline.retrieval.pipeline`: ``create_retrieval_pipeline`` and the local run.
"""
