"""NATS-Bench size-space architectures as values: the output channels of the network's 5 layers, written as the
benchmark writes them, e.g. ``64:64:64:64:64`` (Dong et al., TPAMI 2021, sec. 3; NATS-Bench ``search_space_info``:
``candidates=[8, 16, 24, 32, 40, 48, 56, 64], num_layers=5``; 8^5 = 32,768 architectures).

The archive's index of an architecture is its channel choices read as a base-8 number, the last layer varying fastest
(AutoDL-Projects exps/NATS-Bench/main-sss.py ``traverse_net``): ``8:8:8:16:32`` is index 11.
"""
from __future__ import annotations

import operator
from typing import Iterable

CANDIDATES = (8, 16, 24, 32, 40, 48, 56, 64)  # main-sss.py --candidateC
NUM_LAYERS = 5  # main-sss.py --num_layers
PRIMITIVES = tuple(str(c) for c in CANDIDATES)  # the choices of a layer, as the space's "ops"


class ChannelGenotype(tuple):
    """The output channels of each of the 5 layers; an immutable, hashable tuple validated when built."""

    def __new__(cls, channels: Iterable[int]) -> ChannelGenotype:
        if isinstance(channels, str):
            raise ValueError(f"use parse_channels for a channel string, got {channels!r}")
        channels = tuple(channels)
        if len(channels) != NUM_LAYERS:
            raise ValueError(f"a NATS size-space architecture has {NUM_LAYERS} layers, got {len(channels)}: {channels}")
        for layer, c in enumerate(channels):
            if isinstance(c, bool) or not hasattr(c, "__index__") or operator.index(c) not in CANDIDATES:
                raise ValueError(f"layer {layer} has {c!r} channels; valid channel counts: {list(CANDIDATES)}")
        return super().__new__(cls, (operator.index(c) for c in channels))

    @property
    def index(self) -> int:
        """The benchmark index (main-sss.py ``traverse_net`` order)."""
        index = 0
        for c in self:
            index = index * len(CANDIDATES) + CANDIDATES.index(c)
        return index

    def __str__(self) -> str:
        return format_channels(self)

    def __repr__(self) -> str:
        return f"ChannelGenotype({format_channels(self)!r})"


def parse_channels(text: str) -> ChannelGenotype:
    """Parse ``c1:c2:c3:c4:c5`` (never eval); ValueError naming the bad part."""
    if not isinstance(text, str):
        raise ValueError(f"a channel string such as '64:64:64:64:64' is needed, got {type(text).__name__}")
    parts = text.strip().split(":")
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"channel string {text!r} must be {NUM_LAYERS} ':'-separated integers of {list(CANDIDATES)}")
    try:
        return ChannelGenotype(int(p) for p in parts)
    except ValueError as err:
        raise ValueError(f"{err}, in channel string {text!r}") from None


def format_channels(genotype: Iterable[int]) -> str:
    """The benchmark's string of a genotype (``'8:16:24:32:64'``)."""
    return ":".join(str(c) for c in ChannelGenotype(genotype))
