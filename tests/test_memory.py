"""Activation checkpointing (``memory.checkpoint=cells``) changes memory, not results: outputs, losses, gradients of
the weights and the arch parameters, and batch-norm statistics equal the plain computation in float64, for first- and
second-order DARTS and the sampling strategies (the same random stream)."""
from __future__ import annotations

import functools
import json
import math

import pytest
import torch

from darts.context import Context
from darts.selections.hessian import EIGENVALUE
from darts.settings import SGD
from darts.strategies.bilevel import search_epoch
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.drnas import DrNAS
from darts.strategies.gradient.gdas import GDAS
from darts.strategies.gradient.pcdarts import PCDARTS
from search_spaces.darts import DartsSpace
from search_spaces.nb201 import NB201Space

SPACES = {"nb201": lambda: NB201Space(init_channels=4, cells_per_stage=1),
          "darts": lambda: DartsSpace(init_channels=4, layers=3, ops="s5")}


@functools.lru_cache(maxsize=None)  # the plain run is compared with each level: computed once
def searched(space_name: str, cls: type, checkpoint: str, steps: int = 2, **kwargs) -> tuple:
    """Two bilevel steps from the same seed in float64: the supernet's state, the strategy's arch parameters and the
    last weight step's logits (not to be modified: cached)."""
    torch.manual_seed(0)
    space = SPACES[space_name]()
    context = Context(checkpoint=checkpoint)
    supernet = space.build_supernet(10, context, cls.supernet_options(**kwargs)).double()
    strategy = cls(supernet, space, **kwargs)
    for p in strategy.arch_parameters():
        p.data = p.data.double()
    strategy.arch_optimizer = torch.optim.Adam(strategy.arch_parameters(), lr=0.05)
    optimizer = SGD().build(supernet.weight_parameters())
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=g), torch.randint(10, (4,), generator=g))
               for _ in range(2 * steps)]
    torch.manual_seed(2)
    search_epoch(supernet, strategy, batches[:steps], batches[steps:], optimizer, 5.0, steps)
    with torch.no_grad():
        logits = supernet(batches[0][0])
    return supernet.state_dict(), [p.detach().clone() for p in strategy.arch_parameters()], logits


CASES = [(DARTS, {}), (DARTS, {"order": 2}), (GDAS, {}), (DrNAS, {}), (PCDARTS, {"partial_channels": 2})]


@pytest.mark.parametrize("level", ["norms", "cells"])
@pytest.mark.parametrize("space_name", sorted(SPACES))
@pytest.mark.parametrize("cls, kwargs", CASES, ids=["darts", "darts-2nd", "gdas", "drnas", "pcdarts"])
def test_recomputation_equals_the_plain_search(level, space_name, cls, kwargs):
    """After two arch + weight steps, every weight, buffer (BN statistics counted once) and arch parameter, and the
    logits, equal the plain run's exactly (float64; GDAS's and DrNAS's samples replayed)."""
    plain, plain_arch, plain_logits = searched(space_name, cls, "none", **kwargs)
    ckpt, ckpt_arch, ckpt_logits = searched(space_name, cls, level, **kwargs)
    assert plain.keys() == ckpt.keys()
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-12, atol=1e-14, msg=name)
    for a, b in zip(ckpt_arch, plain_arch):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ckpt_logits, plain_logits, rtol=1e-12, atol=1e-14)


def test_bad_checkpoint_setting_is_refused():
    """memory.checkpoint accepts none, norms or cells, in one line."""
    with pytest.raises(ValueError, match="memory.checkpoint='layers' is not valid; choose one of none, norms, cells"):
        Context(checkpoint="layers")


