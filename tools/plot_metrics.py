#!/usr/bin/python3
"""Learning curves of one or several dropnet runs in one PNG, like the paper's figures: test
accuracy vs iteration (top) and the training loss (bottom), with the DropIn schedule (p of every
dropin layer: the "<layer>.p" values of the train records; the active width of every grow layer:
"<layer>.width") on a second y axis of the accuracy panel.

usage: plot_metrics.py RUN [RUN ...] --out PNG [--labels A,B,...] [--title T] [--metric NAME]
                       [--no-schedule] [--log-loss]
RUN is a run directory (holding metrics.jsonl, as dropnet-train writes it) or a metrics.jsonl file.
"""
import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_run(path):
    """Returns (train records, test records, the iteration it diverged at or None) of a run directory
    or metrics.jsonl file."""
    f = os.path.join(path, "metrics.jsonl") if os.path.isdir(path) else path
    if not os.path.isfile(f):
        sys.exit(f"plot_metrics.py: error: no metrics.jsonl at '{path}'")
    train, test, diverged = [], [], None
    with open(f) as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"plot_metrics.py: error: {f}:{n}: not JSON: {e}")
            if r.get("kind") == "status":  # the run's end ("finished", "diverged", ...)
                if r.get("status") == "diverged":
                    diverged = r.get("iter")
                continue
            if "iter" not in r:
                continue
            (test if r.get("kind") == "test" else train).append(r)
    return train, test, diverged


def default_label(path):
    p = os.path.abspath(path)
    if not os.path.isdir(p):
        p = os.path.dirname(p)
    return os.path.basename(p)


def series(records, key):
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(r["iter"])
            ys.append(v)
    return xs, ys


def pick_metric(test, wanted):
    if wanted:
        return wanted
    keys = [k for r in test for k in r if k not in ("kind", "iter")]
    if "accuracy" in keys:
        return "accuracy"
    acc = [k for k in keys if "accuracy" in k]
    return acc[0] if acc else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories or metrics.jsonl files")
    ap.add_argument("--out", required=True, help="output PNG")
    ap.add_argument("--labels", default="", help="comma-separated legend labels, one per run")
    ap.add_argument("--title", default="")
    ap.add_argument("--metric", default="", help="test metric to plot (default: accuracy)")
    ap.add_argument("--no-schedule", action="store_true", help="leave the DropIn p curves out")
    ap.add_argument("--max-schedule-curves", type=int, default=12,
                    help="with more DropIn / grow layers than this, plot their mean p (or width)")
    ap.add_argument("--log-loss", action="store_true", help="logarithmic loss axis")
    ap.add_argument("--dpi", type=int, default=100)
    a = ap.parse_args()

    labels = [s for s in a.labels.split(",")] if a.labels else []
    if labels and len(labels) != len(a.runs):
        sys.exit(f"plot_metrics.py: error: {len(labels)} labels for {len(a.runs)} runs")
    runs = []
    for i, path in enumerate(a.runs):
        train, test, diverged = read_run(path)
        label = labels[i] if labels else default_label(path)
        if diverged is not None:
            label += f" (diverged at iteration {diverged})"
        runs.append((label, train, test, diverged))

    fig, (ax_acc, ax_loss) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax_p = None
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    plotted_acc = plotted_loss = False
    metric_names = set()
    for i, (label, train, test, diverged) in enumerate(runs):
        c = colors[i % len(colors)]
        metric = pick_metric(test, a.metric)
        if metric:
            xs, ys = series(test, metric)
            if xs:
                ax_acc.plot(xs, ys, "-o", color=c, markersize=3, label=label)
                plotted_acc = True
                metric_names.add(metric)
        xs, ys = series(train, "loss")
        if xs:
            ax_loss.plot(xs, ys, "-", color=c, linewidth=1.2, label=label)
            plotted_loss = True
        if diverged is not None:  # an x where the run stopped, on both panels
            for ax in (ax_acc, ax_loss):
                ax.axvline(diverged, color=c, linestyle=":", linewidth=1)
            ax_acc.plot([diverged], [0], "x", color=c, markersize=9, clip_on=False)
        if a.no_schedule:
            continue
        p_keys = sorted({k for r in train for k in r if k.endswith(".p") or k.endswith(".width")})
        what = "width" if p_keys and all(k.endswith(".width") for k in p_keys) else "DropIn p"
        curves = [(k, *series(train, k)) for k in p_keys]
        curves = [(k, xs, ys) for k, xs, ys in curves if xs]
        if len(curves) > a.max_schedule_curves:
            # Many layers (asynchronous DropIn over a hundred): their mean, the fraction of the
            # added depth that is in, instead of a curve each.
            by_x = {}
            for _, xs, ys in curves:
                for x, y in zip(xs, ys):
                    by_x.setdefault(x, []).append(y)
            xs = sorted(by_x)
            curves = [("mean", xs, [sum(by_x[x]) / len(by_x[x]) for x in xs])]
            what = f"mean {what}"
        for j, (k, xs, ys) in enumerate(curves):
            if ax_p is None:
                ax_p = ax_acc.twinx()
                ax_p.set_ylabel("DropIn p / grow width (dashed)")
                ax_p.set_ylim(-0.02, 1.02)
            ax_p.plot(xs, ys, "--", color=c, linewidth=0.9, alpha=0.6,
                      label=f"{label}: {what} ({len(p_keys)} layers)" if j == 0 else None)

    ax_acc.set_ylabel("test " + ("/".join(sorted(metric_names)) if metric_names else "accuracy"))
    ax_acc.grid(True, alpha=0.3)
    if not plotted_acc:
        ax_acc.text(0.5, 0.5, "no test records", ha="center", va="center", transform=ax_acc.transAxes)
    handles, names = ax_acc.get_legend_handles_labels()
    if ax_p is not None:
        h2, n2 = ax_p.get_legend_handles_labels()
        handles, names = handles + h2, names + n2
    if handles:
        ax_acc.legend(handles, names, loc="lower right", fontsize=8)
    ax_loss.set_ylabel("train loss")
    ax_loss.set_xlabel("iteration")
    ax_loss.grid(True, alpha=0.3)
    if a.log_loss:
        ax_loss.set_yscale("log")
    if not plotted_loss:
        ax_loss.text(0.5, 0.5, "no train records", ha="center", va="center", transform=ax_loss.transAxes)
    if a.title:
        fig.suptitle(a.title)
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(a.out, dpi=a.dpi)
    print(f"wrote {a.out} ({len(runs)} run(s))")


if __name__ == "__main__":
    main()
