#!/usr/bin/python3
"""Conformance of dropnet's layers with PyTorch (label `torch`).

For each case a small net `data -> <layers under test> -> fc -> softmax_loss` is run once forward
and backward by `dropnet-dump` on a random batch; the same computation is rebuilt in PyTorch
(float64) from the dumped parameters; every blob value, the input gradient and every parameter
gradient are compared. Prints the worst error per case. Exit 77 (skip) without torch.
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover
    print(f"SKIP: {e}")
    sys.exit(77)

ap = argparse.ArgumentParser()
ap.add_argument("--dump", required=True)
a = ap.parse_args()
torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(7)

HEAD = """name: conformance
seed: 5
data:
  train: {source: synthetic, shape: [1, 1, 1], batch_size: 1}
solver: {base_lr: 0.1, max_iter: 1}
layers:
  - {name: data, type: data, top: [data, label]}
"""
TAIL = """  - {{name: fc, type: fc, bottom: {last}, top: fc, num_output: 5, weight_filler: {{type: gaussian, std: 0.3}},
     bias_filler: {{type: uniform, min: -0.5, max: 0.5}}}}
  - {{name: loss, type: softmax_loss, bottom: [fc, label], top: loss}}
"""


def conv_layer(name, bottom, n, k, s=1, p=0, g=1):
    return (f"  - {{name: {name}, type: conv, bottom: {bottom}, top: {name}, num_output: {n}, kernel: {k}, stride: {s},"
            f" pad: {p}, group: {g}, weight_filler: {{type: gaussian, std: 0.4}},"
            f" bias_filler: {{type: uniform, min: -0.2, max: 0.2}}}}\n")


def t_conv(P, x, name, s=1, p=0, g=1):
    return F.conv2d(x, P[f"{name}.weight"], P[f"{name}.bias"], stride=s, padding=p, groups=g)


def caffe_pool_out(size, k, s, p):
    o = int(math.ceil((size + 2 * p - k) / s)) + 1
    if p > 0 and (o - 1) * s >= size + p:
        o -= 1
    return o


def t_pool(x, method, k, s, p):
    h, w = x.shape[2:]
    oh, ow = caffe_pool_out(h, k, s, p), caffe_pool_out(w, k, s, p)
    if method == "max":
        y = F.max_pool2d(x, k, s, p, ceil_mode=True)
    else:
        y = F.avg_pool2d(x, k, s, p, ceil_mode=True, count_include_pad=True)
    return y[:, :, :oh, :ow]


def t_lrn_within(x, n, alpha, beta):
    sq = F.avg_pool2d(x * x, n, 1, (n - 1) // 2, count_include_pad=True)
    return x * (1 + alpha * sq) ** (-beta)


def t_resize(x, c, h, w, method, mode):
    C = x.shape[1]
    if mode == "tile" or (mode == "average" and c >= C):
        x = x[:, [i % C for i in range(c)]]
    elif mode == "pad":
        x = F.pad(x, (0, 0, 0, 0, 0, max(0, c - C)))[:, :c]
    else:  # average: output channel i = mean of input channels j with j % c == i
        x = torch.stack([x[:, i::c].mean(1) for i in range(c)], 1)
    if method == "nearest":
        return F.interpolate(x, size=(h, w), mode="nearest")
    if method == "bilinear":
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return F.adaptive_avg_pool2d(x, (h, w))


def t_dropin_gradual(skip, new, p):
    n = skip[0].numel()
    k = int(math.floor((1.0 - float(np.float32(p))) * n))
    r = torch.ones(n)
    r[:k] = 0
    r = r.reshape(skip.shape[1:])
    return r * new + (1 - r) * skip


CASES = [
    ("conv_group_stride_pad", (3, 4, 9, 8), conv_layer("c", "data", 6, 3, 2, 1, 2), "c",
     lambda P, x: {"c": t_conv(P, x, "c", 2, 1, 2)}),
    ("conv_k5", (2, 3, 8, 8), conv_layer("c", "data", 4, 5), "c", lambda P, x: {"c": t_conv(P, x, "c")}),
    ("conv_1x1_stride2", (2, 5, 7, 7), conv_layer("c", "data", 3, 1, 2), "c", lambda P, x: {"c": t_conv(P, x, "c", 2)}),
    ("maxpool_ceil_pad", (2, 3, 7, 6), "  - {name: p, type: pool, bottom: data, top: p, method: max, kernel: 3, stride: 2, pad: 1}\n",
     "p", lambda P, x: {"p": t_pool(x, "max", 3, 2, 1)}),
    ("maxpool_ceil", (2, 3, 8, 7), "  - {name: p, type: pool, bottom: data, top: p, method: max, kernel: 3, stride: 2}\n",
     "p", lambda P, x: {"p": t_pool(x, "max", 3, 2, 0)}),
    ("avepool_ceil_pad", (2, 3, 7, 6), "  - {name: p, type: pool, bottom: data, top: p, method: ave, kernel: 3, stride: 2, pad: 1}\n",
     "p", lambda P, x: {"p": t_pool(x, "ave", 3, 2, 1)}),
    ("lrn_across", (2, 7, 4, 3), "  - {name: l, type: lrn, bottom: data, top: l, local_size: 5, alpha: 0.5, beta: 0.75, k: 2}\n",
     "l", lambda P, x: {"l": F.local_response_norm(x, 5, alpha=0.5, beta=0.75, k=2.0)}),
    ("lrn_within", (2, 3, 6, 5), "  - {name: l, type: lrn, bottom: data, top: l, region: within_channel, local_size: 3, alpha: 0.9, beta: 0.75}\n",
     "l", lambda P, x: {"l": t_lrn_within(x, 3, 0.9, 0.75)}),
]
for method in ("nearest", "bilinear", "area"):
    for mode, c in (("tile", 5), ("pad", 5), ("average", 2)):
        for (h, w) in ((9, 7), (3, 2)):
            CASES.append((f"resize_{method}_{mode}_{h}x{w}", (2, 3, 5, 4),
                          f"  - {{name: r, type: resize, bottom: data, top: r, channels: {c}, height: {h}, width: {w}, method: {method}, channel_mode: {mode}}}\n",
                          "r", lambda P, x, c=c, h=h, w=w, method=method, mode=mode: {"r": t_resize(x, c, h, w, method, mode)}))
CASES.append(("dropin_gradual_mid", (3, 2, 5, 4),
              conv_layer("a", "data", 3, 3, 1, 1) + conv_layer("b", "data", 3, 1) +
              "  - {name: d, type: dropin, bottom: [a, b], top: d, length: 100, start: 10}\n", "d",
              lambda P, x: {"a": t_conv(P, x, "a", 1, 1), "b": t_conv(P, x, "b"),
                            "d": t_dropin_gradual(t_conv(P, x, "a", 1, 1), t_conv(P, x, "b"), (47 - 10) / 100.0)}))
CASES.append(("fc_relu_chain", (4, 3, 2, 2), "  - {name: h, type: fc, bottom: data, top: h, num_output: 6, weight_filler: {type: gaussian, std: 0.5}}\n"
              "  - {name: r, type: relu, bottom: h, top: r}\n", "r",
              lambda P, x: {"h": F.linear(x.flatten(1), P["h.weight"], P["h.bias"]),
                            "r": F.relu(F.linear(x.flatten(1), P["h.weight"], P["h.bias"]))}))

worst_all = 0.0
failed = []
with tempfile.TemporaryDirectory() as tmp:
    for name, shape, layers, last, torch_fn in CASES:
        d = os.path.join(tmp, name)
        os.makedirs(d)
        cfg = os.path.join(d, "net.yaml")
        with open(cfg, "w") as f:
            f.write(HEAD + layers + TAIL.format(last=last))
        x = rng.uniform(-1, 1, size=shape).astype(np.float32)
        y = rng.integers(0, 5, size=shape[0]).astype(np.float32)
        np.save(os.path.join(d, "x.npy"), x)
        np.save(os.path.join(d, "y.npy"), y)
        out = os.path.join(d, "out")
        r = subprocess.run([a.dump, cfg, "--input", os.path.join(d, "x.npy"), "--labels", os.path.join(d, "y.npy"),
                            "--out", out, "--iter", "47"], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name}: dropnet-dump failed: {r.stderr.strip()}")
            failed.append(name)
            continue
        load = lambda n: torch.from_numpy(np.load(os.path.join(out, n)).astype(np.float64))
        P = {}
        for fn in os.listdir(out):
            if fn.startswith("param.") and not fn.endswith(".grad.npy"):
                P[fn[len("param."):-len(".npy")]] = load(fn).requires_grad_(True)
        xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        blobs = torch_fn(P, xt)
        fc = F.linear(blobs[last].flatten(1), P["fc.weight"], P["fc.bias"])
        loss = F.cross_entropy(fc, torch.from_numpy(y.astype(np.int64)))
        loss.backward()
        checks = [(k, v.detach(), load(k + ".npy")) for k, v in blobs.items()]
        checks += [("fc", fc.detach(), load("fc.npy")), ("loss", loss.detach().reshape(1), load("loss.npy")),
                   ("data.grad", xt.grad, load("data.grad.npy"))]
        checks += [(f"param.{k}.grad", v.grad, load(f"param.{k}.grad.npy")) for k, v in P.items()]
        worst, worst_name = 0.0, ""
        for k, ref, got in checks:
            if tuple(ref.shape) != tuple(got.shape):
                print(f"{name}: {k} shape {tuple(got.shape)} != torch {tuple(ref.shape)}")
                worst = float("inf")
                continue
            err = ((ref - got).abs() / (1e-4 + 1e-3 * ref.abs())).max().item() if ref.numel() else 0.0
            if err > worst:
                worst, worst_name = err, k
        abs_err = max(((ref - got).abs().max().item() if ref.numel() and tuple(ref.shape) == tuple(got.shape) else 0.0)
                      for _, ref, got in checks)
        status = "ok" if worst <= 1.0 else "FAIL"
        print(f"{name:32s} worst |err|/(1e-4+1e-3|ref|) = {worst:7.3f} ({worst_name}), max abs err {abs_err:.2e}  {status}")
        worst_all = max(worst_all, worst)
        if worst > 1.0:
            failed.append(name)
print(f"{len(CASES) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
