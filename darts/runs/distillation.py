"""Knowledge distillation: retraining a network with a frozen teacher's softened predictions as extra targets.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015), sec. 2: the student minimises a
weighted average of the cross-entropy with the hard labels and of the cross-entropy with the teacher's soft targets
``softmax(teacher_logits / T)``, both computed at the same temperature T; the soft term is multiplied by T^2 because its
gradients scale as 1/T^2. Here the soft term is the KL divergence, which differs from that cross-entropy by the
teacher's entropy (a constant for the student: same gradients):

    loss = (1 - alpha) * CE(logits, y) + alpha * T^2 * KL(softmax(teacher_logits / T) || softmax(logits / T))

The teacher is a finished retraining run (``train_final.py``'s run directory, rebuilt from its checkpoint) or a
torchvision classifier (``torchvision:<model>``, with a state dict of the dataset's classes). It stays frozen in eval
mode on the student's device and sees the student's (augmented) batch. ``darts.runs.final`` applies the loss.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.distributed import SINGLE, Distributed
from darts.runs.directory import CHECKPOINT, CONFIG, RESULT
from darts.runs.reader import Run
from darts.settings import number

log = logging.getLogger(__name__)
TORCHVISION = "torchvision:"


def kd_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, temperature: float, alpha: float,
            label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, ce, kd): ``(1 - alpha) * ce + alpha * kd`` with ce = CE(logits, y) (label-smoothed as the recipe says) and
    kd = T^2 * KL(softmax(teacher_logits / T) || softmax(logits / T)), the mean over the batch (Hinton et al. 2015,
    sec. 2; RepDistiller distiller_zoo/KD.py DistillKL computes the same sum / batch).

    Args:
        logits, teacher_logits: (B, K) the student's and the teacher's logits.
        y: (B,) labels.
    """
    ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    log_student = F.log_softmax(logits.float() / temperature, dim=-1)  # (B, K)
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # (B, K)
    kd = temperature ** 2 * F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return (1 - alpha) * ce + alpha * kd, ce, kd


def check_settings(temperature: float, alpha: float) -> None:
    """ValueError unless temperature > 0 (Hinton et al. 2015 use 1 to 20) and alpha (the soft term's weight) lies in
    [0, 1]."""
    number("distill.temperature", temperature, 0, low_open=True)
    number("distill.alpha", alpha, 0, 1, high_open=False)


class Distilled(nn.Module):
    """The student (trained) beside its teacher (frozen, always in eval mode): forward gives (the student's output,
    the teacher's output), each logits (B, K) or (logits, logits_aux)."""

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        self.student, self.teacher = student, teacher

    def train(self, mode: bool = True) -> Distilled:
        """The student in ``mode``, the teacher in eval mode (its BN statistics and any dropout stay fixed)."""
        self.student.train(mode)
        self.teacher.eval()
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> tuple[Any, Any]:
        """(student(x), teacher(x)) for images (B, 3, H, W); no graph is kept for the teacher."""
        with torch.no_grad():
            teacher_output = self.teacher(x)
        return self.student(x), teacher_output


class Distillation:
    """A frozen teacher and the KD loss's settings; sums the epoch's CE and KD terms on the device (``epoch_terms``).

    Args:
        teacher: the teacher network (logits, or (logits, logits_aux) as the DARTS networks return).
        source: what the user named (a run directory or ``torchvision:<model>``), for result.json.
        weights: the file the teacher's weights came from (None: a randomly initialised torchvision model).
        temperature: T, > 0.
        alpha: the soft term's weight, in [0, 1] (0 = plain cross-entropy).
    """

    def __init__(self, teacher: nn.Module, source: str, weights: str | None, temperature: float, alpha: float):
        check_settings(temperature, alpha)
        self.teacher = teacher.eval().requires_grad_(False)
        self.source, self.weights, self.temperature, self.alpha = source, weights, temperature, alpha
        self._sums: torch.Tensor | None = None  # [2]: the CE and KD terms summed over the epoch's samples
        self._count = 0  # the epoch's samples

    def wrap(self, student: nn.Module) -> Distilled:
        """The module to train: its forward returns (student output, teacher output)."""
        return Distilled(student, self.teacher)

    def loss(self, logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
             label_smoothing: float = 0.0) -> torch.Tensor:
        """``kd_loss`` of the student's logits (B, K) against the teacher's (B, K) and the labels (B,); its CE and KD
        terms are added to the epoch's sums (on the device: no host sync)."""
        loss, ce, kd = kd_loss(logits, teacher_logits, y, self.temperature, self.alpha, label_smoothing)
        terms = torch.stack([ce.detach(), kd.detach()]) * y.numel()  # [2]
        self._sums = terms if self._sums is None else self._sums + terms
        self._count += y.numel()
        return loss

    def epoch_terms(self, dist: Distributed = SINGLE) -> dict[str, float]:
        """The mean CE and KD terms (unweighted by alpha) since the last call, over the ranks; resets the sums."""
        if self._sums is None:
            return {}
        count = torch.tensor([float(self._count)], device=self._sums.device)  # [1]
        ce, kd, n = dist.sum(torch.cat([self._sums, count])).tolist()
        self._sums, self._count = None, 0
        return {"train_ce_loss": ce / n, "train_kd_loss": kd / n}

    def record(self, teacher_test_accuracy: float) -> dict[str, Any]:
        """The distillation's entry in result.json."""
        return {"teacher": self.source, "teacher_weights": self.weights, "temperature": self.temperature,
                "alpha": self.alpha, "teacher_test_accuracy": teacher_test_accuracy}


