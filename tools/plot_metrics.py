#!/usr/bin/python3
"""Learning curves of dropnet runs in one PNG, like the paper's figures: test accuracy vs iteration
(top) and the training loss (bottom), with the DropIn schedule (p of every dropin layer: the
"<layer>.p" values of the train records; the active width of every grow layer: "<layer>.width") on
a second y axis of the accuracy panel. dropnet's one plotter: summarize_runs.py draws its figures
with it too.

Runs named <run>_seed<k> given together with <run> (seed 1) are one curve: the mean over the seeds
with a band from the lowest to the highest (the loss: the mean). A run that diverged is marked
with an x at the iteration it stopped (and a dotted line), its legend entry says so.
--reference RUN draws that run's final test accuracy as a horizontal line (the shallow net).

usage: plot_metrics.py RUN [RUN ...] --out PNG [--labels A,B,...] [--title T] [--metric NAME]
                       [--reference RUN [--reference-label L]] [--no-seed-groups]
                       [--no-schedule] [--log-loss]
RUN is a run directory (holding metrics.jsonl, as dropnet-train writes it) or a metrics.jsonl file.
"""
import argparse
import json
import math
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class Run:
    def __init__(self, path):
        """Reads the train and test records of a run directory or metrics.jsonl file, and the
        iteration it diverged at (its status record) or None."""
        f = os.path.join(path, "metrics.jsonl") if os.path.isdir(path) else path
        if not os.path.isfile(f):
            sys.exit(f"plot_metrics.py: error: no metrics.jsonl at '{path}'")
        self.path = path
        self.train, self.test, self.diverged = [], [], None
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
                        self.diverged = r.get("iter")
                    continue
                if "iter" not in r:
                    continue
                (self.test if r.get("kind") == "test" else self.train).append(r)
        # Runs from before the status record: the divergence named in the log beside the run
        # directory (<run>.log, as the reproduce scripts write it).
        log = os.path.abspath(path).rstrip("/") + ".log"
        if self.diverged is None and os.path.isdir(path) and os.path.isfile(log):
            for line in open(log, errors="replace"):
                m = re.search(r"error: divergence.* at iteration (\d+)", line)
                if m:
                    self.diverged = int(m.group(1))
        # A run that ended before its max_iter without diverging was stopped (a signal, a time limit).
        self.stopped = None
        cfg = os.path.join(path, "config.yaml")
        last = max((r["iter"] for r in self.train + self.test), default=0)
        if self.diverged is None and os.path.isdir(path) and os.path.isfile(cfg):
            m = re.search(r"^\s*max_iter:\s*(\d+)", open(cfg, errors="replace").read(), re.M)
            if m and last < int(m.group(1)):
                self.stopped = (last, int(m.group(1)))


def run_name(path):
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


def final(run, metric="accuracy"):
    xs, ys = series(run.test, metric)
    return ys[-1] if ys else None


def group_seeds(paths):
    """[(base name, [(seed, path)])] in the order given: <run>_seed<k> joins <run> when both are given."""
    names = [run_name(p) for p in paths]
    bases = set(names)
    groups, index = [], {}
    for name, path in zip(names, paths):
        m = re.match(r"(.+)_seed(\d+)$", name)
        base, seed = (m.group(1), int(m.group(2))) if m and m.group(1) in bases else (name, 1)
        if base not in index:
            index[base] = len(groups)
            groups.append((base, []))
        groups[index[base]][1].append((seed, path))
    return groups


def mean_band(runs, key, records):
    """Mean, low and high over the runs at each iteration some run has (those with a value there)."""
    by_x = {}
    for r in runs:
        xs, ys = series(records(r), key)
        for x, y in zip(xs, ys):
            by_x.setdefault(x, []).append(y)
    xs = sorted(by_x)
    return xs, [sum(by_x[x]) / len(by_x[x]) for x in xs], [min(by_x[x]) for x in xs], [max(by_x[x]) for x in xs]


