"""The NASLib proxies (fisher, grasp, plain, epe_nas, zen, l2_norm, flops, params; darts/evaluators/proxies/) equal
their NASLib definitions (naslib/predictors/utils/pruners/measures/*.py, predictive.py find_measures, tensorwatch's
torchstat rules) on tiny networks, the expected values re-derived here by hand or with a few lines of independent
float64 autograd."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.evaluators.proxies import epe_nas, epe_nas_score, fisher, flops, grasp, l2_norm, params, plain, zen
from darts.evaluators.proxies.jacobian import EPE_K



def two_layer_net() -> nn.Sequential:
    """x [3] -> W2 relu(W1 x) [4] without biases, float64, seeded weights."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False)).double()


def test_plain_and_grasp_equal_the_gradient_and_hessian_formulas():
    """measures/plain.py: sum theta * g; measures/grasp.py: -sum theta * (H g), H the full Hessian of the mean
    cross-entropy over both layers' weights (cross-layer terms included), here from autograd.functional.hessian."""
    net = two_layer_net()
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1, 0])
    theta = torch.cat([net[0].weight.detach().flatten(), net[2].weight.detach().flatten()])  # [35]

    def loss(v: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(F.relu(x @ v[:15].view(5, 3).T) @ v[15:].view(4, 5).T, y)

    g = torch.autograd.functional.jacobian(loss, theta)  # [35]
    h = torch.autograd.functional.hessian(loss, theta)  # [35, 35]
    assert plain(net, x, y) == pytest.approx(float(theta @ g), rel=1e-10)
    assert grasp(net, x, y) == pytest.approx(float(-(theta @ (h @ g))), rel=1e-10)


def test_fisher_is_the_channel_sum_of_activation_times_gradient_squared_times_fan_in():
    """measures/fisher.py: F_k = 1/2 mean_n (sum_hw a_nk dL/da_nk)^2 per output channel of each Conv2d/Linear (a the
    layer's output), |F_k| broadcast over the channel's weight.shape[1:] and summed; re-derived with autograd on a
    functional copy of conv -> ReLU -> global pool -> linear."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(3, 4)).double()
    x, y = torch.randn(5, 2, 4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1])
    conv, linear = net[0], net[4]
    a = F.conv2d(x, conv.weight, conv.bias, padding=1)  # (5, 3, 4, 4)
    z = F.linear(F.relu(a).mean(dim=(2, 3)), linear.weight, linear.bias)  # (5, 4)
    grad_a, grad_z = torch.autograd.grad(F.cross_entropy(z, y), (a, z))
    conv_fisher = 0.5 * ((a * grad_a).sum(dim=(2, 3)) ** 2).mean(0)  # [3]
    linear_fisher = 0.5 * ((z * grad_z) ** 2).mean(0)  # [4]
    expected = conv_fisher.abs().sum() * (2 * 3 * 3) + linear_fisher.abs().sum() * 3
    assert fisher(net, x, y) == pytest.approx(float(expected.detach()), rel=1e-10)


def test_epe_nas_score_by_hand_below_and_above_100_classes():
    """epe_nas.py eval_score_perclass: s_c = sum log(|corr| + k) per label. Label 0's rows are uncorrelated
    (corr = I), label 1's identical (corr = all ones), label 2 has one image (its corrcoef is 1). With <= 100
    classes the score is sum |s_c|; above, s_c / n_c compared pairwise over the labels with two or more images
    (a one-image label raises in the reference and is skipped), divided by their number."""
    k = EPE_K
    jacobians = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0], [1.0, 2.0, 3.0, 4.0],
                              [1.0, 2.0, 3.0, 4.0], [5.0, 1.0, 2.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    s0, s1, s2 = 2 * math.log(1 + k) + 2 * math.log(k), 4 * math.log(1 + k), math.log(1 + k)
    assert epe_nas_score(jacobians, labels, 10) == pytest.approx(abs(s0) + abs(s1) + abs(s2), rel=1e-12)
    assert epe_nas_score(jacobians, labels, 120) == pytest.approx(2 * abs(s0 / 2 - s1 / 2) / 2, rel=1e-12)
    constant = jacobians.clone()
    constant[0] = 3.0
    assert math.isnan(epe_nas_score(constant, labels, 10))


def test_epe_nas_of_a_linear_classifier_has_identical_jacobian_rows():
    """x -> W x: every image's input gradient of the summed logits is W^T 1, so each label's correlations are all 1:
    labels (0, 0, 1) score |4 log(1 + k)| + |log(1 + k)|."""
    x, y = torch.randn(3, 4), torch.tensor([0, 0, 1])
    assert epe_nas(nn.Linear(4, 3), x, y) == pytest.approx(5 * math.log(1 + EPE_K), rel=1e-6)


def zen_net(track_running_stats: bool = True) -> nn.Sequential:
    """1x1 conv (1 -> 1 channel) -> BN -> global average pool -> linear (1 -> 2)."""
    return nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1, track_running_stats=track_running_stats),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))


def test_zen_equals_its_formula_on_a_one_channel_network():
    """zen.py: weights ~ N(0, 1) (drawn first, in module order), then x and e ~ N(0, 1); f = BN(w x) in training mode
    before the global pool; score = log mean_n ||f(x) - f(x + 0.01 e)||_1 + log sqrt(running_var) after both passes
    (momentum 0.1 from 1: 0.9 (0.9 + 0.1 v1) + 0.1 v2, v the unbiased batch variances). Independent of the
    network's own weights and of the batch's values."""
    batch = torch.zeros(4, 1, 3, 3)
    generator = torch.Generator().manual_seed(0)
    w = torch.randn((1, 1, 1, 1), generator=generator).double().item()
    torch.randn((2, 1), generator=generator)  # the linear layer's weight
    inputs = torch.randn(batch.shape, generator=generator).double()
    mixed = inputs + 0.01 * torch.randn(batch.shape, generator=generator).double()

    def bn(u: torch.Tensor) -> torch.Tensor:
        return (u - u.mean()) / torch.sqrt(u.var(unbiased=False) + 1e-5)

    distance = (bn(w * inputs) - bn(w * mixed)).abs().sum(dim=(1, 2, 3)).mean()
    running_var = 0.9 * (0.9 + 0.1 * (w * inputs).var()) + 0.1 * (w * mixed).var()
    expected = float(torch.log(distance) + torch.log(torch.sqrt(running_var)))
    torch.manual_seed(3)
    assert zen(zen_net(), batch, torch.zeros(4)) == pytest.approx(expected, rel=1e-5)
    torch.manual_seed(4)
    assert zen(zen_net(), torch.randn(4, 1, 3, 3), torch.zeros(4)) == pytest.approx(expected, rel=1e-5)


def test_zen_refuses_a_network_without_pool_or_running_statistics():
    """zen needs one global average pool (NASLib's forward_before_global_avg_pool) and BN running variances."""
    with pytest.raises(ValueError, match="global average pool"):
        zen(nn.Sequential(nn.Conv2d(1, 1, 1), nn.Flatten()), torch.zeros(2, 1, 2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"proxy=zen .* 1 has track_running_stats=False"):
        zen(zen_net(track_running_stats=False), torch.zeros(2, 1, 2, 2), torch.zeros(2))


class Counted(nn.Module):
    """conv 3x3 (3 -> 4, bias) -> BN -> ReLU, the ReLU called twice; 2x2 average pool; global pool; linear (4 -> 10);
    a linear layer ``spare`` that never runs."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.pool, self.gap, self.fc, self.spare = nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Linear(4, 10), nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.relu(self.bn(self.conv(x))))  # (B, 4, 8, 8)
        return self.fc(self.gap(self.pool(h)).flatten(1))


def test_flops_and_params_follow_tensorwatch_per_leaf_rules():
    """tensorwatch ModelStats on one 3x8x8 image (predictive.py find_measures, in millions): conv 3*3*3*4*64 + bias
    4*64 = 7168, BN 2*256 = 512, ReLU 256 (its last call only), AvgPool2d(2) 4*4*4*2*2 = 256, AdaptiveAvgPool2d over
    4x4 -> 1x1: 4 (4 + 1)(4 + 1) = 100, linear 4*10 = 40: 8332 FLOPs; parameters 112 + 8 + 50 = 170 (the unused
    ``spare`` is not counted)."""
    x = torch.randn(2, 3, 8, 8)
    assert flops(Counted(), x, torch.zeros(2)) == pytest.approx(8332e-6, rel=1e-12)
    assert params(Counted(), x, torch.zeros(2)) == pytest.approx(170e-6, rel=1e-12)


def test_l2_norm_sums_the_weight_norms_of_every_conv_and_linear():
    """measures/l2_norm.py: sum of ||W||_F over Conv2d/Linear layers, run or not: 0.5 sqrt(108) + sqrt(40) + 2 * 5."""
    net = Counted()
    with torch.no_grad():
        net.conv.weight.fill_(0.5)
        net.fc.weight.fill_(1.0)
        net.spare.weight.fill_(2.0)
    expected = 0.5 * math.sqrt(108) + math.sqrt(40) + 10
    assert l2_norm(net, torch.zeros(1, 3, 8, 8), torch.zeros(1)) == pytest.approx(expected, rel=1e-6)
