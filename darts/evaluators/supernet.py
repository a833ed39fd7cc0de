"""Score a genotype with the shared weights of a supernet trained on uniformly sampled single paths
(random search with weight sharing, Li and Talwalkar, UAI 2019, sec. 4.2)."""
from __future__ import annotations

import time
from dataclasses import replace
from itertools import islice
from typing import Any

import torch
import torch.nn as nn

from darts.context import Context
from darts.data.search_split import SearchData
from darts.evaluators.base import EpochCallback, Evaluation, Evaluator, build_seeded
from darts.schedules import Cosine
from darts.settings import SGD, integer
from darts.training import Trainer, evaluate
from search_spaces.base import SearchSpace


class _SinglePath(nn.Module):
    """The supernet running a fresh uniformly sampled genotype (``space.sample`` -> ``one_hot``) per forward."""

    def __init__(self, supernet: nn.Module, space: SearchSpace, generator: torch.Generator):
        super().__init__()
        self.supernet, self.space, self.generator = supernet, space, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes) through one random path."""
        return self.supernet(x, self.space.one_hot(self.space.sample(self.generator)))


class SupernetEvaluator(Evaluator):
    """Random search with weight sharing (Li and Talwalkar, UAI 2019, sec. 4.2; liamcli/randomNAS_release).

    ``prepare`` trains the supernet for ``epochs`` on the weight half, one uniformly sampled single path
    per step (other edges run `none`), with SGD and a per-epoch cosine schedule as the DARTS search
    (darts_wrapper_discrete.py). A genotype's score is then its accuracy with the shared weights, the
    supernet in eval mode (as darts_wrapper_discrete.py ``evaluate``), on the same first ``eval_batches``
    batches of the validation half for every candidate. The cost is the wall time of that scoring.

    Args:
        space, data: the run's space and search split.
        epochs, batch_size, lr, lr_min, momentum, weight_decay, grad_clip: the supernet training (SGD, a per-epoch
            cosine from lr to lr_min).
        steps_per_epoch: cap on training steps per epoch (smoke runs); None = full passes.
        eval_batches: validation batches per score (darts_wrapper_discrete.py ``evaluate``: 10).
        seed: seeds the supernet's weights and the sampled paths.
        workers: candidates scored at once (threads; scoring only reads the shared weights).
        context: the run's execution context (bf16 = autocast in the supernet; progress bars while training).
    """

    takes_fidelity = False

    def __init__(self, space: SearchSpace, data: SearchData, epochs: int = 100, batch_size: int = 64,
                 lr: float = 0.025, lr_min: float = 0.001, momentum: float = 0.9, weight_decay: float = 3e-4,
                 grad_clip: float = 0.25, steps_per_epoch: int | None = None, eval_batches: int = 10, seed: int = 0,
                 workers: int = 1, context: Context = Context()):
        super().__init__(space, workers, context)
        integer("evaluator.epochs", epochs, 0)
        integer("evaluator.eval_batches", eval_batches, 1)
        integer("evaluator.batch_size", batch_size, 1)
        self.sgd = SGD(lr, lr_min, momentum, weight_decay, grad_clip, prefix="evaluator")
        self.data, self.epochs, self.batch_size, self.seed = data, epochs, batch_size, seed
        self.steps_per_epoch, self.eval_batches = steps_per_epoch, eval_batches
        self.trained_epochs = 0
        self._restored: dict[str, Any] | None = None

    def prepare(self, on_epoch: EpochCallback | None = None) -> None:
        """Train the shared weights for the remaining epochs (``on_epoch`` after each), then fix the scoring batches."""
        self.supernet = build_seeded(lambda: self.space.build_supernet(self.data.num_classes, self.context), self.seed)
        self.optimizer = self.sgd.build(self.supernet.weight_parameters())
        self.paths = torch.Generator().manual_seed(self.seed)
        if self._restored is not None:
            self._restore(self._restored)
        loader = self.data.weight_loader(self.batch_size, self.seed)
        # darts_wrapper_discrete.py: CosineAnnealingLR stepped per epoch
        trainer = Trainer(_SinglePath(self.supernet, self.space, self.paths), self.optimizer, loader,
                          min(len(loader), self.steps_per_epoch or len(loader)), self.epochs, self.sgd.lr,
                          Cosine(self.sgd.lr_min), self.context, grad_clip=self.sgd.grad_clip, watched=self.supernet,
                          desc="supernet")

        def after(epoch: int, metrics: dict[str, float]) -> None:
            self.trained_epochs = epoch + 1
            if on_epoch is not None:
                on_epoch(epoch, {"train_loss": metrics["loss"], "train_acc": metrics["acc"], "lr": metrics["lr"]})

        trainer.fit("the supernet's training", f"evaluator.lr={self.sgd.lr}", self.trained_epochs, after)
        self.supernet.eval()
        self.batches = list(islice(self.data.valid_loader(self.batch_size), self.eval_batches))

    def evaluate(self, genotype: Any, index: int, fidelity: None = None) -> Evaluation:
        """Validation accuracy (%) of ``genotype`` with the shared weights (no fidelity: the weights are trained once)."""
        if fidelity is not None:
            raise ValueError(f"evaluator=supernet takes no fidelity, got {fidelity!r}")
        start = time.perf_counter()
        mixing = self.space.one_hot(genotype)
        result = evaluate(lambda x: self.supernet(x, mixing), self.batches, len(self.batches),
                          replace(self.context, progress=False))
        return Evaluation(result["acc"], time.perf_counter() - start, {"valid_loss": result["loss"]})

    def state_dict(self) -> dict[str, Any]:
        """Trained epochs, supernet, optimizer and path generator."""
        return {"epoch": self.trained_epochs, "supernet": self.supernet.state_dict(),
                "optimizer": self.optimizer.state_dict(), "paths": self.paths.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep ``state`` to restore once ``prepare`` has built the supernet."""
        self._restored = state

    def _restore(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.paths.set_state(state["paths"])
        self.trained_epochs = state["epoch"]
