"""Score a genotype by training its network from scratch on the weight half of the search split."""
from __future__ import annotations

import time
from typing import Any

import torch

from darts.divergence import Diverged
from darts.evaluators.base import EpochCallback, Evaluation, Evaluator, build_seeded, candidate_seed, cross_entropy
from darts.context import amp_dtype, check_precision
from darts.schedules import Cosine
from darts.data.search_split import SearchData
from darts.training import evaluate, train_epoch
from search_spaces.base import SearchSpace


def candidate_devices(device: torch.device, workers: int, gpus: int) -> list[torch.device]:
    """Where candidates train: with several workers on a CUDA search and several GPUs, candidate i on GPU i mod GPUs
    (the workers' concurrent trainings spread over the GPUs); else all on the search's device."""
    if device.type == "cuda" and workers > 1 and gpus > 1:
        return [torch.device("cuda", k) for k in range(gpus)]
    return [device]


class TrainEvaluator(Evaluator):
    """Train the genotype's network (``space.build_network``) from scratch, score its validation accuracy.

    Defaults are NAS-Bench-201's 12-epoch schedule, the one behind its ``*_12ep`` columns (AutoDL-Projects
    configs/nas-benchmark/hyper-opts/12E.config): SGD with Nesterov momentum 0.9, lr 0.1 cosine-annealed
    per step to 0, weight decay 5e-4, batch 256, 12 epochs. Each candidate's initial weights and data
    order are seeded by ``candidate_seed(seed, index)``. The cost is the wall time of the evaluation.

    Args:
        space, data: the run's space and search split.
        epochs, batch_size, lr, lr_min, momentum, nesterov, weight_decay: the training recipe.
        steps_per_epoch: cap on training steps per epoch (smoke runs); None = full passes.
        eval_batches: cap on validation batches; None = the whole validation half.
        seed: the run seed.
        workers: candidates trained at once (threads).
        precision: the run's ``precision`` (``darts.context.amp_dtype``; bf16 = autocast).
    """

    def __init__(self, space: SearchSpace, data: SearchData, epochs: int = 12, batch_size: int = 256,
                 lr: float = 0.1, lr_min: float = 0.0, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 5e-4, steps_per_epoch: int | None = None, eval_batches: int | None = None,
                 seed: int = 0, workers: int = 1, precision: str = "fp32"):
        super().__init__(space, workers)
        if epochs < 1:
            raise ValueError(f"evaluator.epochs={epochs} must be >= 1")
        check_precision(precision)
        self.data, self.epochs, self.batch_size, self.seed, self.precision = data, epochs, batch_size, seed, precision
        self.optimizer = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        self.schedule = Cosine(lr_min, per_step=True)
        self.steps_per_epoch, self.eval_batches = steps_per_epoch, eval_batches
        self.devices = candidate_devices(data.device if data is not None else torch.device("cpu"), workers,
                                         torch.cuda.device_count())

    def prepare(self, on_epoch: EpochCallback | None = None) -> None:
        """Load the dataset (in the main thread, before any worker starts)."""
        self.data.load()

    def evaluate(self, genotype: Any, index: int, fidelity: int | None = None) -> Evaluation:
        """Train for ``fidelity`` epochs (default ``epochs``) on the weight half, then the accuracy (%) on the
        validation half; the cost is the wall time."""
        epochs = self.epochs if fidelity is None else int(fidelity)
        if epochs < 1:
            raise ValueError(f"a TrainEvaluator fidelity is a number of epochs >= 1, got {fidelity!r}")
        start = time.perf_counter()
        seed = candidate_seed(self.seed, index)
        device = self.devices[index % len(self.devices)]  # concurrent candidates spread over the visible GPUs
        net = build_seeded(lambda: self.space.build_network(genotype, self.data.num_classes), seed).to(device)
        loader = self.data.weight_loader(self.batch_size, seed, device)
        steps = min(len(loader), self.steps_per_epoch or len(loader))
        optimizer = torch.optim.SGD(net.parameters(), **self.optimizer)
        lr, amp = self.optimizer["lr"], amp_dtype(self.precision, device)
        try:
            for epoch in range(epochs):
                loader.set_epoch(epoch)
                # 12E.config "scheduler": "cos", updated every iteration (xautodl CosineAnnealingLR with iterations)
                train = train_epoch(net, loader, optimizer, steps, device, cross_entropy, progress=False,
                                    amp_dtype=amp, lr_at_step=lambda step: self.schedule(lr, epoch + step / steps, epochs))
            net.eval()
            valid_loader = self.data.valid_loader(self.batch_size, device)
            valid = evaluate(net, valid_loader, min(len(valid_loader), self.eval_batches or len(valid_loader)),
                             device, progress=False, amp_dtype=amp)
        except Diverged as err:
            raise Diverged(f"training candidate {index} ({self.space.to_text(genotype)}) diverged in epoch {epoch}: "
                           f"{err}; most likely evaluator.lr={lr} is too large (lower it); no result was written"
                           ) from None
        return Evaluation(valid["acc"], time.perf_counter() - start,
                          {"train_acc": train["acc"], "train_loss": train["loss"], "valid_loss": valid["loss"]})
