"""What a pipeline run shows its user: a readable epoch line, the gate summary, the
per-scenario x per-task heatmap of the Evaluator's metrics and a model card.

- :class:`EpochSummary`: one short line per epoch, the total loss and per task its loss and
  AUC (train, then ``val``); the gate weights (``gate_<task>_expert_<i>``) stay in the logs
  that TensorBoard reads and are summarised once, at the end of training, per task.
- :func:`plot_metric_heatmap`: the Evaluator's main metric per scenario and task (AUC for
  binary tasks, RMSE for regression tasks) as a PNG, next to the printed table.
- :func:`write_model_card`: a Markdown model card (model, data, intended use, the Evaluator's
  sliced metrics, blessing, where the model lives) generated from the run.
"""

from __future__ import annotations

import datetime
import re
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfjoint.features import DatasetSpec

GATE = re.compile(r"^gate_(?P<task>.+)_expert_(?P<expert>\d+)$")
MAIN_METRIC = {"binary": ("auc", "AUC"), "regression": ("root_mean_squared_error", "RMSE")}


def epoch_line(epoch: int, epochs: int, seconds: float, logs: dict[str, Any], task_names: list[str]) -> str:
    """``epoch 2/5  88 s  loss 1.156 | watch loss 0.41 auc 0.861 | ... || val ...``: gates left out."""

    def part(prefix: str) -> str:
        cells = []
        if f"{prefix}loss" in logs:
            cells.append(f"loss {float(logs[f'{prefix}loss']):.4f}")
        for task in task_names:
            values = [f"{name} {float(logs[f'{prefix}{task}_{name}']):.4f}"
                      for name in ("loss", "auc") if f"{prefix}{task}_{name}" in logs]
            if values:
                cells.append(f"{task} " + " ".join(values))
        return " | ".join(cells)

    line = f"epoch {epoch}/{epochs}  {seconds:.0f} s  {part('')}"
    validation = part("val_")
    return f"{line}  || val {validation}" if validation else line


def gate_summary(logs: dict[str, Any]) -> str:
    """The mean gate weight per expert, per task, from one epoch's logs ('' without gates)."""
    by_task: dict[str, dict[int, float]] = {}
    for key, value in logs.items():
        match = GATE.match(key)
        if match:
            by_task.setdefault(match["task"], {})[int(match["expert"])] = float(value)
    return "; ".join(f"{task} [" + " ".join(f"{weights[i]:.2f}" for i in sorted(weights)) + "]"
                     for task, weights in sorted(by_task.items()))


class EpochSummary(keras.callbacks.Callback):
    """Prints :func:`epoch_line` after every epoch and :func:`gate_summary` after training
    (use with ``fit(..., verbose=0)``; TensorBoard still receives every logged metric)."""

    def __init__(self, task_names: list[str], epochs: int, print_fn: Any = print):
        super().__init__()
        self.task_names, self.epochs, self.print_fn = list(task_names), int(epochs), print_fn
        self._start = time.perf_counter()
        self._last: dict[str, Any] = {}

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._last = dict(logs or {})
        self.print_fn(epoch_line(epoch + 1, self.epochs, time.perf_counter() - self._start, self._last, self.task_names))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        gates = gate_summary(self._last)
        if gates:
            self.print_fn(f"mean gate weight per expert (last epoch; per step in TensorBoard): {gates}")


def main_metrics(table: dict[str, dict[str, dict[str, float]]], spec: DatasetSpec) -> tuple[np.ndarray, list[str], list[str]]:
    """``(values, slices, columns)``: each task's main metric (AUC or RMSE) per scenario."""
    slices = [s for s in spec.scenarios if s in table] or ["overall"]
    columns = [f"{t.name}/{MAIN_METRIC[t.type][1]}" for t in spec.tasks]
    values = np.array([[table[s].get(t.name, {}).get(MAIN_METRIC[t.type][0], np.nan) for t in spec.tasks]
                       for s in slices], dtype=float)
    return values, slices, columns


def plot_metric_heatmap(table: dict[str, dict[str, dict[str, float]]], spec: DatasetSpec, path: str | Path) -> str:
    """Writes the per-scenario x per-task heatmap of :func:`main_metrics` to ``path`` (PNG).
    Each column is coloured on its own scale (AUC and RMSE are not comparable), darker is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, slices, columns = main_metrics(table, spec)
    shade = np.full_like(values, 0.5)
    for j, task in enumerate(spec.tasks):
        column = values[:, j]
        low, high = np.nanmin(column), np.nanmax(column)
        if np.isfinite(low) and high > low:
            shade[:, j] = (column - low) / (high - low)
            if task.type == "regression":
                shade[:, j] = 1 - shade[:, j]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(columns), 1.2 + 0.55 * len(slices)))
    ax.imshow(shade, cmap="Blues", vmin=-0.3, vmax=1.3, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, "-" if np.isnan(value) else f"{value:.4f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(slices)), slices)
    ax.set_title(f"{spec.name}: Evaluator, eval split (per column: darker is better)", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def write_model_card(path: str | Path, *, spec: DatasetSpec, model: str, hparams: dict[str, Any],
                     table: dict[str, dict[str, dict[str, float]]], metric_text: str, blessed: bool,
                     pushed_dir: str | None, heatmap: str | None = None) -> str:
    """A Markdown model card of the run: model details, data, intended use, the Evaluator's
    sliced metrics (the printed table), its blessing and the pushed SavedModel."""
    slots = {k: v for k, v in sorted(hparams.items())
             if k in ("sequence_encoder", "modality_encoder", "scenario_adapter", "balancer", "item_text_encoder",
                      "epochs", "batch_size", "learning_rate", "embedding_dim")}
    tasks = ", ".join(f"`{t.name}` ({t.type}{', given ' + t.parent if t.parent else ''})" for t in spec.tasks)
    lines = [
        f"# Model card: {spec.name} / {model}",
        "",
        f"Generated by `tfjoint pipeline run` on {datetime.date.today().isoformat()}.",
        "",
        "## Model details",
        f"- Task architecture: `{model}`; " + ", ".join(f"{k}: `{v}`" for k, v in slots.items()),
        f"- Tasks: {tasks}",
        f"- Scenarios: {', '.join(f'`{s}`' for s in spec.scenarios) or 'one'}",
        f"- Serving: TF Serving SavedModel, `serving_default` on serialized `tf.Example` (the tf.Transform graph inside)",
        f"- Pushed: `{pushed_dir}`" if pushed_dir else "- Not pushed: the Evaluator did not bless the model",
        "",
        "## Intended use and limits",
        "- Ranking candidates for the tasks above in the listed scenarios; an unknown scenario is served by the"
        " shared (fallback) path.",
        "- Child tasks are trained and judged only on rows where their parent is positive.",
        "- The metrics below are on the time-based evaluation split of the data the pipeline read; judge"
        " fairness and drift on your own slices before launch.",
        "",
        f"## Evaluation (TFMA, eval split; blessed: {blessed})",
        "",
        "```",
        metric_text,
        "```",
    ]
    if heatmap:
        lines += ["", f"![per scenario and task]({Path(heatmap).name})"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")
    return str(path)
