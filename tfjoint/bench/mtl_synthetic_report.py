"""The report of ``tfjoint bench mtl-synthetic``: its tables (:func:`format_report`) and its
figure (:func:`plot`), both read from :func:`tfjoint.bench.mtl_synthetic.run_mtl_synthetic`'s
results."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from tfjoint.bench.mtl_correlation import BASELINE, correlation_key
from tfjoint.bench.mtl_synthetic_data import NOISE_FLOOR
from tfjoint.bench.selection_bias import NAIVE_REFERENCE, less_biased_than_reference


def _cell(stats: dict[str, Any], signed: bool = False, digits: int = 3) -> str:
    return f"{stats['mean']:{'+' if signed else ''}.{digits}f} ± {stats['std']:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def format_report(results: dict[str, Any]) -> str:
    """The tables of ``results``: loss, gap to shared-bottom, parameters, selection bias."""
    config = results["config"]
    architectures = config["architectures"]
    keys = [correlation_key(c) for c in config["correlations"]]
    change = f"{keys[-1]} minus {keys[0]}"
    title = (
        f"== MMoE synthetic (Ma et al., KDD 2018, Fig. 4): eval MSE(y1) + MSE(y2), mean ± std over "
        f"{config['seeds']} seed(s); {config['n_train']} train / {config['n_eval']} eval rows, "
        f"{config['epochs']} epochs, batch {config['batch_size']}, Adam lr {config['learning_rate']:g}; "
        f"noise floor {NOISE_FLOOR:.3f}; scale c = {config.get('scale', 1.0):g}, sinusoids "
        + (
            "drawn per seed"
            if config.get("sinusoid_seed") is None
            else f"from seed {config['sinusoid_seed']}"
        )
        + " =="
    )
    out = [
        title,
        _table(
            ["correlation", "label corr", *architectures],
            [
                [
                    k,
                    f"{results['label_correlation'][k]['mean']:.3f}",
                    *(_cell(results["loss"][a][k]) for a in architectures),
                ]
                for k in keys
            ]
            + [[change, "", *(_cell(results["loss_change"][a], signed=True) for a in architectures)]],
        ),
        "train MSE (last epoch's mean): "
        + "; ".join(
            f"{a} " + " / ".join(f"{results['train_loss'][a][k]['mean']:.3f}" for k in keys)
            for a in architectures
        ),
    ]
    if results.get("gate_separation"):
        out.append(
            "MMoE gate separation (total variation between the two tasks' mean gate weights; 0: both "
            "tasks mix the experts alike): "
            + ", ".join(f"{k}: {_cell(results['gate_separation'][k])}" for k in keys)
        )
    if results["gap"]:
        gated = list(results["gap"])
        out += [
            f"\n== gap MSE({BASELINE}) - MSE(arch), paired by seed (> 0: arch beats {BASELINE}); "
            f"last row: gap at {keys[-1]} minus gap at {keys[0]} (> 0: the advantage grows as "
            f"correlation falls) ==",
            _table(
                ["correlation", *gated],
                [[k, *(_cell(results["gap"][a][k], signed=True) for a in gated)] for k in keys]
                + [[change, *(_cell(results["gap_growth"][a], signed=True) for a in gated)]],
            ),
        ]
    out += [
        "\n== parameters ==",
        _table(
            ["architecture", "total", "task architecture"],
            [[a, str(p["total"]), str(p["task_architecture"])] for a, p in results["parameters"].items()],
        ),
    ]
    bias = results.get("selection_bias")
    if bias:
        c, data = bias["config"], bias["data"]
        title = (
            f"\n== selection bias of pCVR (ESMM, Ma et al., SIGIR 2018): mean(pCVR - true CVR), "
            f"mean ± std over {len(c['seeds'])} seed(s); {c['n']} impressions, {data['n_eval']} eval "
            f"({data['n_eval_unclicked']} unclicked), "
            + (
                f"each model at its best epoch (at most {c['epochs']}) on held-out rows"
                if c.get("early_stopping", True)
                else f"{c['epochs']} epochs"
            )
            + "; naive_* models fit pCVR "
            "on clicked rows only =="
        )
        excess = bias["excess"]
        header = [
            "model",
            "unclicked",
            "clicked",
            "all",
            "unclicked - clicked",
            "parameters",
            "best epoch per seed",
        ]
        if excess:
            header.insert(5, f"|unclicked| - |{NAIVE_REFERENCE}|")
        rows = []
        for name, m in bias["models"].items():
            row = [
                name,
                _cell(m["bias_unclicked"], signed=True, digits=4),
                _cell(m["bias_clicked"], signed=True, digits=4),
                _cell(m["bias_all"], signed=True, digits=4),
                _cell(m["bias_unclicked_minus_clicked"], signed=True, digits=4),
                str(m["parameters"]),
                " ".join(str(e) for e in m.get("best_epochs", [])),
            ]
            if excess:
                row.insert(5, _cell(excess[name], signed=True, digits=4) if name in excess else "(reference)")
            rows.append(row)
        out += [
            title,
            _table(header, rows),
            f"true CVR of eval impressions: clicked {_cell(data['true_cvr_clicked'], digits=4)}, unclicked "
            f"{_cell(data['true_cvr_unclicked'], digits=4)}; a constant pCVR equal to the clicked training "
            "rows' conversion rate is off by "
            f"{_cell(data['clicked_rate_bias_unclicked'], signed=True, digits=4)} "
            "on unclicked rows",
        ]
        if excess:
            less = less_biased_than_reference(bias)
            out.append(
                f"less biased than {NAIVE_REFERENCE} on unclicked impressions (|bias| lower, paired by seed, "
                f"by more than 2 standard errors): {', '.join(less) if less else 'none'}"
                + (
                    ""
                    if len(bias["config"]["seeds"]) > 1
                    else " (one seed: no noise estimate, nothing claimed)"
                )
            )
    out.append(
        f"\nwall time: {results['seconds']:.0f} s" + (f"; figure: {results['png']}" if results["png"] else "")
    )
    return "\n".join(out)


def plot(results: dict[str, Any], path: str | os.PathLike) -> pathlib.Path:
    """Writes the figure: final eval loss against correlation, one line per architecture with
    std error bars (the paper's Fig. 4 read at the end of training); the gap to
    shared-bottom; and, when it ran, the pCVR bias of the selection-bias models."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    config = results["config"]
    correlations = np.asarray(config["correlations"])
    architectures = config["architectures"]
    bias = results.get("selection_bias")
    panels = 1 + bool(results["gap"]) + bool(bias)
    figure = Figure(figsize=(5.5 * panels, 4.4))
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(1, panels, squeeze=False)[0])

    def lines(ax: Any, stats_by_arch: dict[str, dict[str, Any]]) -> None:
        for architecture, by_corr in stats_by_arch.items():
            i = architectures.index(architecture)
            stats = [by_corr[correlation_key(c)] for c in correlations]
            # One colour per architecture in both panels; a small offset keeps the bars apart.
            ax.errorbar(
                correlations + 0.012 * (i - (len(architectures) - 1) / 2),
                [s["mean"] for s in stats],
                yerr=[s["std"] for s in stats],
                marker="o",
                capsize=3,
                color=f"C{i}",
                label=architecture,
            )

    ax = axes.pop(0)
    lines(ax, results["loss"])
    ax.set(
        xlabel="task correlation",
        ylabel="final eval MSE (y1 + y2)",
        title=f"MMoE synthetic: mean ± std over {config['seeds']} seed(s)",
    )
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend()
    if results["gap"]:
        ax = axes.pop(0)
        lines(ax, results["gap"])
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set(
            xlabel="task correlation",
            ylabel=f"MSE({BASELINE}) - MSE(arch), paired by seed",
            title=f"advantage over {BASELINE} (> 0: better)",
        )
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend()
    if bias:
        ax = axes.pop(0)
        names = list(bias["models"])
        positions = np.arange(len(names))
        for j, (key, label) in enumerate((("bias_unclicked", "unclicked"), ("bias_clicked", "clicked"))):
            ax.bar(
                positions + (j - 0.5) * 0.38,
                [bias["models"][n][key]["mean"] for n in names],
                width=0.38,
                yerr=[bias["models"][n][key]["std"] for n in names],
                capsize=3,
                color=f"C{j}",
                label=f"{label} impressions",
            )
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.axhline(
            bias["data"]["clicked_rate_bias_unclicked"]["mean"],
            color="black",
            linestyle="--",
            linewidth=0.8,
            label="constant clicked-rows CVR (unclicked)",
        )
        ax.set_xticks(positions, names, rotation=15)
        ax.set(
            ylabel="mean(pCVR - true CVR)",
            title=f"pCVR bias: mean ± std over {len(bias['config']['seeds'])} seed(s)",
        )
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
