"""Lambda-DARTS's layer alignment and its weight-gradient term; OLES's gradient-matching score and freezing rule: value
and gradient on fixed inputs in float64, the expected values re-derived here (by hand or by independent autograd)."""
from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from darts.context import Context
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.lambda_darts import LambdaDARTS, alignment, alignment_gradient
from darts.strategies.gradient.oles import OLES, gm_scores
from search_spaces.nb201 import NB201Space

pytestmark = pytest.mark.usefixtures("one_thread")


def setup(cls: type, dtype: torch.dtype = torch.float32, **kwargs):
    """A tiny NB201 supernet (three search cells of one type, 4 channels) in ``dtype`` and the strategy, seeded."""
    torch.manual_seed(0)
    space = NB201Space(init_channels=4, cells_per_stage=1)
    supernet = space.build_supernet(num_classes=10, context=Context(), options=cls.supernet_options()).to(dtype)
    return supernet, cls(supernet, space, **kwargs)


def batch(n: int = 4, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 8x8 images (n, 3, 8, 8) and labels (n,)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g).to(dtype), torch.randint(10, (n,), generator=g)


# ---------------------------------------------------------------- Lambda-DARTS

def test_layer_alignment_and_its_gradient():
    """R = 2 / (L (L - 1)) sum_{i<j} cos(g_i, g_j) (Lambda-DARTS sec. 4) summed pair by pair here, and p_l = dR/dg_l
    against float64 autograd of that sum."""
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(6, 5, dtype=torch.float64, generator=g).requires_grad_(True) for _ in range(3)]
    pairs = list(itertools.combinations(grads, 2))
    expected = sum(F.cosine_similarity(a.flatten(), b.flatten(), dim=0) for a, b in pairs) / len(pairs)
    torch.testing.assert_close(alignment(grads), expected, rtol=1e-12, atol=1e-12)
    autograd = torch.autograd.grad(expected, grads)
    for p, e in zip(alignment_gradient([g.detach() for g in grads]), autograd):
        torch.testing.assert_close(p, e, rtol=1e-10, atol=1e-12)


def test_lambda_darts_weight_gradient_is_cross_entropy_minus_lambda_grad_alignment():
    """The weight loss's value is the cross-entropy, its gradient grad_w L - lambda_t grad_w R (the official update:
    (f - b) / (2 eps) added to the weights' gradient), with grad_w R from exact float64 double backward through the
    three cells' gradients g_l = dL/dA_l; central differences with eps_0 = 1e-6 agree to 1e-5 relative."""
    supernet, strategy = setup(LambdaDARTS, torch.float64, reg_lambda=0.5, epsilon_0=1e-6)
    strategy.epoch_start(9, 10)  # lambda_t = 0.5 * 9 / 9
    x, y = batch(dtype=torch.float64)
    logits = supernet(x, strategy.weight_mixing((x, y)))
    loss = strategy.weight_loss(logits, y)
    weights = [p for p in supernet.weight_parameters()]
    got = torch.autograd.grad(loss, weights, allow_unused=True)

    copies = [c for _, c in strategy._cells]
    assert len(copies) == 3
    ce = F.cross_entropy(supernet(x, {t: m for t, m in strategy._mixing.items()}), y)
    torch.testing.assert_close(loss.detach(), ce.detach(), rtol=1e-12, atol=0)
    # independent: each cell mixing through its own leaf copy of softmax(alpha), R by autograd of the pair sum
    leaves = []

    def own(m):
        leaves.append(m.weights.detach().clone().requires_grad_(True))
        return type(m)(weights=leaves[-1])

    mixing = {t: replace(m, per_cell=own) for t, m in strategy._mixing.items()}
    ce = F.cross_entropy(supernet(x, mixing), y)
    layer = torch.autograd.grad(ce, leaves, create_graph=True)
    pairs = list(itertools.combinations(layer, 2))
    R = sum(F.cosine_similarity(a.flatten(), b.flatten(), dim=0) for a, b in pairs) / len(pairs)
    grad_ce = torch.autograd.grad(ce, weights, retain_graph=True, allow_unused=True)
    grad_R = torch.autograd.grad(R, weights, allow_unused=True)

    def flat(grads):
        return torch.cat([torch.zeros_like(w).flatten() if g is None else g.flatten() for w, g in zip(weights, grads)])

    term = flat(got) - flat(grad_ce)  # the regulariser's part of the weight gradient
    expected = -0.5 * flat(grad_R)
    assert torch.linalg.norm(expected) > 1e-3 * torch.linalg.norm(flat(grad_ce))  # the term is not negligible
    assert torch.linalg.norm(term - expected) <= 1e-5 * torch.linalg.norm(expected)
    assert strategy.correlation == pytest.approx(float(R.detach()), rel=1e-9)


