"""Runs the tfjoint pipeline locally (LocalDagRunner, Beam DirectRunner).

    python pipelines/local_runner.py --dataset synthetic --model mmoe

Same as ``tfjoint pipeline run``; kept as a script in the layout of TFX's templates.
"""

import sys

from tfjoint.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", "run", *sys.argv[1:]]))