def from_settings(num_classes: int, teacher: str | None = None, weights: str | None = None, temperature: float = 4.0,
                  alpha: float = 0.9) -> Distillation | None:
    """The distillation the ``distill`` settings describe (None without a teacher): the teacher loaded for a dataset of
    ``num_classes`` classes. The RNG is left as it was, so a student starts from the same weights with or without one.
    The defaults are conf/final.yaml's (T = 4, alpha = 0.9: RepDistiller's KD, scripts/run_cifar_distill.sh)."""
    check_settings(temperature, alpha)
    if teacher is None:
        if weights is not None:
            raise ValueError(f"distill.weights={weights} needs a teacher: set distill.teacher=torchvision:<model>")
        return None
    source = str(teacher)
    with torch.random.fork_rng(devices=[]):  # building the teacher draws initial weights
        if source.startswith(TORCHVISION):
            network, loaded = torchvision_teacher(source.removeprefix(TORCHVISION), num_classes, weights)
        elif weights is not None:
            raise ValueError(f"distill.weights={weights} is for a torchvision teacher; a retraining run's weights are "
                             f"its own {CHECKPOINT}: drop distill.weights")
        else:
            network, loaded = retrained_teacher(Path(source).expanduser(), num_classes)
    return Distillation(network, source, loaded, temperature, alpha)


def retrained_teacher(path: Path, num_classes: int) -> tuple[nn.Module, str]:
    """(network, weights file) of a finished ``train_final.py`` run: the network its checkpoint's spec describes, with
    the weights of ``checkpoint.pt`` (loaded with ``weights_only=True``): its last epoch, the network its result.json
    reports, as RepDistiller's teachers are their last epoch's (scripts/run_cifar_distill.sh, ckpt_epoch_240.pth)."""
    not_a_run = f"distill.teacher={str(path)!r} is not a retraining run directory"
    if not (path / CONFIG).is_file() or not (path / CHECKPOINT).is_file():
        raise ValueError(f"{not_a_run} (it needs {CONFIG} and {CHECKPOINT}); give a train_final.py run directory or "
                         f"{TORCHVISION}<model>")
    run = Run.open(path)
    try:
        spec, weights = run.network_spec()
    except ValueError as err:
        raise ValueError(f"{not_a_run}: {err}") from None
    if not run.finished:
        raise ValueError(f"distill.teacher={str(path)!r} has not finished (no {RESULT}): finish it first "
                         f"(train_final.py resume={path})")
    if spec.num_classes != num_classes:
        raise ValueError(f"distill.teacher={str(path)!r} classifies {spec.num_classes} classes, the dataset has "
                         f"{num_classes}: give a teacher trained on this dataset")
    teacher = spec.build()
    teacher.load_state_dict(weights)
    return teacher, str(path / CHECKPOINT)


def torchvision_teacher(name: str, num_classes: int, weights: str | None) -> tuple[nn.Module, str | None]:
    """(network, weights file) for torchvision classifier ``name`` with ``num_classes`` outputs and the state dict in
    ``weights`` (loaded with ``weights_only=True``); randomly initialised, with a warning, without one."""
    from torchvision import models  # imported when used: torchvision brings torch._dynamo (seconds)

    names = models.list_models(module=models)  # the classification models
    if name not in names:
        raise ValueError(f"distill.teacher='{TORCHVISION}{name}': torchvision has no classification model {name!r}; "
                         f"choose one of {', '.join(names)}")
    teacher = models.get_model(name, weights=None, num_classes=num_classes)
    if weights is None:
        log.warning("the teacher %s%s is randomly initialised (no distill.weights): it teaches nothing useful",
                    TORCHVISION, name)
        return teacher, None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"distill.weights={weights}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # garbage, a truncated file, or objects weights_only refuses
        raise ValueError(f"distill.weights={weights} is not a state dict torch.load reads with weights_only=True "
                         f"({type(err).__name__})") from None
    try:
        teacher.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        cause = " ".join(str(err).split())[:300]
        raise ValueError(f"distill.weights={weights} does not fit {TORCHVISION}{name} with the dataset's {num_classes} "
                         f"classes ({cause})") from None
    return teacher, str(path)
