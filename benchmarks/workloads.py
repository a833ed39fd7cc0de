"""The workloads the speed benchmark times: the cases (a search step or a retraining step at paper and CI sizes),
the variants (how a case runs), the data, and one step of each, set up as the entry points set them up."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from itertools import count
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from darts.data.datasets import Datasets, ImageData, fake, image_folder
from darts.data.torchvision_sets import cifar10
from darts.data.search_split import search_split
from darts.data.loaders import PlainLoader
from darts.runs.final import FinalRun, FinalSettings, final_loss
from darts.runs.network_spec import NetworkSpec
from darts.runs.search import SearchRun
from darts.context import Context
from darts.schedules import Cosine
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.gdas import GDAS
from darts.strategies.gradient.pcdarts import PCDARTS
from darts.settings import SGD
from darts.strategies.bilevel import search_epoch
from darts.training import train_epoch
from search_spaces.darts import GENOTYPES, DartsSpace, NetworkCIFAR
from search_spaces.nb201 import NB201Space


@dataclass(frozen=True)
class Case:
    """A measured workload: a search step (space, strategy) or the DARTS_V2 retraining step, at two sizes.

    full/ci: channels C, layers (DARTS cells, or NB201 cells per stage), batch B, optional partial_channels.
    """

    kind: str
    full: dict[str, int]
    ci: dict[str, int]
    space: str = "darts"
    strategy: type | None = None
    strategy_args: dict[str, Any] = field(default_factory=dict)
    lr: float = 0.025  # DARTS sec. 3.1.1


_DARTS = {"channels": 16, "layers": 8, "batch": 64}  # DARTS sec. 3.1.1
_CI = {"channels": 4, "layers": 3, "batch": 8}
_PC = {"batch": 256, "partial_channels": 4}  # PC-DARTS train_search.py: batch 256, lr 0.1; model_search.py K=4
CASES = {
    "darts-1st": Case("search", _DARTS, _CI, strategy=DARTS, strategy_args={"order": 1}),
    "darts-2nd": Case("search", _DARTS, _CI, strategy=DARTS, strategy_args={"order": 2}),
    "darts-1st-b256": Case("search", {**_DARTS, "batch": 256}, _CI, strategy=DARTS, strategy_args={"order": 1}, lr=0.1),
    # NB201 sec. 3 (C=16, N=5); batch 64 as NATS-Bench's DARTS search (exps/NATS-algos/search-cell.py)
    "nb201-1st": Case("search", {"channels": 16, "layers": 5, "batch": 64}, {**_CI, "layers": 1}, space="nb201",
                      strategy=DARTS, strategy_args={"order": 1}),
    "gdas": Case("search", _DARTS, _CI, strategy=GDAS),
    # arch steps from the first step (PC-DARTS's 15 warm-up epochs have none; the benchmark times full steps)
    "pcdarts": Case("search", {**_DARTS, **_PC}, {**_CI, "partial_channels": 4}, strategy=PCDARTS,
                    strategy_args={"arch_start_epoch": 0}, lr=0.1),
    "retrain-darts_v2": Case("retrain", {"channels": 36, "layers": 20, "batch": 96}, _CI),  # DARTS A.2.1
}


@dataclass(frozen=True)
class Variant:
    """How a case runs: op computation, precision, data loader, memory format, compilation, activation checkpointing."""

    fast: bool
    precision: str
    loader: str  # "device" (DeviceLoader) or "plain" (PlainLoader: DataLoader + CPU workers)
    channels_last: bool | str  # True, False or "auto" (darts.context.use_channels_last)
    compile: bool
    checkpoint: str = "norms"  # darts.context.Context.checkpoint (memory.checkpoint)


PLAIN = Variant(fast=False, precision="fp32", loader="plain", channels_last=False, compile=False, checkpoint="none")
FAST = Variant(fast=True, precision="auto", loader="device", channels_last="auto", compile=False)  # conf/search.yaml
MODIFIERS = {"fp32": {"precision": "fp32"}, "bf16": {"precision": "bf16"}, "channels_last": {"channels_last": True},
             "contiguous": {"channels_last": False}, "compile": {"compile": True}, "plain_ops": {"fast": False},
             "plain_loader": {"loader": "plain"}, "checkpoint": {"checkpoint": "cells"},
             "no_recompute": {"checkpoint": "none"}}


def parse_variant(name: str) -> Variant:
    """'plain', 'fast', or modifiers of the fast defaults joined by '+' (e.g. 'bf16+channels_last')."""
    if name in ("plain", "fast"):
        return PLAIN if name == "plain" else FAST
    changes: dict[str, Any] = {}
    for mod in name.split("+"):
        if mod not in MODIFIERS:
            raise ValueError(f"variant modifier {mod!r} in {name!r} is not valid; choose plain, fast, or modifiers "
                             f"of fast joined by '+': {', '.join(MODIFIERS)}")
        changes.update(MODIFIERS[mod])
    return replace(FAST, **changes)


def sizes_of(case: Case, size: str) -> dict[str, int]:
    """The case's sizes for --size full|ci."""
    return case.full if size == "full" else case.ci


