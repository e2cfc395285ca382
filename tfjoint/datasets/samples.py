"""Loaders for the small real-data samples in the read-only folder ``../shared/data``.

The samples are real rows with the real schemas of public joint-modeling benchmarks (see
``../shared/data/README.md``), far too small for any accuracy claim; they prove that the
loaders, schemas and pipeline run on the real formats. They are read in place and never
copied into the project.

- Ali-CCP (X. Ma et al., "Entire Space Multi-Task Model", SIGIR 2018), in the format of
  Scenario-Wise-Rec (https://github.com/Xiaopengli1/Scenario-Wise-Rec): labels ``click``
  and ``purchase`` (a purchase only after a click), field ``301`` is the scenario;
- AliExpress (MTReclib format, via torch-rechub, https://github.com/datawhalechina/torch-rechub):
  16 categorical and 63 numerical fields, labels ``click`` and ``conversion``;
- UCI Census-Income (KDD) as in the MMoE paper (J. Ma et al., KDD 2018), via torch-rechub:
  tasks income and marital status.
"""

from __future__ import annotations

import os
import pathlib
import re

import numpy as np
import pandas as pd

from tfjoint import features

SHARED_DATA_ENV = "TFJOINT_SHARED_DATA"
SCENARIO_WISE_REC_DIR = "scenario_wise_rec"
TORCH_RECHUB_DIR = "torch_rechub"
ALI_CCP_SCENARIO_COLUMN = "301"
DOUBAN_SCENARIO_COLUMN = "domain"
"""Ali-CCP's scenario field; its values 1, 2, 3 become scenarios 0, 1, 2."""
CENSUS_LABEL_COLUMNS = {"income": "income", "marital status": "marital"}
"""Raw census header -> task name of ``features.CENSUS_SAMPLE``."""


def shared_data_dir() -> pathlib.Path:
    """The shared data folder: ``$TFJOINT_SHARED_DATA``, else ``<repo>/../shared/data``,
    else ``./../shared/data``.

    Raises:
        FileNotFoundError: none of those is a directory.
    """
    candidates = []
    if os.environ.get(SHARED_DATA_ENV):
        candidates.append(pathlib.Path(os.environ[SHARED_DATA_ENV]))
    # This file is <repo>/tfjoint/datasets/samples.py.
    repo_root = pathlib.Path(__file__).resolve().parents[2]
    candidates.append(repo_root.parent / "shared" / "data")
    candidates.append(pathlib.Path.cwd().parent / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "the shared real-data samples are not available; looked in "
        f"{[str(c) for c in candidates]}. Set {SHARED_DATA_ENV} to the folder that holds "
        f"{SCENARIO_WISE_REC_DIR}/ and {TORCH_RECHUB_DIR}/."
    )


def _read_csvs(paths: list[pathlib.Path]) -> pd.DataFrame:
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"sample file {path} does not exist")
    # Everything is read as text: ids must stay "12", never become 12.0 through a NaN.
    return pd.concat(
        [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths], ignore_index=True
    )


def _select(
    raw: pd.DataFrame,
    spec: features.DatasetSpec,
    columns: dict[str, str],
    scenario: np.ndarray,
    source: str,
) -> pd.DataFrame:
    """Build a frame with spec's keys from ``raw``; ``columns`` maps key -> raw column."""
    keys = spec.categorical + spec.dense + spec.label_keys
    missing = [k for k in keys if columns.get(k) not in raw.columns]
    if missing:
        raise ValueError(
            f"{source} has no column for key(s) {missing}; Received columns: {list(raw.columns)}"
        )
    out = {}
    for key in spec.categorical:
        out[key] = raw[columns[key]].to_numpy(dtype=object)
    for key in spec.dense + spec.label_keys:
        out[key] = pd.to_numeric(raw[columns[key]], errors="raise").to_numpy(dtype=np.float64)
    out[features.SCENARIO_KEY] = scenario.astype(np.int64)
    frame = pd.DataFrame(out)
    for task in spec.tasks:
        values = frame[task.name].to_numpy()
        if task.type == "binary" and not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(f"{source}: label {task.name!r} must be 0 or 1; Received: {np.unique(values)}")
        if task.parent is not None and (values > frame[task.parent].to_numpy()).any():
            raise ValueError(
                f"{source}: label {task.name!r} is 1 on rows where its parent {task.parent!r} is 0"
            )
    return frame


def _identity(spec: features.DatasetSpec) -> dict[str, str]:
    return {key: key for key in spec.categorical + spec.dense + spec.label_keys}