def plot(groups, out, title="", metric="", schedule=True, max_schedule_curves=12, log_loss=False, dpi=100,
         reference=None, reference_label=""):
    """groups: [(label, [Run, ...])]: one curve per group (the mean and range when it has several
    seeds). reference: a Run whose final test accuracy is drawn as a horizontal line. Returns a
    line per curve: its legend label and final value (mean and range over the seeds)."""
    fig, (ax_acc, ax_loss) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax_p = None
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    plotted_acc = plotted_loss = False
    metric_names = set()
    described = []
    for i, (label, runs) in enumerate(groups):
        c = colors[i % len(colors)]
        m = pick_metric([t for r in runs for t in r.test], metric)
        diverged = [(k, r.diverged) for k, r in enumerate(runs, 1) if r.diverged is not None]
        if len(runs) > 1:
            label += f" ({len(runs)} seeds: mean, range)"
        if diverged:
            label += " (diverged at iteration " + ", ".join(
                (f"{d}" if len(runs) == 1 else f"{d} (seed {k})") for k, d in diverged) + ")"
        stopped = [(k, r.stopped) for k, r in enumerate(runs, 1) if r.stopped is not None]
        if stopped:
            label += " (stopped at iteration " + ", ".join(
                (f"{a} of {b}" if len(runs) == 1 else f"{a} of {b} (seed {k})") for k, (a, b) in stopped) + ")"
        if m:
            xs, mean, lo, hi = mean_band(runs, m, lambda r: r.test)
            if xs:
                ax_acc.plot(xs, mean, "-o", color=c, markersize=3, label=label)
                if len(runs) > 1:
                    ax_acc.fill_between(xs, lo, hi, color=c, alpha=0.18, linewidth=0)
                plotted_acc = True
                metric_names.add(m)
                # A diverged run has no final value (its last test is from before it stopped).
                finals = [f for f in (final(r, m) for r in runs if r.diverged is None) if f is not None]
                described.append(f"{label}: final {m} " + (
                    "none" if not finals else f"{finals[0]:.4f}" if len(finals) == 1 else
                    f"mean {sum(finals) / len(finals):.4f}, range {min(finals):.4f} - {max(finals):.4f}") + (
                    f" (of the {len(finals)} runs that did not diverge)" if diverged and finals else ""))
            elif diverged:  # no test record at all: the legend still names the run
                ax_acc.plot([], [], "-o", color=c, markersize=3, label=label)
        xs, mean, lo, hi = mean_band(runs, "loss", lambda r: r.train)
        if xs:
            ax_loss.plot(xs, mean, "-", color=c, linewidth=1.2, label=label)
            if len(runs) > 1:
                ax_loss.fill_between(xs, lo, hi, color=c, alpha=0.12, linewidth=0)
            plotted_loss = True
        for _, d in diverged:  # an x where the run stopped, on both panels
            for ax in (ax_acc, ax_loss):
                ax.axvline(d, color=c, linestyle=":", linewidth=1)
            ax_acc.plot([d], [0], "x", color=c, markersize=9, clip_on=False)
        if not schedule:
            continue
        train = runs[0].train  # the seeds share the schedule
        p_keys = sorted({k for r in train for k in r if k.endswith(".p") or k.endswith(".width")})
        what = "width" if p_keys and all(k.endswith(".width") for k in p_keys) else "DropIn p"
        curves = [(k, *series(train, k)) for k in p_keys]
        curves = [(k, xs, ys) for k, xs, ys in curves if xs]
        if len(curves) > max_schedule_curves:
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
                      label=f"{groups[i][0]}: {what} ({len(p_keys)} layers)" if j == 0 else None)
    if reference is not None:
        ref = final(reference, pick_metric(reference.test, metric) or "accuracy")
        if ref is not None:
            ref_label = f"{reference_label or run_name(reference.path)}: final {ref:.4f}"
            ax_acc.axhline(ref, color="0.35", linestyle="-.", linewidth=1, label=ref_label)
            described.append("reference " + ref_label)

    ax_acc.set_ylabel("test " + ("/".join(sorted(metric_names)) if metric_names else "accuracy"))
    if all("accuracy" in m for m in metric_names):
        ax_acc.set_ylim(-0.02, 1.02)  # the schedule axis's range: the grid lines agree
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
    if log_loss:
        ax_loss.set_yscale("log")
    if not plotted_loss:
        ax_loss.text(0.5, 0.5, "no train records", ha="center", va="center", transform=ax_loss.transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return described


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories or metrics.jsonl files")
    ap.add_argument("--out", required=True, help="output PNG")
    ap.add_argument("--labels", default="", help="comma-separated legend labels, one per curve (seed groups: one)")
    ap.add_argument("--title", default="")
    ap.add_argument("--metric", default="", help="test metric to plot (default: accuracy)")
    ap.add_argument("--reference", default="", help="a run whose final test accuracy is a horizontal line")
    ap.add_argument("--reference-label", default="", help="its legend label (default: its name)")
    ap.add_argument("--no-seed-groups", action="store_true", help="a curve per run, <run>_seed<k> too")
    ap.add_argument("--no-schedule", action="store_true", help="leave the DropIn p curves out")
    ap.add_argument("--max-schedule-curves", type=int, default=12,
                    help="with more DropIn / grow layers than this, plot their mean p (or width)")
    ap.add_argument("--log-loss", action="store_true", help="logarithmic loss axis")
    ap.add_argument("--dpi", type=int, default=100)
    a = ap.parse_args()

    groups = ([(run_name(p), [(1, p)]) for p in a.runs] if a.no_seed_groups else group_seeds(a.runs))
    labels = [s for s in a.labels.split(",")] if a.labels else []
    if labels and len(labels) != len(groups):
        sys.exit(f"plot_metrics.py: error: {len(labels)} labels for {len(groups)} curves "
                 f"({len(a.runs)} runs; <run>_seed<k> joins <run> unless --no-seed-groups)")
    curves = [(labels[i] if labels else base, [Run(p) for _, p in sorted(members)])
              for i, (base, members) in enumerate(groups)]
    reference = Run(a.reference) if a.reference else None
    described = plot(curves, a.out, a.title, a.metric, not a.no_schedule, a.max_schedule_curves, a.log_loss, a.dpi,
                     reference, a.reference_label)
    print(f"wrote {a.out} ({len(a.runs)} run(s), {len(curves)} curve(s))")
    for d in described:
        print("  " + d)


if __name__ == "__main__":
    main()
