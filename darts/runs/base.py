"""The lifecycle every run kind shares: the run directory (locked while the run lives), resume (the kind's state and
every rank's random streams), the epoch template, divergence and the finish.

A run kind (gradient search, discrete search, retraining, a deployment step) subclasses ``Run`` (or ``EpochRun``, whose
``loop`` is the epoch template) and says only what differs: ``epoch`` (one epoch's work) or ``loop`` (a discrete
search's generations), ``state_dict``/``load_state_dict`` (what resuming needs besides the random streams),
``finish`` (the result), and where it needs them ``start`` (before the loop), ``stop`` (an early end) and ``fault``
(the setting to blame for a divergence). ``run`` does the rest:

    lock the directory -> drop torn temporary files -> start -> for each remaining epoch: stop?, epoch, checkpoint,
    report to the tuning trial -> finish -> result.json (written last: its presence marks a finished run) ->
    TensorBoard's HParams record

A run that is a tuning trial (``darts.tuning.trial``) reports its ``metrics`` after each epoch; when the study's pruner
stops it, its ``result.json`` says ``"status": "pruned"`` instead of holding the kind's result.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from darts.context import Context
from darts.divergence import Diverged
from darts.runs import checkpoint
from darts.runs.directory import RunDirectory
from darts.runs.tensorboard_log import TensorBoardLog
from darts.tuning.trial import Pruned, TrialLink

log = logging.getLogger(__name__)


class Run(ABC):
    """A run in its directory (see the module docstring).

    Args:
        run_dir: the run directory (rank 0 writes it; other ranks of a torchrun run only read it).
        context: the execution context (device, precision, ranks, progress).
        epochs: the epochs of the epoch template (a run kind with another loop overrides ``loop``).
        hparams: the run's settings for TensorBoard's HParams tab (the entry point passes the configuration's).
    """

    what = "the run"  # names the run in a divergence message: "the search diverged in epoch 3: ..."

    def __init__(self, run_dir: str | Path, context: Context, epochs: int = 1, hparams: dict[str, Any] | None = None):
        self.context = context
        self.dir = RunDirectory(run_dir, writer=context.dist.main)
        self.epochs, self.hparams = epochs, hparams or {}
        self.start_epoch = 0
        self.metrics: dict[str, float] = {}  # the last epoch's metrics, which a tuning trial reports
        self.trial = TrialLink.from_environment(self.dir.path)

    def resume(self) -> None:
        """Continue from the checkpoint: the kind's state, then every rank's random streams; start over (warned) if
        no checkpoint was completed."""
        if not self.dir.has_checkpoint:
            log.warning("%s has no completed checkpoint (it stopped before its first one): starting over",
                        self.dir.path)
            return
        state = self.dir.load_checkpoint()
        self.start_epoch = state.get("epoch", -1) + 1
        if self.epochs < self.start_epoch:
            raise ValueError(f"epochs={self.epochs} is below the {self.start_epoch} epochs {self.dir.path} has run")
        self.load_state_dict(state)
        if "rng" in state:
            checkpoint.set_rng_state(state["rng"], self.context.dist.rank)
        log.info("resumed %s at epoch %d of %d", self.dir.path, self.start_epoch + 1, self.epochs)

    def run(self) -> dict[str, Any]:
        """Run what is left (the directory locked meanwhile), then write and return ``result.json``."""
        with self.dir.locked():
            self.dir.remove_temporary()
            board = self.dir.tensorboard()
            try:
                self.start(board)
                try:
                    self.loop(board)
                except Pruned as pruned:
                    log.info("%s: %s", self.dir.path, pruned)
                    self.dir.write_result(pruned.result())
                    return pruned.result()
                result = self.finish(board)
                self.dir.write_result(result)
                board.result(self.hparams, self.summary(result))
            finally:
                board.close()
        return result

    @abstractmethod
    def loop(self, board: TensorBoardLog) -> None:
        """The run's work after ``start`` (checkpointing as it goes)."""

    def save(self, epoch: int) -> None:
        """Checkpoint after ``epoch`` (atomic): the kind's state and every rank's random streams."""
        self.dir.save_checkpoint({**self.state_dict(), "epoch": epoch,
                                  "rng": self.context.dist.gather(checkpoint.rng_state())})

    def report(self, epoch: int) -> None:
        """Report ``metrics`` after ``epoch`` to the tuning trial the run is (if any): rank 0 asks the study, every rank
        raises ``Pruned`` if it stops the trial."""
        if self.trial is None:
            return
        pruned = None
        if self.context.dist.main:
            try:
                self.trial.report(epoch, self.metrics)
            except Pruned as err:
                pruned = err
        pruned = self.context.dist.share(pruned)
        if pruned is not None:
            raise pruned

    def start(self, board: TensorBoardLog) -> None:
        """Before the loop (default: nothing)."""

    def summary(self, result: dict[str, Any]) -> dict[str, float]:
        """The final metrics of TensorBoard's HParams record (default: none)."""
        return {}

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """What resuming needs besides the epoch and the random streams."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s state (``start_epoch`` is already set)."""

    @abstractmethod
    def finish(self, board: TensorBoardLog) -> dict[str, Any]:
        """The result (its genotype files written), after the loop."""


class EpochRun(Run):
    """A run whose loop is the epoch template: ``epoch`` then a checkpoint, for each remaining epoch."""

    def loop(self, board: TensorBoardLog) -> None:
        """The epoch template: each remaining epoch, then a checkpoint, unless ``stop`` ends the run first; a
        divergence names the run, the epoch and ``fault``'s setting."""
        for epoch in range(self.start_epoch, self.epochs):
            if self.stop():
                break
            try:
                self.epoch(epoch, board)
            except Diverged as err:
                raise err.at(self.what, epoch, self.fault(err)) from None
            self.save(epoch)
            self.report(epoch)

    def stop(self) -> bool:
        """Whether to end before the next epoch (default: never early)."""
        return False

    def fault(self, err: Diverged) -> str:
        """The setting most likely at fault for ``err`` (default: the weights' learning rate)."""
        return "optimizer.lr"

    @abstractmethod
    def epoch(self, epoch: int, board: TensorBoardLog) -> None:
        """One epoch's work, logged to ``board``."""
