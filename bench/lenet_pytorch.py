#!/usr/bin/python3
"""Caffe's LeNet on Fashion-MNIST with PyTorch (CPU): the peer of `dropnet-train configs/lenet.yaml`.

Same net, batch (64), solver (SGD momentum 0.9, weight decay 5e-4, lr 0.01 with Caffe's `inv`
policy, bias lr x2), data order (sequential, no shuffle), scaling (1/256). Prints steady-state
images/s over the iterations after the warm-up, as one line: `pytorch_img_per_s=<v>`.
"""
import argparse
import gzip
import time

import numpy as np
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=1)
p.add_argument("--iters", type=int, default=600)
p.add_argument("--warmup", type=int, default=50)
p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)


def idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


x = torch.from_numpy(idx(f"{a.data}/train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28).astype(np.float32) * 0.00390625)
y = torch.from_numpy(idx(f"{a.data}/train-labels-idx1-ubyte.gz", 8).astype(np.int64))


class LeNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 20, 5)
        self.conv2 = torch.nn.Conv2d(20, 50, 5)
        self.ip1 = torch.nn.Linear(800, 500)
        self.ip2 = torch.nn.Linear(500, 10)
        for m in (self.conv1, self.conv2, self.ip1, self.ip2):  # Caffe's xavier: U(+-sqrt(3/fan_in))
            fan_in = m.weight[0].numel()
            torch.nn.init.uniform_(m.weight, -(3.0 / fan_in) ** 0.5, (3.0 / fan_in) ** 0.5)
            torch.nn.init.zeros_(m.bias)

    def forward(self, t):
        t = F.max_pool2d(self.conv1(t), 2, 2)
        t = F.max_pool2d(self.conv2(t), 2, 2)
        t = F.relu(self.ip1(t.flatten(1)))
        return self.ip2(t)


net = LeNet()
weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
opt = torch.optim.SGD([{"params": weights, "lr": 0.01}, {"params": biases, "lr": 0.02}], lr=0.01, momentum=0.9,
                      weight_decay=5e-4)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1 + 1e-4 * it) ** -0.75)
batch = 64
n = x.shape[0]
t0 = None
for it in range(a.iters):
    if it == a.warmup:
        t0 = time.perf_counter()
    s = (it * batch) % (n - batch)
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x[s:s + batch]), y[s:s + batch])
    loss.backward()
    opt.step()
    sched.step()
dt = time.perf_counter() - t0
print(f"loss={loss.item():.4f}")
print(f"pytorch_img_per_s={(a.iters - a.warmup) * batch / dt:.1f}")
