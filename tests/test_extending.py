"""The extension points: strategy hooks (arch penalty, weight mixing and loss), selections, ops' declared heads,
the execution context given at build time, and the toy space that the README's "Extending" section walks through."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import ROOT, SHARED_DATA as SHARED
from darts.data.datasets import fake
from darts.ops import head_split
from darts.runs.search import SearchRun
from darts.selections.base import Selection
from darts.context import Context
from darts.data.search_split import SearchData
from darts.strategies.gradient.darts import DARTS
from darts.mixed_op import MixedOp, SharedInput
from darts.strategies.bilevel import search_epoch
from search_spaces.darts import OPS as DARTS_OPS
from search_spaces.darts import DartsSpace, Genotype
from search_spaces.darts.ops import SEARCH_OPS
from search_spaces.nb201 import OPS as NB201_OPS
from search_spaces.toy import OPS as TOY_OPS
from search_spaces.toy import ToyGenotype, ToyNetwork, ToySpace

CPU = torch.device("cpu")


def batches(n: int = 4, size: int = 8) -> tuple[tuple, tuple]:
    """A fixed (train, valid) pair of random image batches (n, 3, size, size) with labels."""
    g = torch.Generator().manual_seed(1)
    make = lambda: (torch.randn(n, 3, size, size, generator=g), torch.randint(10, (n,), generator=g))  # noqa: E731
    return make(), make()


def setup(cls: type = DARTS, space=None, **kwargs):
    """A seeded tiny supernet, its strategy and the weight optimizer."""
    torch.manual_seed(0)
    space = space or DartsSpace(4, 3)
    supernet = space.build_supernet(10)
    strategy = cls(supernet, space, **kwargs)
    return supernet, strategy, torch.optim.SGD(supernet.weight_parameters(), 0.025, momentum=0.9)


class Penalised(DARTS):
    """DARTS with the arch penalty c * sum(alpha^2)."""

    c = 0.5

    def arch_penalty(self) -> torch.Tensor:
        return self.c * sum((a ** 2).sum() for a in self.arch_parameters())


@pytest.mark.parametrize("order", [1, 2])
def test_arch_penalty_adds_its_gradient_in_both_orders(order):
    """An arch penalty R(alpha) adds exactly grad R = 2 c alpha to the first- and the second-order arch gradient."""
    train, valid = batches()
    grads = {}
    for cls in (DARTS, Penalised):
        supernet, strategy, opt = setup(cls, order=order)
        alphas = [a.detach().clone() for a in strategy.arch_parameters()]
        strategy.arch_step(train, valid, opt)
        grads[cls] = [a.grad.clone() for a in strategy.arch_parameters()]
    for plain, penalised, alpha in zip(grads[DARTS], grads[Penalised], alphas):
        torch.testing.assert_close(penalised - plain, 2 * Penalised.c * alpha, rtol=1e-4, atol=1e-7)


class SkipOnlyWeightStep(DARTS):
    """A weight step that sees only skip connections and adds 1 to its loss."""

    def weight_mixing(self, train):
        skips = [("skip_connect", 0), ("skip_connect", 1)] * 4
        return self.space.one_hot(Genotype(skips, [2, 3, 4, 5], skips, [2, 3, 4, 5]))

    def weight_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y) + 1.0


def test_weight_mixing_and_weight_loss_are_what_the_weight_step_uses():
    """The weight step runs the strategy's weight_mixing (here skip connections only, so no other mixed op gets a
    gradient and none moves) and reports its weight_loss (cross-entropy + 1)."""
    train, valid = batches()
    supernet, strategy, opt = setup(SkipOnlyWeightStep)
    skip = f"._ops.{strategy.space.primitives.index('skip_connect')}."  # FactorizedReduce convs in reduction cells
    convs = {n: p.detach().clone() for n, p in supernet.named_parameters() if ".dag." in n and skip not in n}
    stem = supernet.stem[0].weight.detach().clone()
    metrics = search_epoch(supernet, strategy, [train], [valid], opt, 5.0, 1)
    assert all(torch.equal(p, convs[n]) for n, p in supernet.named_parameters() if n in convs)
    assert not torch.equal(supernet.stem[0].weight, stem)
    with torch.no_grad():
        ce = F.cross_entropy(supernet(train[0], strategy.weight_mixing(train)), train[1])
    assert metrics["loss"] > 1.0 and abs(metrics["loss"] - 1.0 - float(ce)) < 0.5


class Selecting(Selection):
    """A selection phase that records its context and then fixes the genotype."""

    name = "selecting"

    def select(self, strategy, space, context, record):
        self.phase, self.calls = context, getattr(self, "calls", 0) + 1
        self.chosen = space.sample(torch.Generator().manual_seed(3))
        return self.chosen


def test_selection_phase_runs_after_the_last_epoch_and_decides_the_result(tmp_path):
    """A selection runs once after the last epoch's checkpoint, with the supernet and both data halves, and the
    genotype it settles on is the one written to result.json and genotype.txt."""
    data = SearchData(lambda: fake(num_train=32, num_test=8, image_size=8), 0.5, 0)
    selection = Selecting()
    run = SearchRun(tmp_path, ToySpace(4), data, DARTS, Context(), epochs=2, batch_size=8, selection=selection)
    result = run.run()
    ctx = selection.phase
    assert ctx.supernet is run.supernet and ctx.steps == 2 and next(iter(ctx.valid_loader))[0].shape == (8, 3, 8, 8)
    assert selection.calls == 1 and result["genotype"] == ToySpace().to_text(selection.chosen)
    assert (tmp_path / "genotype.txt").read_text().strip() == result["genotype"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("table, C, stride", [(SEARCH_OPS, 4, 1), (SEARCH_OPS, 4, 2), (NB201_OPS, 4, 1),
                                              (TOY_OPS, 4, 1)], ids=["darts", "darts-stride2", "nb201", "toy"])
def test_declared_heads_compose_to_the_op(table, C, stride):
    """For every op that declares a head, tail(head(x)) equals the op (eval mode, so BN is deterministic)."""
    x = torch.randn(2, C, 6, 6)
    for name, make in table.items():
        op = make(C, stride, False).eval()
        split = head_split(op)
        if split is None:
            continue
        y = split.head(x)
        torch.testing.assert_close(y if split.tail is None else split.tail(y), op(x), msg=name)


class ResidualConv(nn.Module):
    """Stores a ReLU-led ``op`` like ReLUConvBN but adds a residual: its ReLU output is not the op's input."""

    def __init__(self, C: int, stride: int, affine: bool):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.op(x)


