"""Compiles the tfjoint pipeline for Kubeflow Pipelines (KubeflowV2DagRunner).

    python pipelines/kubeflow_runner.py --output build/pipeline.json \
        --pipeline-root gs://BUCKET/root --data-root gs://BUCKET/data \
        --serving-dir gs://BUCKET/serving --image REGISTRY/tfjoint:0.1.0

The image is the repository's Dockerfile (``docker build -t tfjoint:0.1.0 .``): tfjoint with
its schemas, which the job names at their path inside the image. ``data_root``, ``epochs``
and ``model`` are runtime parameters. Submit with the Kubeflow Pipelines or Vertex AI
Pipelines client (docs/deploy.md).
"""

import sys

from tfjoint.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", "compile", "--runner", "kubeflow", *sys.argv[1:]]))
