#!/usr/bin/python3
"""Summarizes a directory of dropnet runs (each RUN/metrics.jsonl) into results.md and learning-curve
PNGs grouped by figure prefix (fig2_*, fig3_*), like the paper's Figures 2 and 3, drawn by
plot_metrics.py (the one plotter). Runs named <run>_seed<k> are repeats of <run> with another
seed: a second table gives mean, spread and range of the final accuracy over the seeds, and the
figures draw their mean with a band for the range. A figure whose runs hold fewer than two test
records in all is not drawn (an existing one is removed): a dot is not a curve.

usage: summarize_runs.py OUT [--scale S] [--command CMD | --commands FILE] [--title T]
                         [--reference RUN [--reference-label L]]
The table also gives each run's mean training speed (images/s over its display records): with DropIn
compute skipping, what a run costs depends on its schedule.
"""
import argparse
import os
import re

import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot_metrics  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--scale", default="1")
ap.add_argument("--command", default="")
ap.add_argument("--commands", help="a file of the commands that made the runs, one per line (runs made in parts)")
ap.add_argument("--title", default="MNIST-style DropIn experiments (paper Figures 2 and 3)")
ap.add_argument("--converged", type=float, default=0.5, help="final test accuracy that counts as converged")
ap.add_argument("--reference", default="", help="a run (the shallow net) whose final accuracy each figure shows as a line")
ap.add_argument("--reference-label", default="LeNet (shallow)")
ap.add_argument("--figures-only", action="store_true", help="redraw the figures, leave results.md as it is")
a = ap.parse_args()

# Each run read once (plot_metrics.Run: its records, where it diverged or was stopped); the table
# adds the error its log names.
runs = {}
for name in sorted(os.listdir(a.out)):
    if not os.path.isfile(os.path.join(a.out, name, "metrics.jsonl")):
        continue
    run = plot_metrics.Run(os.path.join(a.out, name))
    log = os.path.join(a.out, name + ".log")
    err = ""
    if os.path.isfile(log):
        for line in open(log):
            if "error" in line:
                err = line.strip().split("error: ", 1)[-1][:80]
    # A run stopped by hand (a signal: dropnet-train snapshots and exits) ends before max_iter.
    if not err and run.stopped:
        err = f"stopped at iteration {run.stopped[0]} of {run.stopped[1]}: the final accuracy is the last test's"
    runs[name] = (run, err)


def final_acc(tests):
    return tests[-1].get("accuracy") if tests else None


def mean_speed(trains):
    v = [r["images_per_s"] for r in trains if r.get("images_per_s")]
    return f"{sum(v) / len(v):.0f}" if v else "-"


rows = [f"| run | final test accuracy | mean of the last 4 tests | iterations to 80% of final | "
        f"converged (>= {100 * a.converged:.0f}%) | images/s | note |",
        "|---|---|---|---|---|--:|---|"]
for name, (run, err) in runs.items():
    tests, trains = run.test, run.train
    acc = final_acc(tests)
    if acc is None or acc != acc:
        rows.append(f"| {name} | - | - | - | no | {mean_speed(trains)} | {err or 'no test result'} |")
        continue
    it80 = next((t["iter"] for t in tests if t.get("accuracy", 0) >= 0.8 * acc), None)
    last = [t["accuracy"] for t in tests if "accuracy" in t][-4:]
    converged = acc >= a.converged and not err.startswith("divergence")
    rows.append(f"| {name} | {acc:.4f} | {sum(last) / len(last):.4f} | {it80} | {'yes' if converged else 'no'} "
                f"| {mean_speed(trains)} | {err} |")

# Repeats with other seeds: <run>_seed<k> (seed 1 is <run> itself).
seeds = {}
for name, (run, _) in runs.items():
    m = re.match(r"(.+)_seed(\d+)$", name)
    base, seed = (m.group(1), int(m.group(2))) if m else (name, 1)
    acc = final_acc(run.test)
    if acc is not None and acc == acc:
        seeds.setdefault(base, []).append((seed, acc))
seed_rows = []
for base, vals in seeds.items():
    if len(vals) < 2:
        continue
    accs = [v for _, v in sorted(vals)]
    mean = sum(accs) / len(accs)
    std = (sum((x - mean) ** 2 for x in accs) / (len(accs) - 1)) ** 0.5
    seed_rows.append(f"| {base} | {', '.join(str(k) for k, _ in sorted(vals))} | {mean:.4f} | {std:.4f} | "
                     f"{min(accs):.4f} - {max(accs):.4f} |")
if seed_rows:
    rows += ["", "Across seeds (final test accuracy; std is the sample standard deviation):", "",
             "| run | seeds | mean | std | range |", "|---|---|---|---|---|"] + seed_rows

with open(os.path.join(a.out, "results.md" if not a.figures_only else os.devnull), "w") as f:
    f.write(f"# {a.title}\n\n")
    if a.commands:
        f.write("Made by (each command names its own --scale: iterations, DropIn lengths and spacing x scale):\n\n")
        f.write("".join(f"- `{c.strip()}`\n" for c in open(a.commands) if c.strip()) + "\n")
    else:
        f.write(f"Made by: `{a.command}` (scale {a.scale}: iterations, DropIn lengths and test interval x{a.scale}).\n\n")
    f.write("\n".join(rows) + "\n")

# Figures: fig<k>_<net>_<init>_<plain|L<length>>[_seed<s>], one curve per variant (seeds together).
groups = {}
for name in runs:
    m = re.match(r"(fig\d)_(lenet\d+(?:_relu)?)_(\w+?)_(plain|L\d+)(?:_seed(\d+))?$", name)
    if m:
        variants = groups.setdefault(f"{m.group(1)}_{m.group(2)}_{m.group(3)}", {})
        variants.setdefault(m.group(4), []).append((int(m.group(5) or 1), name))
reference = plot_metrics.Run(a.reference) if a.reference else None
for g, variants in groups.items():
    png = os.path.join(a.out, g + ".png")
    curves = []
    for label in sorted(variants, key=lambda v: (v != "plain", int(v[1:]) if v != "plain" else 0)):
        name_label = "no DropIn" if label == "plain" else f"DropIn length {int(label[1:])}"
        if label != "plain" and float(a.scale) != 1:  # run names carry the unscaled (paper) length
            name_label += f" (x{a.scale}: {round(int(label[1:]) * float(a.scale))})"
        members = [runs[n][0] for _, n in sorted(variants[label])]
        curves.append((name_label, members))
    if sum(len(r.test) for _, rs in curves for r in rs) < 2:
        if os.path.exists(png):
            os.remove(png)
        print(f"{g}: no figure (fewer than two test records)")
        continue
    plot_metrics.plot(curves, png, title=g.replace("_", " "), max_schedule_curves=12, dpi=110, reference=reference,
                      reference_label=a.reference_label)
if not a.figures_only:
    print(open(os.path.join(a.out, "results.md")).read())
