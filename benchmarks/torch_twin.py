"""An independent PyTorch implementation of minisparse's GPT and optimizer step, for `bench_step.py --against torch`.

Not part of the package (the package never imports torch): `pip install -e ".[bench]"` installs it. Written from the
model's equations (docs/design.md, DESIGN §1 and §3), not translated from the NumPy code: autograd gives the backward,
`torch.compile` may fuse it. CPU, float32. From minisparse it takes only the initial weights and the schedule's numbers
(learning rate, densities, k per matrix). Its loss at the shared initial weights is checked against the NumPy model's
before anything is timed, so both time the same computation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from minisparse.config import ModelConfig, TrainConfig
from minisparse.optim import densities_at, lr_at
from minisparse.params import init_params
from minisparse.sparsity import k_at, min_axis

RMS_EPS, GELU_C, GELU_A = 1e-5, math.sqrt(2.0 / math.pi), 0.044715


def abstopk(x: torch.Tensor, k: int) -> torch.Tensor:
    # [..., n] -> [..., n]: pass |x| >= the k-th largest |x| of its row (ties at the threshold are not special-cased:
    # they have probability ~0 on float activations and would cost PyTorch nothing extra to find)
    if k >= x.shape[-1]:
        return x
    a = x.detach().abs()
    kth = torch.topk(a, k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    return x * (a >= kth)


def rmsnorm(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS) * g


def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(GELU_C * (x + GELU_A * x * x * x)))


def loss_fn(P: dict[str, torch.Tensor], idx: torch.Tensor, targets: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    B, T = idx.shape
    H, k_of = cfg.n_head, cfg.topk
    site = lambda x: abstopk(x, k_of(x.shape[-1]))  # noqa: E731
    x = P["wte.weight"][idx]
    if cfg.pos_emb == "learned":
        x = x + P["wpe.weight"][:T]
    causal = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg.n_layer):
        p = f"blocks.{l}."
        a = site(rmsnorm(x, P[p + "norm1.weight"]))
        q, k, v = (site(F.linear(a, P[p + f"attn.{s}_proj.weight"], P[p + f"attn.{s}_proj.bias"])) for s in "qkv")
        q, k, v = (t.view(B, T, H, -1).transpose(1, 2) for t in (q, k, v))               # [B, H, T, Dh]
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + causal                   # [B, H, T, T]
        if cfg.attn_sink:
            sink = P[p + "attn.sink"].view(1, H, 1, 1).expand(B, H, T, 1)
            prob = torch.softmax(torch.cat([sink, s], dim=-1), dim=-1)[..., 1:]
        else:
            prob = torch.softmax(s, dim=-1)
        y = (prob @ v).transpose(1, 2).reshape(B, T, -1)
        x = x + site(F.linear(y, P[p + "attn.o_proj.weight"], P[p + "attn.o_proj.bias"]))
        m = site(rmsnorm(x, P[p + "norm2.weight"]))
        u = site(gelu(F.linear(m, P[p + "mlp.up_proj.weight"], P[p + "mlp.up_proj.bias"])))
        x = x + site(F.linear(u, P[p + "mlp.down_proj.weight"], P[p + "mlp.down_proj.bias"]))
    logits = F.linear(rmsnorm(x, P["norm_f.weight"]), P["lm_head.weight"])
    if cfg.bigram:
        logits = logits + P["bigram.weight"][idx]
    return F.cross_entropy(logits.view(B * T, -1), targets.reshape(-1))


def topk_mask(w: torch.Tensor, k: int, j: int) -> torch.Tensor:
    # [R, C] -> bool: each row's j largest |w| forced, then the k − forced largest of the rest
    a = w.abs()
    mask = torch.zeros(w.shape, dtype=torch.bool)
    if j > 0:
        mask.scatter_(1, torch.topk(a, min(j, w.shape[1]), dim=1).indices, True)
    need = k - int(mask.sum())
    if need > 0:
        rest = a.masked_fill(mask, -1.0).reshape(-1)
        mask.view(-1)[torch.topk(rest, need).indices] = True
    return mask


class TorchTrainer:
    """The same step as minisparse's NumpyTrainer: loss and grads, grad RMS → 1, Adam, top-k projection, decay."""

    def __init__(self, cfg: ModelConfig, tcfg: TrainConfig, compile: bool):
        self.cfg, self.tcfg = cfg, tcfg
        self.P = {n: torch.from_numpy(w.copy()).requires_grad_() for n, w in init_params(cfg, tcfg.seed).items()}
        self.m = {n: torch.zeros_like(w) for n, w in self.P.items()}
        self.v = {n: torch.zeros_like(w) for n, w in self.P.items()}
        self.loss_and_backward = torch.compile(self._loss_and_backward) if compile else self._loss_and_backward
        self.adam = torch.compile(self._adam) if compile else self._adam

    def _loss_and_backward(self, idx, targets):
        loss = loss_fn(self.P, idx, targets, self.cfg)
        loss.backward()
        return loss.detach()

    @torch.no_grad()
    def _adam(self, lr: torch.Tensor, bias1: torch.Tensor, bias2: torch.Tensor):
        grads = [w.grad for w in self.P.values()]
        rms = torch.sqrt(sum((g.double() ** 2).sum() for g in grads) / sum(g.numel() for g in grads)).float()
        scale = torch.where(rms > 0, 1.0 / rms, 1.0)
        c = self.tcfg
        for (name, w), g in zip(self.P.items(), grads):
            g = g * scale
            self.m[name].mul_(c.beta1).add_(g, alpha=1 - c.beta1)
            self.v[name].mul_(c.beta2).add_(g * g, alpha=1 - c.beta2)
            w.sub_(lr * (self.m[name] / bias1) / (torch.sqrt(self.v[name] / bias2) + c.eps))

    def step(self, idx: torch.Tensor, targets: torch.Tensor, step: int) -> float:
        for w in self.P.values():
            w.grad = None
        loss = self.loss_and_backward(idx, targets)
        c, t = self.tcfg, step + 1
        lr = lr_at(step, c)
        self.adam(torch.tensor(lr), torch.tensor(1 - c.beta1 ** t), torch.tensor(1 - c.beta2 ** t))
        self.project(step, lr)
        return float(loss)

    @torch.no_grad()
    def project(self, step: int, lr: float) -> None:
        c = self.tcfg
        for name, density in densities_at(step, self.P, c).items():
            w = self.P[name]
            axis = min_axis(name)
            k = k_at(tuple(w.shape), axis, density, c.min_per_neuron)
            if k < w.numel():
                mask = topk_mask(w if axis == 0 else w.T, k, c.min_per_neuron)
                w.mul_(mask if axis == 0 else mask.T)
            w.mul_(1.0 - c.weight_decay * lr)


def initial_loss(cfg: ModelConfig, x: np.ndarray, y: np.ndarray) -> float:
    """The twin's loss at `init_params(cfg, 0)`, to compare with the NumPy model's."""
    P = {n: torch.from_numpy(w) for n, w in init_params(cfg, 0).items()}
    with torch.no_grad():
        return float(loss_fn(P, torch.from_numpy(x), torch.from_numpy(y), cfg))