def test_an_op_without_a_declared_head_is_computed_whole_on_the_fast_path():
    """An op that declares no head (here one with a residual around a ReLU-led ``op``) gives the same output on
    the fast path as on the plain path: it is computed whole, not guessed apart."""
    ops = {"residual": ResidualConv, "skip_connect": DARTS_OPS["skip_connect"]}
    torch.manual_seed(0)
    mixed = MixedOp(4, 1, tuple(ops), ops)
    x, w = torch.randn(2, 4, 6, 6), torch.tensor([0.7, 0.3])
    plain = mixed(x, w)
    torch.testing.assert_close(mixed(x, w, shared=SharedInput(x)), plain, rtol=0, atol=0)
    assert head_split(mixed._ops[0]) is None


def test_the_context_is_given_when_the_supernet_is_built():
    """Memory format, fast path and autocast dtype come with the Context passed to build_supernet."""
    net = DartsSpace(4, 3).build_supernet(10, Context(channels_last=True, fast=False, amp_dtype=torch.bfloat16))
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert all(not m.fast for m in net.modules() if isinstance(m, MixedOp))
    assert net.context.amp_dtype == torch.bfloat16
    assert all(m.fast for m in DartsSpace(4, 3).build_supernet(10).modules() if isinstance(m, MixedOp))


