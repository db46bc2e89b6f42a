"""Run a function on N local processes joined in a gloo process group (tests and benchmarks on one machine)."""
from __future__ import annotations

import os
import pickle
import queue
import traceback
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from egovlpv2.dist.env import free_port



def _worker(fn: Callable, rank: int, world_size: int, port: int, args: Sequence, threads: int, results) -> None:
    # Several ranks share the machine's cores; more threads than cores makes small ops ~100x slower.
    torch.set_num_threads(threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        # Plain pickle: tensors travel by value, not as shared memory that dies with this process.
        results.put((rank, True, pickle.dumps(fn(*args))))
    except BaseException:  # report any failure to the parent instead of leaving it waiting
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_on_ranks(fn: Callable, world_size: int, args: Sequence = (), timeout: float = 300.0,
                 threads_per_rank: int = 1) -> list[Any]:
    """Call ``fn(*args)`` on ``world_size`` fresh processes (gloo); return their results in rank order.

    ``fn`` must be importable (a module-level function) and its result picklable. A failing or silent rank
    raises here with its traceback, and every child is terminated, so a broken collective cannot hang a caller.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(fn, r, world_size, port, args, threads_per_rank, results), daemon=True)
             for r in range(world_size)]
    for p in procs:
        p.start()
    out: dict[int, Any] = {}
    try:
        for _ in range(world_size):
            try:
                rank, ok, value = results.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"ranks {sorted(set(range(world_size)) - set(out))} gave no result in {timeout}s")
            if not ok:
                raise RuntimeError(f"rank {rank} failed:\n{value}")
            out[rank] = pickle.loads(value)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
    return [out[r] for r in range(world_size)]
