"""Magnitude pruning of a retrained network, then fine-tuning, with ``torch.nn.utils.prune``.

    python -m darts.deploy.prune RUN_DIR --amount 0.5 [--structured] [--finetune-epochs 10] [--lr LR] [--out DIR]

RUN_DIR is a retraining run (train_final.py) or an earlier pruning run. Unstructured: the ``amount`` fraction of
all convolution and linear weights with the smallest |w|, chosen globally (``prune.global_unstructured`` with
``L1Unstructured``). Structured (``--structured``): whole channels, where a DARTS cell allows it: inside an op,
between a convolution and the next one of the same nn.Sequential (a sep_conv's depthwise -> pointwise and pointwise
-> BN -> ReLU -> depthwise -> pointwise, a dil_conv's depthwise -> pointwise, conv_7x1_1x7's two convolutions);
every other channel is tied to other ops (summed into a node, concatenated, or read by the next cells). In each
such chain the ``amount`` fraction of channels whose producing filters have the smallest L1 norm (Li et al.,
"Pruning Filters for Efficient ConvNets", ICLR 2017) is zeroed: the filter, its BN weight and bias, the depthwise
filters it passes through and the consumer's input column (``prune.ln_structured`` and ``prune.custom_from_mask``).
The masks stay fixed while the network is fine-tuned (the retraining recipe's SGD, cross-entropy on the main
logits, cosine from ``--lr`` to 0; no auxiliary head, no drop path), then are made permanent. ``RUN_DIR/prune_<pct>``
(or ``--out``) holds ``model.pt`` (for darts.deploy.quantize / darts.deploy.export), a checkpoint per fine-tuning epoch (a re-run
continues) and ``result.json``: sparsity, params (nonzero), FLOPs (of nonzero weights) and test accuracy, before
pruning, after pruning and after fine-tuning.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils import prune

from darts.context import Context
from darts.deploy.steps import NETWORK, DeployStep, Source, accuracy, input_record, open_source, test_loader
from darts.cost.counting import count_network
from darts.runs.base import EpochRun
from darts.runs.tensorboard_log import TensorBoardLog
from darts.schedules import Cosine
from darts.settings import SGD
from darts.training import Trainer

log = logging.getLogger(__name__)
PRUNABLE = (nn.Conv2d, nn.Linear)


@dataclass
class Chain:
    """Channels from a producer conv's outputs, through per-channel layers (BN, ReLU, depthwise conv), into a
    consumer conv's inputs, inside one nn.Sequential."""

    producer: nn.Conv2d
    consumer: nn.Conv2d
    through: list[nn.Module] = field(default_factory=list)


def _depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups == module.in_channels == module.out_channels


def channel_chains(network: nn.Module) -> list[Chain]:
    """Every ``Chain`` of the network's nn.Sequentials (see the module docstring)."""
    chains, passed = [], set()  # a depthwise conv that a chain passes through starts none of its own
    for seq in (m for m in network.modules() if isinstance(m, nn.Sequential)):
        layers = list(seq)
        for i, producer in enumerate(layers):
            if not isinstance(producer, nn.Conv2d) or producer.groups != 1 and not _depthwise(producer) \
                    or producer in passed:
                continue
            through = []
            for layer in layers[i + 1:]:
                if isinstance(layer, nn.Conv2d) and not _depthwise(layer) and layer.groups == 1:
                    chains.append(Chain(producer, layer, through))
                    passed.update(through)
                    break
                if not isinstance(layer, (nn.BatchNorm2d, nn.ReLU)) and not _depthwise(layer):
                    break
                through.append(layer)
    return chains


def prune_unstructured(network: nn.Module, amount: float) -> None:
    """Mask the ``amount`` fraction of smallest-|w| weights over every conv and linear layer (global ranking)."""
    params = [(m, "weight") for m in network.modules() if isinstance(m, PRUNABLE)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)


