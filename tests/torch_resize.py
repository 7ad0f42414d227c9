#!/usr/bin/env python3
"""PyTorch reference for tests/unit_resize.cpp (the resize kernels' conformance check).

Usage: torch_resize.py DIR
DIR/cases.txt has one case per line: `name method channel_mode out_c out_h out_w`
(method: nearest | bilinear | area; channel_mode: tile | pad | average). For each case it reads
DIR/<name>_x.npy (N, C, H, W) and DIR/<name>_dy.npy (N, out_c, out_h, out_w), float32, and writes
DIR/<name>_y.npy (the resized x) and DIR/<name>_dx.npy (the gradient of sum(y * dy) w.r.t. x,
i.e. the adjoint applied to dy, by autograd).

Channels follow kernels/resize.h: tile reads channel k mod C; pad zero-fills beyond C and
truncates; average (only when out_c < C) is the mean of channels c' with c' mod out_c == k, and
tile otherwise. Spatial: F.interpolate nearest / bilinear (align_corners=False) and
F.adaptive_avg_pool2d.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def map_channels(x, mode, out_c):
    c = x.shape[1]
    if mode == "tile" or (mode == "average" and out_c >= c):
        idx = torch.arange(out_c) % c
        return x[:, idx]
    if mode == "pad":
        if out_c <= c:
            return x[:, :out_c]
        zeros = torch.zeros(x.shape[0], out_c - c, x.shape[2], x.shape[3], dtype=x.dtype)
        return torch.cat([x, zeros], dim=1)
    if mode == "average":
        return torch.stack([x[:, k::out_c].mean(dim=1) for k in range(out_c)], dim=1)
    raise ValueError("unknown channel mode " + mode)


def resample(x, method, out_h, out_w):
    if method == "nearest":
        return F.interpolate(x, size=(out_h, out_w), mode="nearest")
    if method == "bilinear":
        return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)
    if method == "area":
        return F.adaptive_avg_pool2d(x, (out_h, out_w))
    raise ValueError("unknown method " + method)


def main():
    d = sys.argv[1]
    torch.set_num_threads(1)
    with open(os.path.join(d, "cases.txt")) as f:
        for line in f:
            if not line.strip():
                continue
            name, method, mode, out_c, out_h, out_w = line.split()
            out_c, out_h, out_w = int(out_c), int(out_h), int(out_w)
            x = torch.from_numpy(np.load(os.path.join(d, name + "_x.npy"))).requires_grad_(True)
            dy = torch.from_numpy(np.load(os.path.join(d, name + "_dy.npy")))
            y = resample(map_channels(x, mode, out_c), method, out_h, out_w)
            (y * dy).sum().backward()
            np.save(os.path.join(d, name + "_y.npy"), y.detach().numpy().astype(np.float32))
            np.save(os.path.join(d, name + "_dx.npy"), x.grad.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
