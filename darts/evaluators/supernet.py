"""Score a genotype with the shared weights of a supernet trained on uniformly sampled single paths
(random search with weight sharing, Li and Talwalkar, UAI 2019, sec. 4.2)."""
from __future__ import annotations

import time
from itertools import islice
from typing import Any

import torch
import torch.nn as nn

from darts.divergence import Diverged, check_finite, diverged
from darts.evaluators.base import EpochCallback, Evaluation, Evaluator, build_seeded, cross_entropy
from darts.context import Runtime, amp_dtype, check_precision
from darts.schedules import Cosine
from darts.data.search_split import SearchData
from darts.training import evaluate, set_lr, train_epoch
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
        epochs, batch_size, lr, lr_min, momentum, weight_decay, grad_clip: the supernet training.
        steps_per_epoch: cap on training steps per epoch (smoke runs); None = full passes.
        eval_batches: validation batches per score (darts_wrapper_discrete.py ``evaluate``: 10).
        seed: seeds the supernet's weights and the sampled paths.
        workers: candidates scored at once (threads; scoring only reads the shared weights).
        progress: progress bars during the training phase.
        precision: the run's ``precision`` (``darts.context.amp_dtype``; bf16 = autocast in the supernet).
    """

    takes_fidelity = False

    def __init__(self, space: SearchSpace, data: SearchData, epochs: int = 100, batch_size: int = 64,
                 lr: float = 0.025, lr_min: float = 0.001, momentum: float = 0.9, weight_decay: float = 3e-4,
                 grad_clip: float = 0.25, steps_per_epoch: int | None = None, eval_batches: int = 10,
                 seed: int = 0, workers: int = 1, progress: bool = True, precision: str = "fp32"):
        super().__init__(space, workers)
        if epochs < 0 or eval_batches < 1:
            raise ValueError(f"evaluator.epochs={epochs} must be >= 0 and eval_batches={eval_batches} >= 1")
        check_precision(precision)
        self.data, self.epochs, self.batch_size, self.seed, self.progress = data, epochs, batch_size, seed, progress
        self.precision = precision
        self.sgd = dict(lr=lr, lr_min=lr_min, momentum=momentum, weight_decay=weight_decay, grad_clip=grad_clip)
        self.steps_per_epoch, self.eval_batches = steps_per_epoch, eval_batches
        self.trained_epochs = 0
        self._restored: dict[str, Any] | None = None

    def prepare(self, on_epoch: EpochCallback | None = None) -> None:
        """Train the shared weights for the remaining epochs (``on_epoch`` after each), then fix the scoring batches."""
        s, device = self.sgd, self.data.device
        runtime = Runtime(device, amp_dtype(self.precision, device))
        self.supernet = build_seeded(lambda: self.space.build_supernet(self.data.num_classes, runtime), self.seed)
        self.optimizer = torch.optim.SGD(self.supernet.weight_parameters(), s["lr"], momentum=s["momentum"],
                                         weight_decay=s["weight_decay"])
        self.paths = torch.Generator().manual_seed(self.seed)
        if self._restored is not None:
            self._restore(self._restored)
        loader = self.data.weight_loader(self.batch_size, self.seed)
        steps = min(len(loader), self.steps_per_epoch or len(loader))
        model = _SinglePath(self.supernet, self.space, self.paths)
        schedule = Cosine(s["lr_min"])  # darts_wrapper_discrete.py: CosineAnnealingLR stepped per epoch
        for epoch in range(self.trained_epochs, self.epochs):
            lr = schedule(s["lr"], epoch, self.epochs)
            set_lr(self.optimizer, lr)
            loader.set_epoch(epoch)
            try:
                metrics = train_epoch(model, loader, self.optimizer, steps, device, cross_entropy, s["grad_clip"],
                                      f"supernet {epoch}", self.progress)
                check_finite(self.supernet.named_parameters())
            except Diverged as err:
                raise diverged("the supernet's training", epoch, err, f"evaluator.lr={s['lr']}") from None
            self.trained_epochs = epoch + 1
            if on_epoch is not None:
                on_epoch(epoch, {"train_loss": metrics["loss"], "train_acc": metrics["acc"], "lr": lr})
        self.supernet.eval()
        self.batches = list(islice(self.data.valid_loader(self.batch_size), self.eval_batches))

    def evaluate(self, genotype: Any, index: int, fidelity: None = None) -> Evaluation:
        """Validation accuracy (%) of ``genotype`` with the shared weights (no fidelity: the weights are trained once)."""
        if fidelity is not None:
            raise ValueError(f"evaluator=supernet takes no fidelity, got {fidelity!r}")
        start = time.perf_counter()
        mixing = self.space.one_hot(genotype)
        result = evaluate(lambda x: self.supernet(x, mixing), self.batches, len(self.batches), self.data.device,
                          progress=False)
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