def describe_data(spec: str) -> str:
    """What --data names: 'synthetic', 'CIFAR-10 <root>' or 'image folder <root>'."""
    if spec == "synthetic":
        return "synthetic (darts.data.datasets.fake: uint8 images, 16 batches of the case's size)"
    root = Path(spec).expanduser()
    return f"CIFAR-10 {root}" if (root / "cifar-10-batches-py").is_dir() else f"image folder {root}"


@lru_cache(maxsize=4)
def load_data(spec: str, synthetic_train: int) -> Datasets:
    """'synthetic' (darts.data.datasets.fake, synthetic_train images), a torchvision CIFAR-10 root or an ImageFolder root."""
    if spec == "synthetic":
        return fake(num_train=synthetic_train, num_test=max(synthetic_train // 8, 128))
    root = Path(spec).expanduser()
    if (root / "cifar-10-batches-py").is_dir():
        return cifar10(str(root), download=False)
    return image_folder(str(root))


def _loader(data: ImageData, batch: int, device: torch.device, variant: Variant, workers: int, train: bool = True,
            cutout: int = 0, seed: int = 0, indices: torch.Tensor | None = None):
    """The variant's loader: DeviceLoader (ImageData.loader) or the reference PlainLoader."""
    if variant.loader == "plain":
        return PlainLoader(data, batch, device, indices=indices, augment=train, cutout=cutout, shuffle=train,
                           drop_last=train, seed=seed, num_workers=workers)
    return data.loader(batch, device, train=train, cutout=cutout, seed=seed, indices=indices)


def _forever(loader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches epoch after epoch (a benchmark may need more steps than an epoch holds)."""
    for epoch in count():
        loader.set_epoch(epoch)
        yield from loader


class _VariantData:
    """The search split of ``data`` with the variant's loaders, in the shape ``SearchRun`` asks of a ``SearchData``."""

    def __init__(self, data: Datasets, variant: Variant, device: torch.device, workers: int):
        self.data, self.variant, self.device, self.workers = data, variant, device, workers
        self.num_classes = data.num_classes
        self.weight_idx, self.arch_idx = search_split(len(data.train))

    def weight_loader(self, batch: int, seed: int):
        return _loader(self.data.train, batch, self.device, self.variant, self.workers, seed=seed, indices=self.weight_idx)

    def arch_loader(self, batch: int, seed: int):
        return _loader(self.data.train, batch, self.device, self.variant, self.workers, seed=seed, indices=self.arch_idx)


def _context(variant: Variant, device: torch.device) -> Context:
    return Context.of(device.type, variant.precision, variant.channels_last, variant.fast, variant.compile,
                      checkpoint=variant.checkpoint)


def search_step(case: Case, sizes: dict[str, int], variant: Variant, data: Datasets, device: torch.device,
                workers: int, run_dir: Path) -> Callable[[], Any]:
    """One bilevel step of a search set up by ``SearchRun`` (as train_search.py does) with the variant's settings."""
    C, layers, B = sizes["channels"], sizes["layers"], sizes["batch"]
    space = DartsSpace(C, layers) if case.space == "darts" else NB201Space(C, layers)
    pc = {"partial_channels": sizes["partial_channels"]} if "partial_channels" in sizes else {}
    run = SearchRun(run_dir, space, _VariantData(data, variant, device, workers),
                    partial(case.strategy, **case.strategy_args, **pc), _context(variant, device), batch_size=B,
                    seed=0, optimizer=SGD(lr=case.lr, lr_min=0.001))
    run.strategy.epoch_start(0, run.epochs)
    batches = (_forever(run.train_loader), _forever(run.valid_loader))
    return partial(search_epoch, run.supernet, run.strategy, *batches, run.optimizer, run.sgd.grad_clip, 1)


def retrain_step(sizes: dict[str, int], variant: Variant, data: Datasets, device: torch.device, workers: int,
                 run_dir: Path) -> Callable[[], Any]:
    """One training step of the DARTS_V2 retraining set up by ``FinalRun`` (auxiliary head, cutout 16)."""
    settings = FinalSettings()
    network = partial(NetworkCIFAR, C=sizes["channels"], layers=sizes["layers"])
    spec = NetworkSpec(network, GENOTYPES["DARTS_V2"], DartsSpace(), data.num_classes, auxiliary=True)
    train = _loader(data.train, sizes["batch"], device, variant, workers, cutout=16)  # DARTS A.2.1 cutout
    test = _loader(data.test, sizes["batch"], device, variant, workers, train=False)
    run = FinalRun(run_dir, spec, train, test, settings, Cosine(), _context(variant, device))
    if variant.compile:  # no FinalRun option: measured here to decide whether one pays off
        run.model.compile()
    run.model.drop_path_prob = settings.drop_path_prob / 2  # the mean of DARTS's linear drop-path ramp
    loss_fn = partial(final_loss, auxiliary_weight=settings.auxiliary_weight)
    return partial(train_epoch, run.model, _forever(train), run.optimizer, 1, run.context, loss_fn,
                   settings.optimizer.grad_clip)