def test_lambda_darts_schedule_and_validation():
    """lambda_t = lambda * epoch / (epochs - 1) (train_search.py); unknown cell types are one clear error."""
    _, strategy = setup(LambdaDARTS)
    strategy.epoch_start(0, 50)
    assert strategy.strength == 0
    strategy.epoch_start(49, 50)
    assert strategy.strength == pytest.approx(0.125)
    with pytest.raises(ValueError, match="cell_types"):
        setup(LambdaDARTS, cell_types=["normal"])


# ---------------------------------------------------------------- OLES

def test_gm_score_is_the_mean_first_axis_cosine():
    """GM = mean over the other axes of cos_dim0(g_tr + g_val, g_tr) (train_search.py check_grads_cosine), written
    out column by column as dot / (norm * norm), float64."""
    g = torch.Generator().manual_seed(0)
    train = [torch.randn(3, 2, 2, dtype=torch.float64, generator=g) for _ in range(2)]
    valid = [torch.randn(3, 2, 2, dtype=torch.float64, generator=g) for _ in range(2)]
    expected = []
    for t, v in zip(train, valid):
        s, cols = t + v, []
        for i, j in itertools.product(range(2), range(2)):
            a, b = s[:, i, j], t[:, i, j]
            cols.append(float((a * b).sum() / (a.norm() * b.norm())))
        expected.append(sum(cols) / len(cols))
    torch.testing.assert_close(gm_scores(train, valid), torch.tensor(expected, dtype=torch.float64), rtol=1e-12,
                               atol=1e-12)


def test_oles_freezes_an_op_whose_window_averages_below_the_threshold():
    """With frequency 2, the third scored step closes the window (the official counter: m.count == 2), whose sum is
    divided by 2: an op scoring cos = -1 (g_val = -2 g_tr) is frozen, one scoring 1 (g_val = 0) trains on."""
    supernet, _ = setup(DARTS)
    oles = OLES(supernet, threshold=0.4, frequency=2)
    bad = oles.names[0]
    for step in range(3):
        assert not oles.frozen
        watched = oles.watch()
        owner = {id(p): name for name, params in oles._ops().items() for p in params}
        valid = []
        for p in watched:
            p.grad = torch.ones_like(p)
            valid.append(-2 * p.grad if owner[id(p)] == bad else torch.zeros_like(p))
        oles.update(valid)
    assert oles.frozen == {bad}
    assert all(not p.requires_grad for p in oles._ops()[bad])
    assert all(p.requires_grad for p in oles._ops()[oles.names[1]])
    assert oles.scalars()["oles/frozen_ops"] == 1
    torch.testing.assert_close(oles.last[:2], torch.tensor([-1.5, 1.5]))  # three scores of -1 or 1, over 2


def test_oles_settings_are_validated():
    """A frequency below 1 is one clear error naming the key."""
    supernet, _ = setup(DARTS)
    with pytest.raises(ValueError, match="oles_frequency"):
        OLES(supernet, frequency=0)
