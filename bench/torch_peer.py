#!/usr/bin/env python3
"""PyTorch eager peer of a dropnet net, for end-to-end training throughput.

Reads a resolved dropnet config (`dropnet-summary CONFIG --synthetic --config`: repeat blocks
expanded, vars and overrides applied, synthetic data), builds the same TRAIN-phase net layer by
layer (conv, relu, pool with Caffe's ceil rounding, lrn, fc, dropout, gradual/regularizing
dropin, softmax loss), and trains it with SGD (momentum, weight decay, per-parameter lr_mult) on
one synthetic batch copied from pinned host memory every iteration, as dropnet's data layer feeds
the device. CUDA: cudnn.benchmark on; --precision fp32 (default: TF32 off for matmul and cuDNN),
tf32 (TF32 on for both) or bf16 (FP32 weights, forward and backward under BF16 autocast). Prints
`torch_img_per_s=<v>` (mean over the iterations after the warm-up, timed with a device sync at
both ends).

  torch_peer.py RESOLVED.yaml [--device cuda|cpu] [--iters 50] [--warmup 10] [--dropin-iter T]
                [--precision fp32|tf32|bf16]
"""
import argparse
import math
import sys
import time

import torch
import torch.nn.functional as F
import yaml

ap = argparse.ArgumentParser()
ap.add_argument("config")
ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
ap.add_argument("--iters", type=int, default=50)
ap.add_argument("--warmup", type=int, default=10)
ap.add_argument("--dropin-iter", type=int, default=None,
                help="iteration whose DropIn p the gradual layers use (default: half their length)")
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
a = ap.parse_args()

dev = torch.device(a.device)
if dev.type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.benchmark = True
if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(1)

cfg = yaml.safe_load(open(a.config))
train = cfg["data"]["train"]
batch = int(train["batch_size"])
shape = list(train["shape"])
if "crop" in train:
    crop = train["crop"]
    shape[1:] = [crop, crop] if isinstance(crop, int) else list(crop)
classes = int(train.get("num_classes", 10))


def pair(layer, key, default):
    v = layer.get(key, default)
    return (v, v) if isinstance(v, int) else tuple(v)


def caffe_pool_pad(size, k, s, p):
    """Extra right/bottom padding that makes floor-mode pooling give Caffe's ceil-mode size."""
    out = math.ceil((size + 2 * p - k) / s) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return max(0, (out - 1) * s + k - (size + 2 * p))


