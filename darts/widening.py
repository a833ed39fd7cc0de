"""Widening a module's channels in place of a narrower one, as DrNAS's progressive learning widens the partial
channels of its mixed ops between stages (Chen et al., ICLR 2021, sec. 3.3; xiangning-chen/DrNAS net2wider.py).

Every tensor of the narrow module is copied into the matching tensor of the wide one: the first channels keep their
values, and each new channel is a copy of a randomly chosen old channel (net2wider.py ``InChannelWider``,
``OutChannelWider``, ``BNWider``: ``weight[:, index]`` / ``weight[index]`` appended). Here one random choice is made
per module and channel count and used on every tensor and dimension of that size, so a conv's new output channel
and the BN channel after it copy the same old channel. A momentum buffer is carried the same way
(net2wider.py ``configure_optimizer``).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

ChannelMaps = dict[tuple[int, int], torch.Tensor]  # (old count, new count) -> [new count] old channel of each


def widen_like(old: nn.Module, new: nn.Module, generator: torch.Generator) -> ChannelMaps:
    """Copy ``old``'s parameters and buffers into ``new`` (same structure, wider channels) in place; returns the
    channel maps used, for ``carry``."""
    pairs = list(zip(old.state_dict(keep_vars=True).values(), new.state_dict(keep_vars=True).values()))
    maps: ChannelMaps = {}
    for a, b in pairs:
        for n_old, n_new in zip(a.shape, b.shape):
            if n_old != n_new and (n_old, n_new) not in maps:
                if n_new < n_old:
                    raise ValueError(f"cannot widen {n_old} channels to {n_new}")
                extra = torch.randint(n_old, (n_new - n_old,), generator=generator)
                maps[n_old, n_new] = torch.cat([torch.arange(n_old), extra])  # [n_new]
    with torch.no_grad():
        for a, b in pairs:
            b.copy_(carry(a.detach(), b.shape, maps))
    return maps


def carry(t: torch.Tensor, shape: torch.Size, maps: ChannelMaps) -> torch.Tensor:
    """``t`` widened to ``shape``: along every dimension whose size differs, the channels the map chooses."""
    for d, (n_old, n_new) in enumerate(zip(t.shape, shape)):
        if n_old != n_new:
            t = t.index_select(d, maps[n_old, n_new].to(t.device))
    return t


def carry_optimizer(optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter],
                    widened: dict[nn.Parameter, tuple[nn.Parameter, ChannelMaps]]) -> torch.optim.Optimizer:
    """A new optimizer of the same kind and settings (learning rate included) over ``params``, with the state of
    each parameter carried over: unchanged parameters keep theirs, a widened one (``widened[new] = (old, maps)``)
    gets its old state's tensors widened (net2wider.py ``configure_optimizer``: momentum buffers)."""
    group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    new = type(optimizer)(list(params), **group)
    for p in new.param_groups[0]["params"]:
        old, maps = widened.get(p, (p, {}))
        state = optimizer.state.get(old)
        if state:
            new.state[p] = {k: carry(v, p.shape, maps) if torch.is_tensor(v) and v.shape == old.shape else v
                            for k, v in state.items()}
    return new