def prune_channels(network: nn.Module, amount: float) -> None:
    """Mask the ``amount`` fraction of each chain's channels with the smallest producer filters (L1 norm)."""
    chains = channel_chains(network)
    if not chains:
        raise ValueError(f"{type(network.network).__name__} has no prunable channels (convolution pairs inside an op); "
                         "use unstructured pruning (no --structured)")
    for chain in chains:
        prune.ln_structured(chain.producer, "weight", amount, n=1, dim=0)
        keep = chain.producer.weight_mask.flatten(1).amax(1)  # (C,) 1 = kept channel
        for layer in chain.through:
            for name in ("weight", "bias"):
                if getattr(layer, name, None) is not None:
                    shape = (-1,) + (1,) * (getattr(layer, name).dim() - 1)
                    prune.custom_from_mask(layer, name, keep.view(shape).expand_as(getattr(layer, name)))
        mask = keep.view(1, -1, 1, 1).expand_as(chain.consumer.weight)  # (C_out, C, k, k)
        prune.custom_from_mask(chain.consumer, "weight", mask)


def sparsity(network: nn.Module) -> dict[str, float]:
    """Zero fraction of the conv and linear weights, nonzero parameters (M) and all parameters (M)."""
    weights = [m.weight for m in network.modules() if isinstance(m, PRUNABLE)]
    zeros, total = sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)
    params = [p for name, p in network.named_parameters() if "auxiliary" not in name]
    return {"sparsity": zeros / total, "params": sum(int(p.count_nonzero()) for p in params) / 1e6,
            "params_dense": sum(p.numel() for p in params) / 1e6}


