# The image every step of the compiled Kubeflow pipeline runs in (tfjoint.DEFAULT_IMAGE):
#
#   docker build -t tfjoint:0.1.0 .
#   docker tag tfjoint:0.1.0 REGISTRY/tfjoint:0.1.0 && docker push REGISTRY/tfjoint:0.1.0
#
# The pinned stack as the Makefile installs it (requirements/base.txt, lock.txt as constraints),
# then the package itself (not editable) with its schemas as package data.
FROM python:3.10

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

COPY requirements/ /tmp/tfjoint-src/requirements/
RUN python -m pip install --quiet --upgrade pip==24.2 \
 && python -m pip install --quiet -r /tmp/tfjoint-src/requirements/base.txt -c /tmp/tfjoint-src/requirements/lock.txt

COPY pyproject.toml README.md /tmp/tfjoint-src/
COPY tfjoint/ /tmp/tfjoint-src/tfjoint/
# The compiled pipeline names the schemas under tfjoint.IMAGE_PACKAGE_DIR: the build checks
# that the package landed there, with every schema.
# The wheel stays in the image for Dataflow workers: --beam-arg=--extra_package=/opt/tfjoint/<wheel>.
RUN python -m pip wheel --quiet --no-deps /tmp/tfjoint-src -w /opt/tfjoint \
 && python -m pip install --quiet --no-deps /opt/tfjoint/tfjoint-*.whl \
 && python -m pip check \
 && rm -rf /tmp/tfjoint-src \
 && cd / && python -c "import os, tfjoint; from tfjoint.features import DATASETS; \
from tfjoint.features.schema import image_schema_path; \
assert os.path.dirname(tfjoint.__file__) == tfjoint.IMAGE_PACKAGE_DIR, tfjoint.__file__; \
missing = [n for n, s in DATASETS.items() if not os.path.isfile(image_schema_path(s))]; \
assert not missing, missing; print('tfjoint', tfjoint.__version__, 'at', tfjoint.IMAGE_PACKAGE_DIR)"

WORKDIR /workspace
