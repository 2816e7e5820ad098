"""Single- and multi-GPU from the same code: ``torchrun`` sets the environment, we follow it.

``init_distributed()`` is called once by each training entry point. Without ``WORLD_SIZE``
(plain ``sci2i ...``) it does nothing and every helper below behaves as a single process.
Backend: NCCL on CUDA, gloo on CPU (used by the tests: two CPU processes).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init_distributed(device_type: str = "cpu") -> bool:
    """Join the process group torchrun describes; return True when running distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device_type == "cuda" and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` (any picklable value) on every process; ``obj`` itself when single."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel when distributed, the model itself otherwise."""
    if not is_distributed():
        return model
    ids = [device.index if device.index is not None else local_rank()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every process (no-op when single-process).

    For networks that are not wrapped in DDP (which broadcasts at construction), e.g. the I2I
    generator and discriminator: ranks seeded differently would otherwise start apart.
    """
    if not is_distributed():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP / torch.compile wrappers (for EMA, checkpoints, evaluation)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # torch.compile
        else:
            return model


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= world_size()
    return t


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
