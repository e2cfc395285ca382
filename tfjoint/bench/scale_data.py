"""A large synthetic impression log, written as a user would bring it: CSV part files and a
spec file (docs/your_data.md), for timing the pipeline's Beam components at scale (issue 18).

::

    python -m tfjoint.bench.scale_data --rows 2000000 --files 8 --output /tmp/impressions
    tfjoint pipeline run --spec /tmp/impressions/impressions.yaml --data '/tmp/impressions/part-*.csv' --beam-workers 2

Users and items are Zipf-distributed (a long tail, as in real logs: the user vocabulary is
capped by a :class:`~tfjoint.features.VocabularyBudget` in the spec); the click is a logistic
function of device, page, price and hour plus a user and an item effect, the purchase is
observed after a click only (the ESMM structure: Ma et al., Entire Space Multi-Task Model,
SIGIR 2018, Eq. 1, pCTCVR = pCTR x pCVR). Deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd

DEVICES = np.array(["ios", "android", "web"])
PAGES = np.array(["home", "search", "detail"])

SPEC_YAML = """\
# Written by python -m tfjoint.bench.scale_data: {rows} impressions, {users} users, {items} items.
name: impressions
categorical: [user_id, item_id, device]
dense: [price, hour]
scenarios: [home, search, detail]
tasks:
  - {{name: click, type: binary}}
  - {{name: purchase, type: binary, parent: click}}
vocabulary_budgets: {{user_id: {{top_k: {top_k}, num_oov_buckets: {buckets}}}}}
max_log_loss: 1.0
calibration_bounds: null
source:
  columns: {{scenario: page}}
  eval_fraction: 0.1
"""


def _zipf_ids(rng: np.random.Generator, n: int, vocabulary: int, exponent: float = 1.1) -> np.ndarray:
    """``n`` draws of ids ``0..vocabulary-1`` with P(rank r) proportional to ``(r + 1) ** -exponent``."""
    weights = np.arange(1, vocabulary + 1, dtype=np.float64) ** -exponent
    return rng.choice(vocabulary, size=n, p=weights / weights.sum())


def impressions(rows: int, users: int, items: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` impressions with the columns of :data:`SPEC_YAML` (purchase empty where click = 0)."""
    rng = np.random.default_rng(seed)
    user, item = _zipf_ids(rng, rows, users), _zipf_ids(rng, rows, items)
    device, page = rng.integers(0, 3, rows), rng.integers(0, 3, rows)
    price = np.round(rng.lognormal(3.0, 0.8, items)[item], 2)
    hour = rng.integers(0, 24, rows)
    user_effect, item_effect = rng.normal(0, 0.5, users), rng.normal(0, 0.5, items)
    logit = (0.8 * (device == 0) + 0.6 * (page == 1) - 0.01 * price + 0.3 * np.sin(hour / 24 * 2 * np.pi)
             + user_effect[user] + item_effect[item] - 0.5)
    click = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    bought = (rng.random(rows) < 1 / (1 + np.exp(-(item_effect[item] - 1.0)))).astype(int)
    return pd.DataFrame({
        "user_id": np.char.add("u", user.astype(str)), "item_id": np.char.add("i", item.astype(str)),
        "device": DEVICES[device], "price": price, "hour": hour, "page": PAGES[page], "click": click,
        "purchase": pd.Series(bought, dtype="Int64").where(click == 1),  # empty without a click
    })


def write(output: str, rows: int, files: int = 8, users: int = 200_000, items: int = 50_000,
          top_k: int = 100_000, buckets: int = 1_000, seed: int = 0) -> tuple[str, str]:
    """Writes ``files`` CSV parts and ``impressions.yaml`` under ``output``; returns the spec
    path and the glob of the parts."""
    for name, value in (("rows", rows), ("files", files), ("users", users), ("items", items)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name} must be an integer >= 1. Received: {value!r}")
    os.makedirs(output, exist_ok=True)
    frame = impressions(rows, users, items, seed)
    for k, part in enumerate(np.array_split(np.arange(rows), files)):
        frame.iloc[part].to_csv(os.path.join(output, f"part-{k:05d}.csv"), index=False)
    spec = os.path.join(output, "impressions.yaml")
    with open(spec, "w") as f:
        f.write(SPEC_YAML.format(rows=rows, users=users, items=items, top_k=top_k, buckets=buckets))
    return spec, os.path.join(output, "part-*.csv")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--top-k", type=int, default=100_000, help="user_id vocabulary budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    spec, data = write(args.output, args.rows, args.files, args.users, args.items, args.top_k, seed=args.seed)
    print(f"tfjoint pipeline run --spec {spec} --data '{data}'")


if __name__ == "__main__":
    main()