def test_toy_space_genotypes_round_trip_and_mutate_in_one_place():
    """Toy genotypes round-trip through text and JSON; a mutation changes exactly one edge; bad text is refused."""
    space, g = ToySpace(), torch.Generator().manual_seed(0)
    for _ in range(20):
        genotype = space.sample(g)
        assert space.parse(space.to_text(genotype)) == genotype == space.from_json(space.to_json(genotype))
        child = space.mutate(genotype, g)
        assert sum(a != b for a, b in zip(genotype, child)) == 1
    with pytest.raises(ValueError, match="conv_5x5"):
        space.parse("skip_connect|conv_5x5|conv_3x3")


def test_toy_supernet_runs_a_genotype_like_its_network():
    """With one-hot mixing the toy supernet computes the discrete network's function (same weights copied in)."""
    torch.manual_seed(0)
    space, genotype = ToySpace(4), ToyGenotype(["conv_3x3", "skip_connect", "conv_3x3"])
    supernet, net = space.build_supernet(10).eval(), ToyNetwork(genotype, 4, 10).eval()
    for e, op in enumerate(genotype):
        mixed = supernet.net.cell.edges[e]._ops[space.primitives.index(op)]
        net.cell[e].load_state_dict(mixed.state_dict(), strict=False)
    net.stem.load_state_dict(supernet.net.stem.state_dict())
    net.classifier.load_state_dict(supernet.net.classifier.state_dict())
    for m in net.modules():  # the search BN has no affine parameters: identity affine
        if isinstance(m, nn.BatchNorm2d) and m.affine and m is not net.stem[1]:
            nn.init.ones_(m.weight), nn.init.zeros_(m.bias)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(supernet(x, space.one_hot(genotype)), net(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_tensorboard_writer_has_no_import_side_effects():
    """Importing the run wing does not import pyplot nor set matplotlib's backend."""
    code = ("import sys, darts.runs.tensorboard_log, darts.runs.search; "
            "assert 'matplotlib.pyplot' not in sys.modules; import matplotlib; "
            "assert matplotlib.rcParams._get_backend_or_none() is None, matplotlib.rcParams._get_backend_or_none()")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)


def test_partial_is_how_configs_pass_strategies(tmp_path):
    """The run builds the strategy from a partial (as Hydra's _partial_ gives it) with the supernet and space."""
    data = SearchData(lambda: fake(num_train=16, num_test=8, image_size=8), 0.5, 0)
    run = SearchRun(tmp_path, ToySpace(4), data, partial(DARTS, order=2), Context(), epochs=1,
                    batch_size=4)
    assert run.strategy.order == 2 and run.strategy.supernet is run.supernet


def plugin_from_the_docs(root: Path) -> list[str]:
    """Write every file the Extending page shows (a code block whose first line is ``# /path/to/dir/<file>``) under
    ``root``, exactly as printed; the files written."""
    page = (ROOT / "docs" / "extending.md").read_text()
    written = []
    for block in re.findall(r"```(?:python|yaml)\n(.*?)```", page, flags=re.S):
        first, _, body = block.partition("\n")
        if first.startswith("# /path/to/dir/"):
            path = root / first.removeprefix("# /path/to/dir/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body if path.suffix == ".py" else block)
            written.append(str(path.relative_to(root)))
    return written


@pytest.mark.slow
def test_strategies_written_from_the_extending_page_pass_the_generic_config_tests(tmp_path):
    """A gradient and a discrete strategy, each one module plus one YAML copied from docs/extending.md into a plugin
    directory, pass tests/test_configs.py untouched (DARTS_PLUGINS): composed with every space, a one-step search
    (gradient) and a search with every evaluator (discrete)."""
    files = plugin_from_the_docs(tmp_path)
    assert {"mine.py", "conf/strategy/mine.yaml", "greedy.py", "conf/strategy/greedy.yaml"} <= set(files)
    env = {**os.environ, "DARTS_PLUGINS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" /
                           "test_configs.py"), "-k", "mine or greedy"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    counts = re.search(r"(\d+) passed", proc.stdout)
    # mine: 3 spaces + 1 search; greedy: 3 spaces + 4 evaluators (the discrete runs need the NB201 table)
    assert counts and int(counts.group(1)) >= 4 + 3 + (4 if (SHARED / "nb201").is_dir() else 0), proc.stdout[-2000:]