def load_ali_ccp_frames(data_dir: str | os.PathLike | None = None) -> dict[str, pd.DataFrame]:
    """Ali-CCP sample: train = train csv, eval = val + test csvs (``features.ALI_CCP_SAMPLE``).

    Sparse field ``<col>`` becomes categorical ``f<col>``, ``D*`` fields are dense, and
    field ``301`` in {1, 2, 3} is the scenario 0, 1, 2.
    """
    spec = features.ALI_CCP_SAMPLE
    root = pathlib.Path(data_dir) if data_dir is not None else shared_data_dir()
    # Categorical keys are "f" + the raw field name ("f101" <- "101").
    columns = _identity(spec) | {key: key[1:] for key in spec.categorical}
    frames = {}
    for split, names in (("train", ["train"]), ("eval", ["val", "test"])):
        paths = [root / SCENARIO_WISE_REC_DIR / f"ali_ccp_{name}_sample.csv" for name in names]
        raw = _read_csvs(paths)
        field = pd.to_numeric(raw[ALI_CCP_SCENARIO_COLUMN], errors="raise").to_numpy()
        if not np.isin(field, np.arange(1, spec.num_scenarios + 1)).all():
            raise ValueError(
                f"Ali-CCP field {ALI_CCP_SCENARIO_COLUMN} must be in 1..{spec.num_scenarios}; "
                f"Received: {np.unique(field)}"
            )
        frames[split] = _select(raw, spec, columns, field - 1, source=str(paths))
    return frames


def load_douban_frames(data_dir: str | os.PathLike | None = None, eval_fraction: float = 0.2) -> dict[str, pd.DataFrame]:
    """Douban sample (``features.DOUBAN_SAMPLE``): the ``domain`` (movie, book, music) is the
    scenario; ``join_time`` becomes the dense ``join_year``.

    The sample has no timestamps, so the split is a fixed-seed random ``eval_fraction`` of the
    rows, stratified by domain so that every scenario is evaluated.
    """
    spec = features.DOUBAN_SAMPLE
    root = pathlib.Path(data_dir) if data_dir is not None else shared_data_dir()
    path = root / SCENARIO_WISE_REC_DIR / "douban_sample.csv"
    raw = _read_csvs([path])
    domain = raw[DOUBAN_SCENARIO_COLUMN].to_numpy()
    unknown = sorted(set(domain) - set(spec.scenarios))
    if unknown:
        raise ValueError(f"{path}: {DOUBAN_SCENARIO_COLUMN!r} must be one of {spec.scenarios}; Received: {unknown}")
    raw = raw.assign(join_year=raw["join_time"].str.slice(0, 4))
    scenario = np.array([spec.scenarios.index(d) for d in domain])
    frame = _select(raw, spec, _identity(spec), scenario, source=str(path))
    rng = np.random.default_rng(0)
    is_eval = np.zeros(len(frame), bool)
    for p in range(spec.num_scenarios):
        rows = np.flatnonzero(scenario == p)
        is_eval[rng.permutation(rows)[: int(round(eval_fraction * len(rows)))]] = True
    return {"train": frame[~is_eval].reset_index(drop=True), "eval": frame[is_eval].reset_index(drop=True)}


def load_aliexpress_frames(data_dir: str | os.PathLike | None = None) -> dict[str, pd.DataFrame]:
    """AliExpress sample: train / test csvs, one scenario (``features.ALIEXPRESS_SAMPLE``)."""
    spec = features.ALIEXPRESS_SAMPLE
    root = pathlib.Path(data_dir) if data_dir is not None else shared_data_dir()
    frames = {}
    for split, name in (("train", "train"), ("eval", "test")):
        path = root / TORCH_RECHUB_DIR / f"aliexpress_{name}_sample.csv"
        raw = _read_csvs([path])
        frames[split] = _select(raw, spec, _identity(spec), np.zeros(len(raw)), source=str(path))
    return frames


def census_key(header: str) -> str:
    """Census header -> key: lowercased, spaces and '-' replaced by '_'."""
    return re.sub(r"[ \-]", "_", header.strip().lower())


def load_census_frames(data_dir: str | os.PathLike | None = None) -> dict[str, pd.DataFrame]:
    """Census-Income sample: train = train csv, eval = val + test csvs (``features.CENSUS_SAMPLE``).

    The ``income`` and ``marital status`` columns are the labels ``income`` and ``marital``.
    """
    spec = features.CENSUS_SAMPLE
    root = pathlib.Path(data_dir) if data_dir is not None else shared_data_dir()
    frames = {}
    for split, names in (("train", ["train"]), ("eval", ["val", "test"])):
        paths = [root / TORCH_RECHUB_DIR / f"census_income_{name}_sample.csv" for name in names]
        raw = _read_csvs(paths)
        columns = {CENSUS_LABEL_COLUMNS.get(h, census_key(h)): h for h in raw.columns}
        frames[split] = _select(raw, spec, columns, np.zeros(len(raw)), source=str(paths))
    return frames
