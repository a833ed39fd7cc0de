"""Zero-cost proxies: a score of an untrained network from one batch of data (higher = predicted more accurate).

The 13 proxies of NASLib (naslib/predictors/utils/pruners/measures/*.py and predictive.py find_measures; the ZC
proxies of Krishnakumar et al., "NAS-Bench-Suite-Zero", NeurIPS 2022 Datasets and Benchmarks), by family:

- ``saliency.py``: synflow, grad_norm, snip, plain, grasp, fisher (Abdelfattah et al., ICLR 2021, official code
  mohsaied/zero-cost-nas);
- ``jacobian.py``: jacov (Mellor et al., arXiv 2006.04647v1), epe_nas (Lopes et al., ICANN 2021);
- ``activation.py``: naswot (Mellor et al., ICML 2021; NASLib's ``nwot``), zen (Lin et al., ICCV 2021);
- ``size.py``: l2_norm, flops, params.

Each proxy is a pure function of ``(net, x, y)``: the proxies that run the network score a copy of it (training mode,
BN on batch statistics, as the references score freshly built networks; flops and params an eval-mode copy), so the
network passed in is never changed.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn

from darts.evaluators.proxies.activation import hamming_kernel, naswot, naswot_score, zen
from darts.evaluators.proxies.jacobian import JACOV_K, epe_nas, epe_nas_score, jacov, jacov_score
from darts.evaluators.proxies.saliency import fisher, grad_norm, grasp, loss_gradients, plain, snip, synflow
from darts.evaluators.proxies.size import flops, l2_norm, params

Proxy = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]

PROXIES: dict[str, Proxy] = {"synflow": synflow, "grad_norm": grad_norm, "snip": snip, "jacov": jacov,
                             "naswot": naswot, "fisher": fisher, "grasp": grasp, "plain": plain, "epe_nas": epe_nas,
                             "zen": zen, "l2_norm": l2_norm, "flops": flops, "params": params}


def as_score(value: float) -> float:
    """A proxy value as a score to maximise: an undefined value (NaN: the jacov or epe_nas of a network whose output
    ignores its input) ranks below every other, as -inf (naswot's log|K_H| of a singular kernel already is)."""
    return -math.inf if math.isnan(value) else value


def get_proxy(name: str) -> Proxy:
    """The proxy called ``name``; ValueError naming the valid ones otherwise."""
    if name not in PROXIES:
        raise ValueError(f"proxy={name!r} is not a zero-cost proxy; choose one of {', '.join(PROXIES)}")
    return PROXIES[name]


__all__ = ["JACOV_K", "PROXIES", "Proxy", "as_score", "epe_nas", "epe_nas_score", "fisher", "flops", "get_proxy",
           "grad_norm", "grasp", "hamming_kernel", "jacov", "jacov_score", "l2_norm", "loss_gradients", "naswot",
           "naswot_score", "params", "plain", "snip", "synflow", "zen"]
