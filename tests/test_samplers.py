"""SNAS's Gumbel-softmax sample and temperature schedule, ReinMax's second-order straight-through gradient: value and
gradient on fixed inputs in float64, the expected values re-derived here from the papers' formulas."""
from __future__ import annotations

import pytest
import torch

from darts.context import Context
from darts.strategies.gradient.gdas import gumbel_softmax
from darts.strategies.gradient.reinmax import ReinMax, ReinMaxSample, heun_gradient, reinmax_hard
from darts.strategies.gradient.snas import SNAS
from search_spaces.nb201 import NB201Space

pytestmark = pytest.mark.usefixtures("one_thread")


def setup(cls: type, **kwargs):
    """A tiny NB201 supernet (one cell per stage, 4 channels) and the strategy, seeded."""
    torch.manual_seed(0)
    space = NB201Space(init_channels=4, cells_per_stage=1)
    supernet = space.build_supernet(num_classes=10, context=Context(), options=cls.supernet_options(**kwargs))
    return supernet, cls(supernet, space, **kwargs)


def batch(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 8x8 images (n, 3, 8, 8) and labels (n,)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(10, (n,), generator=g)


# ---------------------------------------------------------------- SNAS

def test_snas_sample_is_the_concrete_relaxation_value_and_gradient():
    """Z = softmax((alpha + G) / tau) (SNAS eq. 2-5, on the raw alphas as model_search.py ``_get_categ_mask``):
    value and d(sum c * Z)/d alpha equal the formula's, written out here with exp and sums, in float64."""
    g = torch.Generator().manual_seed(0)
    alphas = torch.randn(3, 5, dtype=torch.float64, generator=g).requires_grad_(True)
    gumbels = -torch.log(-torch.log(torch.rand(3, 5, dtype=torch.float64, generator=g)))
    c = torch.randn(3, 5, dtype=torch.float64, generator=g)
    tau = 0.7
    z = gumbel_softmax(alphas, tau, gumbels)
    (grad,) = torch.autograd.grad((c * z).sum(), alphas)

    e = torch.exp((alphas.detach() + gumbels) / tau)
    expected = e / e.sum(-1, keepdim=True)  # [3, 5]
    # dZ_k/d alpha_j = Z_k (delta_kj - Z_j) / tau  =>  d(c . Z)/d alpha_j = Z_j (c_j - c . Z) / tau
    expected_grad = expected * (c - (c * expected).sum(-1, keepdim=True)) / tau
    torch.testing.assert_close(z.detach(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_snas_temperature_anneals_as_temp_scheduler():
    """tau_e = tau_min + (tau_init - tau_min) (1 - (e + 1) / T), stepped before epoch e (utils.py Temp_Scheduler);
    README --temp 1 --temp_min 0.03 over 150 epochs: 0.03 + 0.97 * 149/150 at epoch 0, 0.03 at the last."""
    _, strategy = setup(SNAS)
    taus = []
    for epoch in (0, 1, 74, 149):
        strategy.epoch_start(epoch, 150)
        taus.append(strategy.tau)
    assert taus == pytest.approx([0.03 + 0.97 * 149 / 150, 0.03 + 0.97 * 148 / 150, 0.03 + 0.97 * 75 / 150, 0.03])
    _, fixed = setup(SNAS, anneal=False)
    fixed.epoch_start(10, 150)
    assert fixed.tau == 1.0


def test_snas_weight_step_trains_the_arch_steps_sample():
    """Single level: the arch step moves the alphas on the training batch, and the weight step reuses its sample."""
    supernet, strategy = setup(SNAS)
    before = [a.detach().clone() for a in strategy.arch_parameters()]
    opt = torch.optim.SGD(supernet.weight_parameters(), lr=0.1)
    strategy.arch_step(batch(), batch(3), opt)
    assert all(not torch.equal(b, a) for b, a in zip(before, strategy.arch_parameters()))
    drawn = strategy._drawn
    mixing = strategy.weight_mixing(batch())
    assert all(torch.equal(mixing[t].weights, drawn[t].weights) for t in drawn)
    assert all(torch.allclose(m.weights.sum(-1), torch.ones(())) for m in mixing.values())
    assert not torch.equal(strategy.weight_mixing(batch())["cell"].weights, mixing["cell"].weights)  # fresh again


def test_snas_rejects_bad_settings():
    """Temperatures and the arch optimizer are validated with the valid choices."""
    with pytest.raises(ValueError, match="tau_min"):
        setup(SNAS, tau_init=0.01, tau_min=0.03)
    with pytest.raises(ValueError, match="sgd"):
        setup(SNAS, arch_optimizer="rmsprop")


# ---------------------------------------------------------------- ReinMax

def jacobian(p: torch.Tensor) -> torch.Tensor:
    """The softmax Jacobian diag(p) - p p^T per row of p [E, K] -> [E, K, K]."""
    return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]


def test_reinmax_gradient_is_heuns_second_order_estimate():
    """ReinMax (Liu et al., 2023, Algorithm 2): with D the one-hot sample, pi_0 = softmax(alpha) and
    pi_1 = (softmax(alpha / tau) + D) / 2, grad_alpha = 2 J(pi_1) g - J(pi_0) g / 2, J(p) = diag(p) - p p^T, for the
    loss gradient g at D; the forward value is D. Expected values from explicit K x K Jacobians, float64."""
    g = torch.Generator().manual_seed(2)
    alphas = torch.randn(4, 5, dtype=torch.float64, generator=g).requires_grad_(True)
    sample = torch.zeros(4, 5, dtype=torch.float64).scatter_(-1, torch.tensor([[0], [3], [4], [1]]), 1.0)
    c = torch.randn(4, 5, dtype=torch.float64, generator=g)
    tau = 2.5
    out = ReinMaxSample.apply(alphas, sample, tau)
    (grad,) = torch.autograd.grad((c * out).sum(), alphas)

    a = alphas.detach()
    pi_0 = torch.exp(a) / torch.exp(a).sum(-1, keepdim=True)
    pi_1 = (torch.exp(a / tau) / torch.exp(a / tau).sum(-1, keepdim=True) + sample) / 2
    expected = 2 * (jacobian(pi_1) @ c[:, :, None])[..., 0] - 0.5 * (jacobian(pi_0) @ c[:, :, None])[..., 0]
    torch.testing.assert_close(out.detach(), sample, rtol=0, atol=0)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(heun_gradient(a, sample, tau, c), expected, rtol=1e-12, atol=1e-12)


def test_reinmax_sample_is_one_hot_drawn_from_softmax_alpha():
    """The forward is a one-hot per edge at the index it returns, drawn with the law softmax(alpha) (the official
    torch.multinomial): over 4000 draws of a 3-op edge, the frequencies are within 0.03 of the probabilities."""
    torch.manual_seed(3)
    alphas = torch.tensor([[1.0, 0.0, -1.0]]).repeat(4000, 1).requires_grad_(True)  # 4000 edges, one draw each
    hard, index, bad = reinmax_hard(alphas, 1.0)
    assert not bad and torch.equal(hard.detach(), torch.nn.functional.one_hot(index, 3).float())
    frequencies = torch.bincount(index, minlength=3) / 4000
    torch.testing.assert_close(frequencies, torch.softmax(alphas.detach(), -1)[0], rtol=0, atol=0.03)


def test_reinmax_strategy_samples_one_op_per_edge_and_moves_the_alphas():
    """ReinMax's strategy: one op per edge, and an arch step moves every cell type's alphas."""
    supernet, strategy = setup(ReinMax)
    mixing = strategy.mixing()["cell"]
    assert all(mixing.weights[e, k] == 1 for e, k in enumerate(mixing.index))
    before = [a.detach().clone() for a in strategy.arch_parameters()]
    strategy.arch_step(batch(), batch(3), torch.optim.SGD(supernet.weight_parameters(), lr=0.1))
    assert all(not torch.equal(b, a) for b, a in zip(before, strategy.arch_parameters()))
