"""SDARTS: the random and adversarial perturbations of the weight step, the epsilon schedule, the composition with
DARTS and PC-DARTS, and end-to-end searches."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import read_json, started
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.pcdarts import PCDARTS
from darts.strategies.gradient.sdarts import PCSDARTS, SDARTS, project
from darts.supernet import Mixing
from darts.strategies.bilevel import search_epoch
from search_spaces.darts import DartsSpace

CPU = torch.device("cpu")




def setup(cls=SDARTS, partial_channels: int = 1, **kwargs):
    """A 3-cell DARTS supernet (4 channels per partial-channel group), the strategy, SGD and two fixed batches."""
    torch.manual_seed(0)
    if issubclass(cls, PCDARTS):
        kwargs["partial_channels"] = partial_channels
    space = DartsSpace(init_channels=4 * partial_channels, layers=3)
    supernet = space.build_supernet(num_classes=10, options=cls.supernet_options(**kwargs))
    strategy = cls(supernet, space, **kwargs)
    opt = torch.optim.SGD(supernet.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    g = torch.Generator().manual_seed(1)
    train = (torch.randn(8, 3, 8, 8, generator=g), torch.randint(10, (8,), generator=g))
    valid = (torch.randn(8, 3, 8, 8, generator=g), torch.randint(10, (8,), generator=g))
    return supernet, strategy, opt, train, valid


def eval_loss(supernet, mixing: dict[str, Mixing], batch) -> float:
    """Cross-entropy of the supernet in eval mode (the attack's objective) under the given mixing."""
    supernet.eval()
    with torch.no_grad():
        loss = float(F.cross_entropy(supernet(batch[0], mixing), batch[1]))
    supernet.train()
    return loss


def test_random_perturbation_is_uniform_in_the_epsilon_ball_and_fresh_each_step():
    """SDARTS-RS draws delta in [-eps, eps] from torch's global generator, not all zero and new at each step; the
    weight step sees project(softmax(alpha) + delta), which lies on the simplex."""
    supernet, strategy, _, train, _ = setup(attack="random")
    strategy.epoch_start(49, 50)
    eps = strategy.current_epsilon
    mixing = strategy.mixing()
    first, second = strategy.random_perturbation(mixing, train), strategy.random_perturbation(mixing, train)
    for t in supernet.cell_types:
        assert first[t].shape == mixing[t].weights.shape
        assert first[t].abs().max() <= eps and first[t].abs().max() > 0.9 * eps
        assert not torch.equal(first[t], second[t])
    torch.manual_seed(5)
    weights = strategy.weight_mixing(train)
    torch.manual_seed(5)
    delta = strategy.random_perturbation(mixing, train)
    for t in supernet.cell_types:
        expected = project(F.softmax(supernet.alphas[t], dim=-1).detach() + delta[t])
        assert torch.equal(weights[t].weights, expected)
        assert (weights[t].weights >= 0).all()
        torch.testing.assert_close(weights[t].weights.sum(-1), torch.ones(supernet.num_edges))


def test_projection_is_the_official_clip():
    """project clamps to [0, 1], renormalises each edge, and turns an edge clamped to all zeros into its argmax."""
    w = torch.tensor([[0.5, -0.2, 0.7], [-0.1, -0.3, -0.2], [1.4, 0.2, 0.2]])
    expected = torch.tensor([[0.5 / 1.2, 0.0, 0.7 / 1.2], [1.0, 0.0, 0.0], [1 / 1.4, 0.2 / 1.4, 0.2 / 1.4]])
    torch.testing.assert_close(project(w), expected)


@pytest.mark.parametrize("cls, attack", [(SDARTS, "random"), (SDARTS, "adversarial"), (PCSDARTS, "adversarial")])
def test_arch_parameters_are_bitwise_unchanged_by_the_weight_mixing(cls, attack):
    """Building the perturbed weight-step mixing leaves every arch parameter (alphas, PC-DARTS's betas) bitwise as
    it was, and the BN running statistics too (the attack runs in eval mode); it keeps the supernet in training mode
    and perturbs the op weights but not PC-DARTS's edge weights."""
    supernet, strategy, _, train, _ = setup(cls, partial_channels=2 if cls is PCSDARTS else 1, attack=attack)
    strategy.epoch_start(49, 50)
    before = [p.detach().clone() for p in strategy.arch_parameters()]
    buffers = [b.clone() for b in supernet.buffers()]
    mixing = strategy.weight_mixing(train)
    assert all(torch.equal(p, q) for p, q in zip(strategy.arch_parameters(), before))
    assert all(torch.equal(b, c) for b, c in zip(supernet.buffers(), buffers))
    assert supernet.training
    clean = strategy.mixing()
    for t in supernet.cell_types:
        assert not torch.allclose(mixing[t].weights, clean[t].weights)
        if cls is PCSDARTS:
            assert torch.equal(mixing[t].edge_weights, clean[t].edge_weights.detach())


def test_adversarial_perturbation_raises_the_training_loss_within_the_ball():
    """SDARTS-ADV's delta lies in [-eps, eps] and raises the training loss (fixed supernet, fixed batch) above the
    unperturbed loss and above every one of five uniform draws of the same radius."""
    supernet, strategy, _, train, _ = setup(attack="adversarial")
    strategy.epoch_start(49, 50)
    eps = strategy.current_epsilon
    mixing = strategy.mixing()
    clean = {t: m.weights.detach() for t, m in mixing.items()}
    delta = strategy.adversarial_perturbation(mixing, train)
    assert supernet.training
    assert all(d.abs().max() <= eps + 1e-7 and d.abs().max() > 0 for d in delta.values())

    def loss(d):
        return eval_loss(supernet, {t: Mixing(project(clean[t] + d[t])) for t in clean}, train)

    attacked = loss(delta)
    assert attacked > loss({t: torch.zeros_like(w) for t, w in clean.items()})
    assert all(attacked > loss(strategy.random_perturbation(mixing, train)) for _ in range(5))


def test_adversarial_perturbation_is_dropped_when_it_does_not_raise_the_loss(monkeypatch):
    """As perturb.py, an attack whose final loss is below the unperturbed one (here the latter is inflated) gives
    delta = 0, so the weight step sees the unperturbed op weights."""
    _, strategy, _, train, _ = setup(attack="adversarial")
    strategy.epoch_start(49, 50)
    losses, attack_loss = [], strategy._attack_loss

    def inflated_first(*args):
        losses.append(attack_loss(*args) + (1e3 if not losses else 0.0))
        return losses[-1]

    monkeypatch.setattr(strategy, "_attack_loss", inflated_first)
    delta = strategy.adversarial_perturbation(strategy.mixing(), train)
    assert len(losses) == strategy.pgd_steps + 2
    assert all(torch.equal(d, torch.zeros_like(d)) for d in delta.values())


def test_epsilon_schedule_gives_the_official_values():
    """eps = 0.03 + (0.3 - 0.03) * epoch / epochs (train_search.py): 0.03 at the first epoch, 0.2946 at the last of
    50, and it is the logged ``epsilon`` scalar."""
    _, strategy, _, _, _ = setup()
    assert strategy.current_epsilon == pytest.approx(0.03)
    strategy.epoch_start(0, 50)
    assert strategy.current_epsilon == pytest.approx(0.03) and strategy.scalars()["epsilon"] == pytest.approx(0.03)
    strategy.epoch_start(49, 50)
    assert strategy.current_epsilon == pytest.approx(0.03 + 0.27 * 49 / 50)
    assert strategy.scalars()["epsilon"] == pytest.approx(0.2946)


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["random", "adversarial"])
def test_epsilon_zero_weight_step_is_darts(attack):
    """With epsilon 0 a search step (arch step, then weight step) gives DARTS's weights; with the default epsilon it
    does not (so the comparison can tell)."""
    def step(cls, **kwargs):
        supernet, strategy, opt, train, valid = setup(cls, **kwargs)
        strategy.epoch_start(49, 50)
        search_epoch(supernet, strategy, [train], [valid], opt, 5.0, 1)
        return [p.detach().clone() for p in supernet.weight_parameters()]

    darts = step(DARTS)
    for p, q in zip(step(SDARTS, attack=attack, epsilon=0.0, epsilon_start=0.0), darts):
        torch.testing.assert_close(p, q)
    assert any(not torch.allclose(p, q) for p, q in zip(step(SDARTS, attack=attack), darts))