@torch.no_grad()
def nonzero_flops(network: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass of x (1, 3, H, W), a pruned weight's multiply-adds left out: the dense count
    (``darts.cost.counting``: multiply-accumulates) less one per zero weight per output position of its conv or linear
    layer."""
    saved = []
    hooks = [m.register_forward_hook(lambda m, i, out: saved.append((out[0, 0].numel() if out.dim() == 4 else 1)
                                                                    * int((m.weight == 0).sum())))
             for m in network.modules() if isinstance(m, PRUNABLE)]
    network.eval()(x)
    for hook in hooks:
        hook.remove()
    return count_network(network, x).flops - sum(saved)


def measure(network: nn.Module, x: torch.Tensor, test: Any) -> dict[str, float]:
    """Sparsity, params, FLOPs and test accuracy of the network."""
    network.eval()
    flops = nonzero_flops(network, x)
    return {**sparsity(network), "flops": flops / 1e6, "test_accuracy": accuracy(network, test)}


def pruned(source: Any, amount: float, structured: bool) -> nn.Module:
    """The source's network (fp32, logits only) with its pruning masks."""
    network = source.network()
    (prune_channels if structured else prune_unstructured)(network, amount)
    return network


class Pruning(DeployStep, EpochRun):
    """Prune, fine-tune with the masks fixed (one epoch of the one training loop at a time, a checkpoint after each:
    a re-run continues), make the masks permanent (see the module docstring)."""

    step = "prune"
    what = "the fine-tuning"

    def __init__(self, source: Source, amount: float, structured: bool = False, finetune_epochs: int = 10,
                 lr: float | None = None, steps_per_epoch: int | None = None, device: str = "auto",
                 out: str | Path | None = None, test_images: int | None = None):
        if not 0.0 < amount < 1.0:
            raise ValueError(f"--amount={amount} must lie in (0, 1): the fraction of weights (or channels) pruned")
        if finetune_epochs < 0 or (steps_per_epoch is not None and steps_per_epoch < 1):
            raise ValueError(f"--finetune-epochs={finetune_epochs} must be >= 0 and --steps-per-epoch="
                             f"{steps_per_epoch} >= 1 or unset")
        if source.step not in ("final", "prune"):
            raise ValueError(f"{source.path} is an {source.step} run: prune a retraining or pruning run")
        # one tenth of the retraining's initial rate: fine-tuning starts from trained weights
        lr = lr if lr is not None else float(source.config.get("optimizer", {}).get("lr", 0.025)) / 10
        if lr <= 0:
            raise ValueError(f"--lr={lr} must be > 0")
        kind = "structured" if structured else "unstructured"
        settings = {"amount": amount, "structure": kind, "finetune_epochs": finetune_epochs, "lr": lr,
                    "steps_per_epoch": steps_per_epoch, "test_images": test_images}
        super().__init__(source, f"prune {amount:.0%}{' structured' if structured else ''}", settings, out,
                         f"prune_{amount * 100:g}{'_structured' if structured else ''}", Context.of(device))
        self.epochs, self.amount, self.kind, self.lr, self.test_images = finetune_epochs, amount, kind, lr, test_images
        self.data = source.datasets()
        self.network = pruned(source, amount, structured).to(self.context.device)
        self.trainer = self._trainer(steps_per_epoch)

    def _trainer(self, steps: int | None) -> Trainer:
        """The retraining recipe's SGD from ``lr``, cosine-annealed to 0, on the retraining's training data."""
        cfg = self.source.config
        opt = {"momentum": 0.9, "weight_decay": 3e-4, "nesterov": False, "grad_clip": 5, **cfg.get("optimizer", {})}
        sgd = SGD(self.lr, 0.0, opt["momentum"], opt["weight_decay"], opt["grad_clip"], opt["nesterov"])
        train = self.data.train.loader(int(cfg.get("batch_size", 96)), self.context.device, train=True,
                                       cutout=int(cfg.get("cutout", 0)), seed=int(cfg.get("seed") or 0))
        return Trainer(self.network, sgd.build(self.network.parameters()), train, min(len(train), steps or len(train)),
                       self.epochs, self.lr, Cosine(), self.context, grad_clip=sgd.grad_clip, desc="fine-tune")

    def state_dict(self) -> dict[str, Any]:
        """The masked network and its optimizer."""
        return {"model": self.network.state_dict(), "optimizer": self.trainer.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore them."""
        self.network.load_state_dict(state["model"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])

    def start(self, board: TensorBoardLog) -> None:
        """The source's and the freshly pruned network's sparsity, size and accuracy."""
        self.test = test_loader(self.data, self.test_images)
        self.example = next(iter(self.test))[0][:1]  # (1, 3, H, W)
        self.before = measure(self.source.network(), self.example, self.test)
        self.after_pruning = measure(pruned(self.source, self.amount, self.kind == "structured"), self.example,
                                     self.test)
        self.test_device = test_loader(self.data, self.test_images, self.context.device)

    def epoch(self, epoch: int, board: TensorBoardLog) -> None:
        """One fine-tuning epoch, then the test accuracy."""
        train = self.trainer.epoch(epoch)
        self.network.eval()
        metrics = {"train_loss": train["loss"], "train_acc": train["acc"], "lr": train["lr"],
                   "test_acc": accuracy(self.network, self.test_device, self.context.device)}
        board.scalars("prune", metrics, epoch)
        log.info("fine-tuning epoch %d/%d: train_acc %.2f test_acc %.2f", epoch + 1, self.epochs, metrics["train_acc"],
                 metrics["test_acc"])

    def fault(self, err: Any) -> str:
        """The fine-tuning rate."""
        return f"--lr={self.lr}"

    def finish(self, board: TensorBoardLog) -> dict[str, Any]:
        """The masks made permanent, the network saved (model.pt) and measured."""
        network = self.network.cpu()
        for module in network.modules():  # the masks made permanent: plain weights with zeros
            for name in [n.removesuffix("_orig") for n, _ in module.named_parameters(recurse=False)
                         if n.endswith("_orig")]:
                prune.remove(module, name)
        spec, _ = self.source.spec()
        self.dir.save_checkpoint({"spec": spec.to_dict(), "model": network.network.state_dict()}, NETWORK)
        after = measure(network, self.example, self.test)
        self.outcome = {**after, "before": self.before, "after_pruning": self.after_pruning, "amount": self.amount,
                        "structure": self.kind, "finetune_epochs": self.epochs, "lr": self.lr, "network": NETWORK}
        self.record = input_record(self.data, tuple(self.example.shape[1:]))
        self.measured = {"sparsity": after["sparsity"], "params_M": after["params"], "flops_M": after["flops"],
                         "test_accuracy": after["test_accuracy"], "test_accuracy_before": self.before["test_accuracy"],
                         "test_accuracy_pruned": self.after_pruning["test_accuracy"]}
        return super().finish(board)


def prune_run(run_dir: str | Path, amount: float, structured: bool = False, finetune_epochs: int = 10,
              lr: float | None = None, steps_per_epoch: int | None = None, device: str = "auto",
              out: str | Path | None = None, test_images: int | None = None) -> dict[str, Any]:
    """Prune and fine-tune the network of ``run_dir`` (see the module docstring), continuing a step stopped during
    its fine-tuning; returns ``result.json``'s content."""
    step = Pruning(open_source(run_dir), amount, structured, finetune_epochs, lr, steps_per_epoch, device, out,
                   test_images)
    if not step.dir.finished:
        step.resume()
    return step.run()
