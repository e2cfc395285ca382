"""tfjoint: joint modeling (multi-task, multi-scenario, multi-behavior, multi-modal) for
deep recommender systems on Keras 3 and TFX."""

import os as _os

# TensorFlow's C++ start-up chatter (CUDA probes, CPU flags) buries the useful output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras as _keras  # noqa: E402

if int(_keras.__version__.split(".")[0]) < 3:
    raise ImportError(
        f"tfjoint needs Keras 3 but found Keras {_keras.__version__}. "
        "Is TF_USE_LEGACY_KERAS set, or tf_keras imported as keras?"
    )

__version__ = "0.1.0"
# The container image the Kubeflow compile names by default (see the Kubeflow compile).
DEFAULT_IMAGE = f"tfjoint:{__version__}"
# Where that image (the repository's Dockerfile, on python:3.10) installs this package; the
# compiled pipeline names the schemas there, and the Dockerfile's build checks the path.
IMAGE_PACKAGE_DIR = "/usr/local/lib/python3.10/site-packages/tfjoint"