def test_checkpointed_search_end_to_end(cifar_mini, tmp_path):
    """memory.checkpoint=cells runs a search from the command line (with the Hessian monitor, which takes its second
    derivatives through the plain cells) and writes its result."""
    from conftest import read_json, run_entry

    run = tmp_path / "run"
    run_entry("train_search.py", run, "search_space=nb201", "dataset=imagefolder", f"dataset.root={cifar_mini}",
              "model.init_channels=4", "model.cells_per_stage=1", "epochs=1", "steps_per_epoch=2", "batch_size=8",
              "memory.checkpoint=cells", "hessian.every=1", "hessian.iterations=3")
    record = json.loads((run / "genotypes.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(record[EIGENVALUE]) and read_json(run / "result.json")["epochs"] == 1


def retrained(checkpoint: bool) -> tuple:
    """Two SGD steps of a float64 DARTS_V2 network (auxiliary head, drop path 0.3) from the same seed: its state and
    the logits of the last step."""
    from darts.checkpointing import checkpoint_each
    from darts.runs.final import final_loss
    from search_spaces.darts.genotypes import GENOTYPES
    from search_spaces.darts.network import NetworkCIFAR

    torch.manual_seed(0)
    net = NetworkCIFAR(C=4, num_classes=10, layers=3, auxiliary=True, genotype=GENOTYPES["DARTS_V2"]).double()
    net.drop_path_prob = 0.3
    if checkpoint:
        checkpoint_each(net.cells)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(2)
    for _ in range(2):
        x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64, generator=g), torch.randint(10, (4,), generator=g)
        loss, logits = final_loss(net(x), y, auxiliary_weight=0.4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.state_dict(), logits.detach()


def test_checkpointed_retraining_equals_the_plain_one():
    """With each cell recomputed in backward, two retraining steps with drop path and the auxiliary head leave every
    weight and BN statistic, and the logits, as the plain steps do (float64; the drop-path masks replayed)."""
    plain, plain_logits = retrained(False)
    ckpt, ckpt_logits = retrained(True)
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-12, atol=1e-14, msg=name)
    torch.testing.assert_close(ckpt_logits, plain_logits, rtol=1e-12, atol=1e-14)


def supernet_gradients(level: str, **context) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and every gradient of one fp32 forward and backward of a tiny DARTS supernet in ``context``."""
    torch.manual_seed(0)
    net = SPACES["darts"]().build_supernet(10, Context(checkpoint=level, **context), DARTS.supernet_options())
    net.to(memory_format=torch.channels_last if context.get("channels_last") else torch.contiguous_format)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))  # (B, 3, H, W)
    logits = net(x)
    logits.logsumexp(1).sum().backward()
    return logits.detach(), {n: p.grad for n, p in net.named_parameters() if p.grad is not None}


def relative_error(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    """||grads - reference|| / ||reference|| over every parameter."""
    diff = torch.cat([(grads[n] - reference[n]).flatten() for n in reference])
    return float(diff.norm() / torch.cat([g.flatten() for g in reference.values()]).norm())


@pytest.mark.parametrize("level", ["norms", "cells"])
def test_recomputation_under_channels_last_and_autocast(level):
    """In channels_last fp32 the logits equal the plain computation's and the gradients agree to fp32 rounding; under
    bf16 autocast the logits are equal and the gradients are as close to fp32's as the plain bf16 computation's."""
    plain_logits, plain = supernet_gradients("none", channels_last=True)
    logits, grads = supernet_gradients(level, channels_last=True)
    assert torch.equal(logits, plain_logits) and grads.keys() == plain.keys()
    assert relative_error(grads, plain) < 1e-5
    _, fp32 = supernet_gradients("none")
    plain_logits, plain = supernet_gradients("none", amp_dtype=torch.bfloat16)
    logits, grads = supernet_gradients(level, amp_dtype=torch.bfloat16)
    assert torch.equal(logits, plain_logits)
    assert relative_error(grads, fp32) < 1.1 * relative_error(plain, fp32)


def test_second_derivatives_through_recomputed_norms():
    """Second derivatives through the recomputed norms (a double backward) equal memory.checkpoint=none's, and inside
    ``no_recomputation`` (the Hessian monitor's pass) too."""
    from darts.checkpointing import no_recomputation

    def hessian_vector(level: str) -> torch.Tensor:
        torch.manual_seed(0)
        net = SPACES["nb201"]().build_supernet(10, Context(checkpoint=level), DARTS.supernet_options()).double()
        loss = net(torch.randn(2, 3, 8, 8, dtype=torch.float64)).square().sum()
        (g,) = torch.autograd.grad(loss, net.alphas["cell"], create_graph=True)
        v = torch.randn(g.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        return torch.autograd.grad((g * v).sum(), net.alphas["cell"])[0]  # H v

    plain = hessian_vector("none")
    assert plain.abs().max() > 1e-3
    torch.testing.assert_close(hessian_vector("norms"), plain, rtol=1e-12, atol=1e-14)
    with no_recomputation():
        torch.testing.assert_close(hessian_vector("norms"), plain, rtol=1e-12, atol=1e-14)


def test_recomputed_norms_in_eval_mode():
    """In eval mode (running statistics, tracked by the DARTS space's norms) the recomputed norms' gradients equal the
    plain ones (float64)."""
    grads = {}
    for level in ("none", "norms"):
        torch.manual_seed(0)
        net = SPACES["darts"]().build_supernet(10, Context(checkpoint=level), DARTS.supernet_options()).double()
        x = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        net(x)  # one training pass: running statistics away from their initial values
        net.eval()
        net(x).logsumexp(1).sum().backward()
        grads[level] = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    assert grads["none"].keys() == grads["norms"].keys()
    for name, g in grads["none"].items():
        torch.testing.assert_close(grads["norms"][name], g, rtol=1e-12, atol=1e-14, msg=name)
