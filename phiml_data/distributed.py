"""Data-parallel training on `torch.distributed`: rank discovery, process-group set-up, gradient averaging.

Part of step 4 of the pipeline (scenarios -> manager -> dataset -> trainer). Every rank holds the same network
(same seed), reads its own shard of each epoch (`PhiMLDataset(..., shard=(rank, world_size))`, equal sizes), and
after each backward pass the gradients are averaged over the ranks with an all-reduce before the optimizer steps, so
all ranks keep identical weights and together take the step a single process would take on the global batch.
Torch is imported inside the functions: the data layer stays importable without it.
"""

from __future__ import annotations

import os


def rank_and_world() -> tuple[int, int]:
    """`(rank, world_size)` of the initialised default process group, else `(0, 1)`."""
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_environment(backend: str = 'gloo') -> tuple[int, int]:
    """Joins the process group that `torchrun` describes (`WORLD_SIZE` > 1 in the environment); returns `rank_and_world()`.

    `gloo` works on CPUs; on GPUs pass `'nccl'`.
    """
    if int(os.environ.get('WORLD_SIZE', '1')) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend)
    return rank_and_world()


def averaged_update(net, optimizer, loss_function, *loss_args):
    """`phiml.nn.update_weights` for torch, with the gradients averaged over all ranks between backward and step."""
    import torch.distributed as dist

    optimizer.zero_grad()
    loss = loss_function(*loss_args)
    loss.native().backward()
    world = dist.get_world_size()
    for p in net.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world
    optimizer.step()
    return loss


def mean_over_ranks(value: float) -> float:
    """The mean of `value` over all ranks (`value` itself without a process group)."""
    rank, world = rank_and_world()
    if world == 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t[0]) / world


def barrier():
    """Waits for all ranks (no-op without a process group)."""
    if rank_and_world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()
