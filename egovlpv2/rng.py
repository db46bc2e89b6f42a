"""The random streams of this process (Python, NumPy, torch's CPU generator and, once CUDA is in use, every
CUDA generator), saved and restored together: for exact resume, to keep the data loader's draws apart
from training's, and to recompute a forward pass with the same dropout."""
from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    """Every stream's state as tensors, ints, floats, strings, tuples and lists only, so that a file holding it
    loads with ``torch.load(weights_only=True)`` (numpy's key array becomes a list of ints)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
