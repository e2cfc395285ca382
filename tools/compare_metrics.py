"""The largest difference of each metric between two ``tfjoint pipeline run --json`` results
(same slices, tasks and metric names required): are two runs' Evaluator outputs the same?

    python tools/compare_metrics.py runs/base/result.json runs/after/result.json
"""

from __future__ import annotations

import json
import sys


def main(first: str, second: str) -> None:
    a, b = (json.load(open(path))["metrics"] for path in (first, second))
    names = {s: {t: sorted(m) for t, m in tasks.items()} for s, tasks in a.items()}
    if names != {s: {t: sorted(m) for t, m in tasks.items()} for s, tasks in b.items()}:
        raise SystemExit(f"different slices, tasks or metric names: {first} and {second}")
    worst = {}
    for s, tasks in a.items():
        for t, metrics in tasks.items():
            for m, v in metrics.items():
                diff = abs(v - b[s][t][m])
                if diff >= worst.get(m, (0.0,))[0]:
                    worst[m] = (diff, s, t, v, b[s][t][m])
    print(f"same slices, tasks and metric names: {sum(len(m) for t in a.values() for m in t.values())} values")
    for m, (diff, s, t, v, w) in sorted(worst.items()):
        print(f"{m:25s} max |diff| {diff:.2e} (rel {diff / max(abs(v), 1e-12):.1e}) at {s}/{t}: {v!r} vs {w!r}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: compare_metrics.py FIRST.json SECOND.json")
    main(*sys.argv[1:])
