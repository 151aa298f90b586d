"""Where a run executes: its place in the process group (:class:`Dist`), its device and its
autocast dtype, and the two collectives the loop needs (:func:`reduce_sum`,
:func:`gather_ints`), which are no-ops for a single process.

``torchrun`` describes the process group in the environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``); a plain ``dataprep train`` is a world of one and never touches
:mod:`torch.distributed`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dataprep.errors import UsageError
from dataprep.train.config import TrainConfig


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_kind: str) -> Dist:
    """Join the process group ``torchrun`` describes in the environment (gloo on CPU, nccl on
    CUDA); a plain run is a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return d


def resolve_device(cfg: TrainConfig, d: Dist) -> torch.device:
    kind = cfg.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available; use --device cpu")
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def resolve_amp(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the device has it, fp16 (with a grad scaler) on older GPUs, none on CPU."""
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "bf16" or device.type != "cuda" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def reduce_sum(t: torch.Tensor, d: Dist, device: torch.device) -> None:
    """Sum ``t`` over ranks, in place (a no-op for a single process)."""
    if d.active:
        buf = t.to(device)
        dist.all_reduce(buf)
        t.copy_(buf)


def gather_ints(value: int, d: Dist, device: torch.device) -> list[int]:
    """``value`` of every rank, in rank order (``[value]`` for a single process)."""
    if not d.active:
        return [value]
    t = torch.tensor([value], device=device)
    out = [torch.zeros_like(t) for _ in range(d.world_size)]
    dist.all_gather(out, t)
    return [int(o.item()) for o in out]
