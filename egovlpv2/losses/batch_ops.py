"""Row operations on the model's state containers (dataclasses, named tuples, dicts or bare tensors).

The losses index, concatenate and exchange the lower-layer states the model returns without knowing
their fields: every tensor field is batch-first; anything else is carried over unchanged.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

from egovlpv2.dist import collectives as C


def _fields(obj: Any) -> dict[str, Any]:
    if torch.is_tensor(obj):
        return {"": obj}
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return obj._asdict()
    if isinstance(obj, dict):
        return dict(obj)
    raise TypeError(f"cannot treat {type(obj).__name__} as a batch of states")


def _rebuild(like: Any, values: dict[str, Any]) -> Any:
    if torch.is_tensor(like):
        return values[""]
    if dataclasses.is_dataclass(like):
        return dataclasses.replace(like, **{k: v for k, v in values.items()
                                            if any(f.name == k and f.init for f in dataclasses.fields(like))})
    if isinstance(like, tuple):
        return type(like)(**values)
    return values


def _map(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    return _rebuild(obj, {k: fn(v) if torch.is_tensor(v) else v for k, v in _fields(obj).items()})


def tensors(obj: Any) -> list[torch.Tensor]:
    return [v for v in _fields(obj).values() if torch.is_tensor(v)]


def index_rows(obj: Any, index: torch.Tensor) -> Any:
    return _map(obj, lambda t: t.index_select(0, index))


def slice_rows(obj: Any, start: int, stop: int) -> Any:
    return _map(obj, lambda t: t[start:stop])


def cat_rows(objs: list[Any]) -> Any:
    first = _fields(objs[0])
    every = [_fields(o) for o in objs]
    return _rebuild(objs[0], {k: torch.cat([f[k] for f in every]) if torch.is_tensor(v) else v
                              for k, v in first.items()})


def exchange(obj: Any, send_index: torch.Tensor, send_counts: list[int], recv_counts: list[int]) -> Any:
    """Rows ``send_index`` of every field go to other ranks (see :func:`collectives.exchange_rows`)."""
    return _map(obj, lambda t: C.exchange_rows(t, send_index, send_counts, recv_counts))
