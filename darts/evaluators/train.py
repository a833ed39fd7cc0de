"""Score a genotype by training its network from scratch on the weight half of the search split."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from darts.context import Context
from darts.data.search_split import SearchData
from darts.evaluators.base import EpochCallback, Evaluation, Evaluator, build_seeded, candidate_seed
from darts.schedules import Cosine
from darts.settings import SGD, integer
from darts.training import Trainer, evaluate
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
        context: the run's execution context (bf16 = autocast).
    """

    def __init__(self, space: SearchSpace, data: SearchData, epochs: int = 12, batch_size: int = 256,
                 lr: float = 0.1, lr_min: float = 0.0, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 5e-4, steps_per_epoch: int | None = None, eval_batches: int | None = None,
                 seed: int = 0, workers: int = 1, context: Context = Context()):
        super().__init__(space, workers, context)
        integer("evaluator.epochs", epochs, 1)
        integer("evaluator.batch_size", batch_size, 1)
        self.sgd = SGD(lr, lr_min, momentum, weight_decay, None, nesterov, prefix="evaluator")
        self.data, self.epochs, self.batch_size, self.seed = data, epochs, batch_size, seed
        # 12E.config "scheduler": "cos", updated every iteration (xautodl CosineAnnealingLR with iterations)
        self.schedule = Cosine(lr_min, per_step=True)
        self.steps_per_epoch, self.eval_batches = steps_per_epoch, eval_batches
        self.devices = candidate_devices(data.device if data is not None else context.device, workers,
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
        context = replace(self.context, device=device, progress=False)
        net = build_seeded(lambda: self.space.build_network(genotype, self.data.num_classes), seed).to(device)
        loader = self.data.weight_loader(self.batch_size, seed, device)
        trainer = Trainer(net, self.sgd.build(net.parameters()), loader, min(len(loader), self.steps_per_epoch or
                          len(loader)), epochs, self.sgd.lr, self.schedule, context)
        text = self.space.to_text(genotype)
        train = trainer.fit(f"training candidate {index} ({text})", f"evaluator.lr={self.sgd.lr}", kept=False)
        net.eval()
        valid_loader = self.data.valid_loader(self.batch_size, device)
        valid = evaluate(net, valid_loader, min(len(valid_loader), self.eval_batches or len(valid_loader)), context)
        return Evaluation(valid["acc"], time.perf_counter() - start,
                          {"train_acc": train["acc"], "train_loss": train["loss"], "valid_loss": valid["loss"]})
