"""Jacobian proxies: scores of the correlations between the input gradients of different images.

J holds the input gradients of the summed logits, one row per image (measures/jacob_cov.py and epe_nas.py
get_batch_jacobian: y.backward(ones_like(y)) then x.grad), of a training-mode copy of the network.

- ``jacov`` (Mellor et al., "Neural Architecture Search without Training", arXiv 2006.04647v1, sec. 3; zero-cost-nas
  foresight/pruners/measures/jacob_cov.py): Sigma the correlation matrix of the rows of J with eigenvalues lambda,
  score = -sum_i [log(lambda_i + k) + 1/(lambda_i + k)], k = 1e-5;
- ``epe_nas`` (Lopes et al., "EPE-NAS: Efficient Performance Estimation Without Training for Neural Architecture
  Search", ICANN 2021; NASLib naslib/predictors/utils/pruners/measures/epe_nas.py, from VascoLopes/EPE-NAS
  search.py): per label c present in the batch, Sigma_c the correlation matrix of the rows of J of that label and
  s_c = sum_ij log(|Sigma_c[i, j]| + k), k = 1e-5. With C <= 100 classes (C the number of logits) the score is
  sum_c |s_c|; above 100, s_c is divided by the number of images of c and the score is
  sum_c sum_c' |s_c - s_c'| / (number of labels present).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

JACOV_K = 1e-5  # measures/jacob_cov.py eval_score: k = 1e-5
EPE_K = 1e-5  # epe_nas.py eval_score_perclass: k = 1e-5
EPE_MANY_CLASSES = 100  # epe_nas.py: "if n_classes <= 100" sums |s_c|, otherwise compares the classes


def input_jacobian(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor | None, int]:
    """J [B, 3 * H * W], the input gradients of the summed logits of a training-mode copy of ``net`` (None when
    the logits ignore the input), and the number of logits."""
    net = copy.deepcopy(net).train()
    x = x.detach().clone().requires_grad_(True)
    logits = net(x)  # (B, num_classes)
    (grad,) = torch.autograd.grad(logits.sum(), x, allow_unused=True)  # (B, 3, H, W), or None: x unused
    return (None if grad is None else grad.flatten(1)), logits.shape[-1]


def jacov_score(jacobians: torch.Tensor, k: float = JACOV_K) -> float:
    """-sum(log(lambda + k) + 1/(lambda + k)) over the eigenvalues lambda of the correlation matrix of the rows of
    ``jacobians`` [B, D]; NaN when a row is constant (its correlations are undefined; the reference yields NaN)."""
    corr = torch.corrcoef(jacobians.double())  # [B, B]
    if not bool(torch.isfinite(corr).all()):
        return math.nan
    eigenvalues = torch.linalg.eigvalsh(corr)  # [B], real: corr is symmetric (the reference's np.linalg.eig)
    return float(-(torch.log(eigenvalues + k) + 1.0 / (eigenvalues + k)).sum())


def jacov(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Jacobian covariance score of the input gradients of the summed logits, one row per image."""
    jacobians, _ = input_jacobian(net, x)
    return math.nan if jacobians is None else jacov_score(jacobians)


def class_correlation_sum(rows: torch.Tensor, k: float = EPE_K) -> float:
    """s_c = sum_ij log(|corr_ij| + k) of the correlation matrix of ``rows`` [n, D] (float64), NaN where a row is
    constant. One row is its own correlation, 1 (np.corrcoef of one vector: var / var)."""
    rows = rows.double()
    if len(rows) == 1:
        centred = rows[0] - rows[0].mean()  # [D]
        corr = (centred @ centred) / (centred @ centred)  # 1, or NaN (0 / 0) for a constant row
    else:
        corr = torch.corrcoef(rows)  # [n, n], NaN rows and columns for a constant row
    return float(torch.log(corr.abs() + k).sum())


def epe_nas_score(jacobians: torch.Tensor, labels: torch.Tensor, num_classes: int, k: float = EPE_K) -> float:
    """The EPE-NAS score of ``jacobians`` [B, D] grouped by ``labels`` [B], for a network with ``num_classes`` logits.

    Above 100 classes a label seen once is left out: the reference's len() of a one-image correlation (a 0-d
    array) raises, and its per-class loop skips the class."""
    groups = [(labels == c) for c in torch.unique(labels)]  # the labels present, each as a [B] mask
    if num_classes <= EPE_MANY_CLASSES:
        return float(sum(abs(class_correlation_sum(jacobians[mask], k)) for mask in groups))
    scores = [class_correlation_sum(jacobians[mask], k) / int(mask.sum()) for mask in groups if int(mask.sum()) > 1]
    if not scores:
        return 0.0
    return sum(abs(s - t) for s in scores for t in scores) / len(scores)


def epe_nas(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """EPE-NAS: the per-label correlations of the input gradients of the summed logits (NaN when the logits ignore
    the input, as the reference's caught exception)."""
    jacobians, num_classes = input_jacobian(net, x)
    return math.nan if jacobians is None else epe_nas_score(jacobians, y, num_classes)