class Net(torch.nn.Module):
    def __init__(self, layers, in_shape):
        super().__init__()
        self.ops = []  # (kind, layer, module or None)
        self.mods = torch.nn.ModuleDict()
        self.lr_mult = {}
        shapes = {}
        for l in layers:
            if l.get("phase", "both") == "test":
                continue
            t, name = l["type"], l["name"]
            bottoms = l.get("bottom", [])
            bottoms = [bottoms] if isinstance(bottoms, str) else bottoms
            tops = l.get("top", [])
            tops = [tops] if isinstance(tops, str) else tops
            if t == "data":
                shapes[tops[0]] = [batch] + in_shape
                self.data_tops = tops
                continue
            x = shapes[bottoms[0]]
            if t == "conv":
                kh, kw = pair(l, "kernel", 1)
                sh, sw = pair(l, "stride", 1)
                ph, pw = pair(l, "pad", 0)
                m = torch.nn.Conv2d(x[1], l["num_output"], (kh, kw), (sh, sw), (ph, pw), groups=l.get("group", 1),
                                    bias=l.get("bias", True))
                y = [x[0], l["num_output"], (x[2] + 2 * ph - kh) // sh + 1, (x[3] + 2 * pw - kw) // sw + 1]
            elif t == "fc":
                m = torch.nn.Linear(math.prod(x[1:]), l["num_output"], bias=l.get("bias", True))
                y = [x[0], l["num_output"]]
            elif t == "pool":
                kh, kw = pair(l, "kernel", 1)
                sh, sw = pair(l, "stride", 1)
                ph, pw = pair(l, "pad", 0)
                eh, ew = caffe_pool_pad(x[2], kh, sh, ph), caffe_pool_pad(x[3], kw, sw, pw)
                m = None
                l = dict(l, _geom=(kh, kw, sh, sw, ph, pw, eh, ew))
                y = [x[0], x[1], (x[2] + 2 * ph + eh - kh) // sh + 1, (x[3] + 2 * pw + ew - kw) // sw + 1]
            elif t == "lrn":
                if l.get("region", "across_channels") != "across_channels":
                    sys.exit(f"torch_peer: lrn region {l['region']} is not supported")
                m = torch.nn.LocalResponseNorm(l.get("local_size", 5), l.get("alpha", 1.0), l.get("beta", 0.75),
                                               l.get("k", 1.0))
                y = x
            elif t in ("relu", "dropout", "softmax_loss", "accuracy"):
                m, y = None, x
            elif t == "dropin":
                m, y = None, x
                mode = l.get("mode", "gradual")
                if mode == "gradual":
                    length, start = int(l.get("length", 1)), int(l.get("start", 0))
                    it = a.dropin_iter if a.dropin_iter is not None else start + length // 2
                    p = min(1.0, max(0.0, (it - start) / length))
                    units = x[1] if l.get("unit", "element") == "channel" else math.prod(x[1:])
                    skip = math.floor((1 - p) * units)
                    mask = torch.zeros(units)
                    mask[skip:] = 1
                    if l.get("unit", "element") == "channel":
                        mask = mask.repeat_interleave(math.prod(x[2:]))
                    l = dict(l, _mask=mask.reshape(x[1:]).to(dev))
                else:
                    l = dict(l, _p=float(l.get("p", 0.5)))
            else:
                sys.exit(f"torch_peer: layer type '{t}' ({name}) is not supported")
            if m is not None:
                self.mods[name] = m
                mult = l.get("lr_mult", [1, 1])
                mult = [mult, mult] if not isinstance(mult, list) else mult
                for i, prm in enumerate(m.parameters()):
                    self.lr_mult[prm] = float(mult[min(i, len(mult) - 1)])
            self.ops.append((t, l, name, bottoms, tops))
            for tp in tops:
                shapes[tp] = y

    def forward(self, data, label):
        blobs = dict(zip(self.data_tops, (data, label)))
        loss = None
        for t, l, name, bottoms, tops in self.ops:
            x = blobs[bottoms[0]]
            if t == "conv" or t == "lrn":
                y = self.mods[name](x)
            elif t == "fc":
                y = self.mods[name](x.flatten(1))
            elif t == "relu":
                y = F.relu(x)
            elif t == "pool":
                kh, kw, sh, sw, ph, pw, eh, ew = l["_geom"]
                if l.get("method", "max") == "max":
                    xp = F.pad(x, (pw, pw + ew, ph, ph + eh), value=-math.inf) if (ph or pw or eh or ew) else x
                    y = F.max_pool2d(xp, (kh, kw), (sh, sw))
                else:
                    y = F.avg_pool2d(F.pad(x, (pw, pw + ew, ph, ph + eh)), (kh, kw), (sh, sw))
            elif t == "dropout":
                y = F.dropout(x, l.get("ratio", 0.5), True)
            elif t == "dropin":
                new = blobs[bottoms[1]]
                if "_mask" in l:
                    y = torch.lerp(x, new, l["_mask"])
                else:
                    r = (torch.rand_like(x) < l["_p"]).to(x.dtype)
                    y = torch.lerp(x, new, r)
            elif t == "softmax_loss":
                y = F.cross_entropy(x, blobs[bottoms[1]])
                loss = y
            else:  # accuracy in TRAIN: nothing to train
                continue
            blobs[tops[0]] = y
        return loss


layers = cfg["layers"]
net = Net(layers, shape).to(dev)
sv = cfg.get("solver", {})
groups = {}
for prm, mult in net.lr_mult.items():
    groups.setdefault(mult, []).append(prm)
base_lr = float(sv.get("base_lr", 0.01))
opt = torch.optim.SGD([{"params": ps, "lr": base_lr * m} for m, ps in groups.items()], lr=base_lr,
                      momentum=float(sv.get("momentum", 0.9)), weight_decay=float(sv.get("weight_decay", 0.0)))

x_host = torch.randn([batch] + shape)
y_host = torch.randint(0, classes, (batch,))
if dev.type == "cuda":
    x_host, y_host = x_host.pin_memory(), y_host.pin_memory()


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


t0 = None
for it in range(a.warmup + a.iters):
    if it == a.warmup:
        sync()
        t0 = time.perf_counter()
    xb = x_host.to(dev, non_blocking=True)
    yb = y_host.to(dev, non_blocking=True)
    opt.zero_grad(set_to_none=True)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        loss = net(xb, yb)
    loss.backward()
    opt.step()
sync()
dt = time.perf_counter() - t0
print(f"torch {torch.__version__} on {torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}: "
      f"{cfg.get('name', '?')} batch {batch}, loss {loss.item():.4f}")
print(f"torch_img_per_s={a.iters * batch / dt:.1f}")
