"""Data-parallel training under `torchrun` (gloo on the CPU, nccl on GPUs), read from the env variables.

Without torchrun this is a world of one process and every helper is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, how many there are, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and events."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _use_cuda(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def single_process(device: str = "auto") -> DistContext:
    """A world of one on the recipe's device (auto | cpu | cuda), whatever torchrun's variables say."""
    return DistContext(device=torch.device("cuda" if _use_cuda(device) else "cpu"))


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), or a world of one."""
    use_cuda = _use_cuda(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return single_process(device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return DistContext(rank, world, local_rank, torch.device("cuda", local_rank))
    return DistContext(rank, world, local_rank, torch.device("cpu"))


def close_distributed() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(ctx: DistContext, value: Any) -> Any:
    """Rank 0's `value`, on every rank."""
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if `flag` is true on any (so all ranks stop at the same step)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def average_gradients(ctx: DistContext, params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce the gradients of parameters DDP does not own (e.g. FitNets adapters)."""
    if not ctx.distributed:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= ctx.world_size


def barrier(ctx: DistContext) -> None:
    """Wait for every rank."""
    if ctx.distributed:
        dist.barrier()


def epoch_indices(n: int, epoch: int, seed: int, ctx: DistContext) -> list[int]:
    """This rank's shuffled item indices for `epoch`: DistributedSampler's order (seeded, padded to equal shares)."""
    sampler = torch.utils.data.DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank,
                                                  shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)
