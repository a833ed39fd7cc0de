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

from darts.model_stats import count_flops
from darts.runs import checkpoint
from darts.deploy.steps import (NETWORK, DeployRun, accuracy, input_record, open_source,
                                   test_loader)
from darts.context import Context
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
    (``count_flops``) less 2 per zero weight per output position of its conv or linear layer."""
    saved = []
    hooks = [m.register_forward_hook(lambda m, i, out: saved.append(2 * (out[0, 0].numel() if out.dim() == 4 else 1)
                                                                    * int((m.weight == 0).sum())))
             for m in network.modules() if isinstance(m, PRUNABLE)]
    network.eval()(x)
    for hook in hooks:
        hook.remove()
    return count_flops(network, x) - sum(saved)


def measure(network: nn.Module, x: torch.Tensor, test: Any) -> dict[str, float]:
    """Sparsity, params, FLOPs and test accuracy of the network."""
    network.eval()
    flops = nonzero_flops(network, x)
    return {**sparsity(network), "flops": flops, "madds": flops // 2, "test_accuracy": accuracy(network, test)}


def pruned(source: Any, amount: float, structured: bool) -> nn.Module:
    """The source's network (fp32, logits only) with its pruning masks."""
    network = source.network()
    (prune_channels if structured else prune_unstructured)(network, amount)
    return network


def finetune(run: DeployRun, network: nn.Module, data: Any, epochs: int, lr: float, steps: int | None,
             context: Context, test_images: int | None = None) -> None:
    """Fine-tune the masked network for the epochs not yet checkpointed in ``run`` (see the module docstring), with
    the retraining recipe's SGD and a cosine from ``lr`` to 0 (``darts.training.Trainer``)."""
    cfg = run.config
    opt = {"momentum": 0.9, "weight_decay": 3e-4, "nesterov": False, "grad_clip": 5, **cfg.get("optimizer", {})}
    sgd = SGD(lr, 0.0, opt["momentum"], opt["weight_decay"], opt["grad_clip"], opt["nesterov"])
    optimizer = sgd.build(network.parameters())
    train = data.train.loader(int(cfg.get("batch_size", 96)), context.device, train=True,
                              cutout=int(cfg.get("cutout", 0)), seed=int(cfg.get("seed") or 0))
    trainer = Trainer(network, optimizer, train, min(len(train), steps or len(train)), epochs, lr, Cosine(), context,
                      grad_clip=sgd.grad_clip, desc="fine-tune")
    start = 0
    if run.dir.has_checkpoint:
        state = run.dir.load_checkpoint()
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"])
        start = state["epoch"] + 1
        log.info("resumed %s at fine-tuning epoch %d of %d", run.path, start + 1, epochs)
    test = test_loader(data, test_images, context.device)
    board = run.dir.tensorboard()

    def after(epoch: int, train_metrics: dict[str, float]) -> None:
        network.eval()
        metrics = {"train_loss": train_metrics["loss"], "train_acc": train_metrics["acc"], "lr": train_metrics["lr"],
                   "test_acc": accuracy(network, test, context.device)}
        board.scalars("prune", metrics, epoch)
        run.dir.save_checkpoint({"epoch": epoch, "model": network.state_dict(), "optimizer": optimizer.state_dict(),
                                 "rng": checkpoint.rng_state(), "metrics": metrics})
        log.info("fine-tuning epoch %d/%d: train_acc %.2f test_acc %.2f", epoch + 1, epochs, metrics["train_acc"],
                 metrics["test_acc"])

    try:
        trainer.fit("the fine-tuning", f"--lr={lr}", start, after)
    finally:
        board.close()


def prune_run(run_dir: str | Path, amount: float, structured: bool = False, finetune_epochs: int = 10,
              lr: float | None = None, steps_per_epoch: int | None = None, device: str = "auto",
              out: str | Path | None = None, test_images: int | None = None) -> dict[str, Any]:
    """Prune and fine-tune the network of ``run_dir`` (see the module docstring); returns ``result.json``'s content."""
    if not 0.0 < amount < 1.0:
        raise ValueError(f"--amount={amount} must lie in (0, 1): the fraction of weights (or channels) pruned")
    if finetune_epochs < 0 or (steps_per_epoch is not None and steps_per_epoch < 1):
        raise ValueError(f"--finetune-epochs={finetune_epochs} must be >= 0 and --steps-per-epoch={steps_per_epoch} "
                         ">= 1 or unset")
    source = open_source(run_dir)
    if source.step not in ("final", "prune"):
        raise ValueError(f"{source.path} is an {source.step} run: prune a retraining or pruning run")
    # one tenth of the retraining's initial rate: fine-tuning starts from trained weights
    lr = lr if lr is not None else float(source.config.get("optimizer", {}).get("lr", 0.025)) / 10
    if lr <= 0:
        raise ValueError(f"--lr={lr} must be > 0")
    kind = "structured" if structured else "unstructured"
    label = f"prune {amount:.0%}{' structured' if structured else ''}"
    settings = {"amount": amount, "structure": kind, "finetune_epochs": finetune_epochs, "lr": lr,
                "steps_per_epoch": steps_per_epoch, "test_images": test_images}
    name = f"prune_{amount * 100:g}{'_structured' if structured else ''}"
    run = DeployRun(source, "prune", label, settings, out, name)
    if (done := run.finished) is not None:
        log.info("%s is complete", run.path)
        return done
    data = source.datasets()
    test = test_loader(data, test_images)
    x = next(iter(test))[0][:1]  # (1, 3, H, W)
    before = measure(source.network(), x, test)
    network = pruned(source, amount, structured)
    after_pruning = measure(network, x, test)
    context = Context.of(device, progress=False)
    finetune(run, network.to(context.device), data, finetune_epochs, lr, steps_per_epoch, context, test_images)
    network.cpu()
    for module in network.modules():  # the masks made permanent: plain weights with zeros
        for name in [n.removesuffix("_orig") for n, _ in module.named_parameters(recurse=False) if n.endswith("_orig")]:
            prune.remove(module, name)
    spec, _ = source.spec()
    run.dir.save_checkpoint({"spec": spec.to_dict(), "model": network.network.state_dict()}, NETWORK)
    after = measure(network, x, test)
    result = {**after, "before": before, "after_pruning": after_pruning, "amount": amount, "structure": kind,
              "finetune_epochs": finetune_epochs, "lr": lr, "network": NETWORK}
    metrics = {"sparsity": after["sparsity"], "params_M": after["params"], "madds_M": after["madds"] / 1e6,
               "test_accuracy": after["test_accuracy"], "test_accuracy_before": before["test_accuracy"],
               "test_accuracy_pruned": after_pruning["test_accuracy"]}
    return run.finish(result, input_record(data, tuple(x.shape[1:])), metrics)