@pytest.mark.parametrize("kwargs, name", [({"attack": "pgd_linf"}, "attack"), ({"epsilon": -0.1}, "epsilon"),
                                          ({"pgd_steps": 0}, "pgd_steps")])
def test_bad_arguments_are_refused(kwargs, name):
    """An unknown attack, a negative radius or no PGD step raises ValueError naming the bad argument."""
    with pytest.raises(ValueError, match=name):
        setup(**kwargs)


DARTS_SIZE = ["model.layers=3", "model.init_channels=4"]
RUNS = {"sdarts-random": ["strategy=sdarts", *DARTS_SIZE],
        "sdarts-adversarial": ["strategy=sdarts", "strategy.attack=adversarial", *DARTS_SIZE],
        "sdarts_pcdarts": ["strategy=sdarts_pcdarts", "strategy.arch_start_epoch=0", "strategy.partial_channels=2",
                           *DARTS_SIZE],
        "sdarts-nb201": ["strategy=sdarts", "strategy.attack=adversarial", "search_space=nb201",
                         "model.init_channels=4", "model.cells_per_stage=1"]}


@pytest.fixture(scope="module")
def runs(cifar_mini, nb201_csv, tmp_path_factory):
    """The end-to-end searches (DARTS space; NB201 with its table), one after another in this process."""
    procs = {}
    for name, overrides in RUNS.items():
        run_dir = tmp_path_factory.mktemp(name)
        procs[name] = (run_dir, started(
            "train_search.py", f"hydra.run.dir={run_dir}", "progress=false", *overrides, "dataset=imagefolder",
            f"dataset.root={cifar_mini}", "epochs=2", "steps_per_epoch=1", "batch_size=8", "device=cpu",
            *([f"benchmark.path={nb201_csv}"] if "search_space=nb201" in overrides else [])))
    yield procs
    for _, proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("name", sorted(RUNS))
def test_search_runs_end_to_end_and_logs_epsilon(runs, name):
    """train_search.py runs SDARTS-RS, SDARTS-ADV and SDARTS on PC-DARTS on real images for 2 epochs (SDARTS-ADV also
    in NB201, the table scoring every epoch), writes its result and logs arch/epsilon = 0.03 then 0.03 + 0.27 / 2."""
    run_dir, proc = runs[name]
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-4000:]
    result = read_json(run_dir / "result.json")
    assert result["epochs"] == 2 and result["genotype"]
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    epsilon = [e.value for e in sorted(acc.Scalars("arch/epsilon"), key=lambda e: e.step)]
    assert epsilon == pytest.approx([0.03, 0.03 + 0.27 / 2])
    if "search_space=nb201" in RUNS[name]:
        records = [json.loads(line) for line in (run_dir / "genotypes.jsonl").read_text().splitlines()]
        assert [r["benchmark"]["cifar10_test_200ep"] > 0 for r in records] == [True, True]
