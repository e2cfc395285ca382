"""Compiles the tfjoint pipeline for Kubeflow Pipelines (KubeflowV2DagRunner).

    python pipelines/kubeflow_runner.py --output build/pipeline.json \
        --pipeline-root gs://BUCKET/root --data-root gs://BUCKET/data \
        --serving-dir gs://BUCKET/serving --image REGISTRY/tfjoint:0.1.0

The image must have tfjoint installed (the Transform and Trainer import
``tfjoint.pipeline.transform.preprocessing_fn`` and ``tfjoint.pipeline.trainer.run_fn``).
Submit the JSON with the Kubeflow Pipelines or Vertex AI Pipelines client.
"""

import sys

from tfjoint.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", "compile", "--runner", "kubeflow", *sys.argv[1:]]))
