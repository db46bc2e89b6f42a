"""A stand-in model, objective and resumable data source for loop tests (the loop is model-agnostic)."""
from __future__ import annotations

import torch
from torch import nn


class ToyModel(nn.Module):
    def __init__(self, dim: int = 16):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, dim))  # held by a container, as in the real model
        self.backbone = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Dropout(0.1))
        self.cross_attn = nn.Linear(dim, dim)
        self.gate = nn.Parameter(torch.zeros(1))
        self.head = nn.Linear(dim, 1)

    def encode(self, x):
        h = self.backbone(x + self.cls_token)
        return h + self.gate * self.cross_attn(h)


class ToyObjective:
    def __init__(self, model: ToyModel):
        self.model = model

    def __call__(self, batch, step=None):
        pred = self.model.head(self.model.encode(batch["x"])).squeeze(-1)
        noise = torch.rand(()) * 1e-3  # consumes the global RNG, like MLM masking does
        mse = ((pred - batch["y"]) ** 2).mean()
        return mse + noise, {"mse": mse.detach()}


class ToySource:
    """Deterministic batches indexed by (epoch, position); the state is the next position."""

    def __init__(self, state, rank: int, batch: int = 4, dim: int = 16, per_epoch: int = 7):
        state = state or {"epoch": 0, "index": 0}
        self.epoch, self.index = state["epoch"], state["index"]
        self.rank, self.batch, self.dim, self.per_epoch = rank, batch, dim, per_epoch

    def __iter__(self):
        while self.index < self.per_epoch:
            g = torch.Generator().manual_seed(1000 * self.epoch + 10 * self.index + self.rank)
            x = torch.randn(self.batch, self.dim, generator=g)
            self.index += 1
            yield {"x": x, "y": x[:, :4].sum(-1)}
        self.epoch, self.index = self.epoch + 1, 0

    def state_dict(self):
        return {"epoch": self.epoch, "index": self.index}

    def skip_counts(self):
        return {"toy_reason": self.epoch}
