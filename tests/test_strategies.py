"""GDAS, PC-DARTS and DrNAS: sampling, gradients, partial channels, edge normalisation, configs, end-to-end runs."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from conftest import ROOT, read_json, started, tensorboard_tags
from darts.strategies.gradient.drnas import DrNAS
from darts.strategies.gradient.gdas import GDAS
from darts.strategies.gradient.pcdarts import PCDARTS
from darts.mixed_op import MixedOp, PartialChannels, SharedInput, channel_shuffle
from darts.context import Context
from search_spaces.darts import PRIMITIVES, DartsSpace
from search_spaces.darts.ops import SEARCH_OPS
from search_spaces.nb201 import NB201Space

SPACES = ("darts", "nb201")




def make_space(name: str, partial_channels: int = 1):
    """A tiny space: DARTS with 3 cells (normal, reduce, reduce) or NB201 with 1 cell per stage; 4 channels
    per partial-channel group (C/K must be whole in every cell)."""
    C = 4 * partial_channels
    if name == "darts":
        return DartsSpace(init_channels=C, layers=3)
    return NB201Space(init_channels=C, cells_per_stage=1)


def setup(space_name: str, cls: type, partial_channels: int | None = None, fast: bool = True, **kwargs):
    """Space, supernet as the strategy asks for it (fast path or not) and strategy, seeded; ``partial_channels``
    is PC-DARTS's K (default: its own, 4) and sizes the space."""
    torch.manual_seed(0)
    if partial_channels is not None:
        kwargs["partial_channels"] = partial_channels
    options = cls.supernet_options(**kwargs)
    space = make_space(space_name, options.partial_channels)
    supernet = space.build_supernet(num_classes=10, context=Context(fast=fast), options=options)
    return space, supernet, cls(supernet, space, **kwargs)


def batch(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 8x8 images (n, 3, 8, 8) and labels (n,)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(10, (n,), generator=g)


def mixed_ops(supernet) -> list[tuple[str, int, MixedOp]]:
    """(cell type, edge index, mixed op) for every edge of every search cell."""
    out = []
    for cell in supernet.cells:
        if hasattr(cell, "dag"):
            t = supernet.cell_types[0] if len(supernet.cell_types) == 1 else ("reduce" if cell.reduction else "normal")
            out += [(t, e, op) for e, op in enumerate(cell.dag.edges)]
    return out


# ---------------------------------------------------------------- GDAS

@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("space_name", SPACES)
def test_gdas_computes_exactly_the_sampled_op_on_each_edge(space_name, fast):
    """A GDAS forward pass runs only the sampled op of each edge (plain path: exactly that op's module;
    fast path: parts of it, its parameter-free head possibly shared with another edge)."""
    _, supernet, strategy = setup(space_name, GDAS, fast=fast)
    calls: dict[tuple, set[int]] = {}  # (cell type, edge, mixed op id) -> indices of the op modules called
    for t, e, mixed in mixed_ops(supernet):
        for k, op in enumerate(mixed._ops):
            for m in op.modules():
                m.register_forward_hook(lambda *_, key=(t, e, id(mixed)), k=k: calls.setdefault(key, set()).add(k))
    mixing = strategy.mixing()
    supernet(batch()[0], mixing)
    edges = mixed_ops(supernet)
    for t, e, mixed in edges:
        called = calls.get((t, e, id(mixed)), set())
        assert called <= {mixing[t].index[e]}
        assert fast or called == {mixing[t].index[e]}


@pytest.mark.parametrize("space_name", SPACES)
def test_gdas_arch_parameters_receive_gradients(space_name):
    """Through the straight-through sample, every alpha gets a finite, non-zero gradient."""
    _, supernet, strategy = setup(space_name, GDAS)
    strategy.arch_loss(batch()).backward()
    for a in strategy.arch_parameters():
        assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_gdas_sample_is_one_hot_in_value():
    """The hard weights are one-hot in value at the sampled index, per edge."""
    _, _, strategy = setup("darts", GDAS)
    for m in strategy.mixing().values():
        expected = F.one_hot(torch.tensor(m.index), m.weights.shape[1]).float()
        torch.testing.assert_close(m.weights.detach(), expected, atol=1e-6, rtol=0)


def test_hard_mixed_op_matches_nb201_forward_gdas():
    """Hard index: value w[i] * op_i(x); each other weight's gradient is sum(dL/dout), as NB201 forward_gdas."""
    torch.manual_seed(0)
    mixed = MixedOp(4, 1, PRIMITIVES, SEARCH_OPS)
    x = torch.randn(2, 4, 6, 6)
    probs = F.softmax(torch.randn(len(PRIMITIVES)), -1).requires_grad_(True)
    index = 4
    hard = F.one_hot(torch.tensor(index), len(PRIMITIVES)).float() - probs.detach() + probs
    out = mixed(x, hard, index)
    torch.testing.assert_close(out, hard[index] * mixed._ops[index](x))
    grad_out = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, probs, grad_out)
    reference = torch.full_like(grad, float(grad_out.sum()))  # forward_gdas: d/dw_k of sum(... + w_k) for k != index
    reference[index] = (grad_out * mixed._ops[index](x)).sum()
    torch.testing.assert_close(grad, reference)


@pytest.mark.parametrize("unselected_grad", [True, False])
def test_gdas_unselected_gradient_switch(unselected_grad):
    """unselected_grad=False cuts the non-sampled weights' gradient path (DARTS-space forward_gdas); True keeps it."""
    _, supernet, strategy = setup("nb201", GDAS, unselected_grad=unselected_grad)
    m = strategy.mixing()["cell"]
    unselected = 1 - F.one_hot(torch.tensor(m.index), m.weights.shape[1]).float()  # [E, K]
    (grad,) = torch.autograd.grad((m.weights * unselected).sum(), supernet.alphas["cell"], allow_unused=True)
    assert (grad is not None and grad.abs().sum() > 0) == unselected_grad


def test_gdas_tau_anneals_linearly_and_resumes():
    """tau goes linearly from tau_max at the first epoch to tau_min at the last, is logged and checkpointed."""
    _, supernet, strategy = setup("nb201", GDAS, tau_max=10.0, tau_min=0.1)
    taus = []
    for epoch in range(5):
        strategy.epoch_start(epoch, 5)
        taus.append(strategy.tau)
    assert taus == pytest.approx([10.0, 7.525, 5.05, 2.575, 0.1])
    assert strategy.scalars()["tau"] == pytest.approx(0.1)
    other = GDAS(supernet, strategy.space)
    other.load_state_dict(strategy.state_dict())
    assert other.tau == pytest.approx(0.1) and other.epoch == 4


@pytest.mark.parametrize("tau_max, tau_min", [(10.0, 0.0), (0.1, 10.0)])
def test_gdas_rejects_bad_temperatures(tau_max, tau_min):
    """Non-positive or inverted temperatures are refused with a ValueError."""
    with pytest.raises(ValueError, match="tau_min"):
        setup("nb201", GDAS, tau_max=tau_max, tau_min=tau_min)


# ---------------------------------------------------------------- PC-DARTS

@pytest.mark.parametrize("space_name", SPACES)
def test_partial_mixed_ops_process_c_over_k_channels(space_name):
    """With K=4 every op's convolutions see C/4 channels and each mixed op's output has its input's shape (halved at stride 2)."""
    _, supernet, _ = setup(space_name, PCDARTS, partial_channels=4)
    records = []
    for _, _, mixed in mixed_ops(supernet):
        rec = {"stride": mixed.stride, "widths": []}
        records.append(rec)
        mixed.register_forward_hook(lambda mod, inp, out, rec=rec: rec.update(x=inp[0].shape, y=out.shape))
        for conv in (m for m in mixed.modules() if isinstance(m, torch.nn.Conv2d)):  # every op's convs
            conv.register_forward_pre_hook(lambda mod, inp, rec=rec: rec["widths"].append(inp[0].shape[1]))
    supernet(batch()[0])
    for rec in records:
        b, c, h, w = rec["x"]  # (B, C, H, W)
        assert tuple(rec["y"]) == (b, c, h // rec["stride"], w // rec["stride"])
        assert rec["widths"] and set(rec["widths"]) == {c // 4}


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_mixed_op_shapes(stride):
    """A K=4 mixed op on C=8 runs its ops on 2 channels and returns (B, 8, H/stride, W/stride)."""
    torch.manual_seed(0)
    mixed = PartialChannels(8, stride, 4, PRIMITIVES, SEARCH_OPS)
    widths = []
    for op in mixed.mixed._ops:
        op.register_forward_pre_hook(lambda mod, inp: widths.append(inp[0].shape[1]))
    x = torch.randn(2, 8, 6, 6)
    out = mixed(x, F.softmax(torch.randn(len(PRIMITIVES)), -1))
    assert out.shape == (2, 8, 6 // stride, 6 // stride)
    assert widths and set(widths) == {2}


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channels_shared_per_state_equal_the_plain_split(stride):
    """Fast path: the C/K split and the bypass (max-pooled at stride 2) are made once per input state and
    shared by its edges, in the input's layout (channels_last stays channels_last through the channel shuffle),
    with the plain path's values."""
    torch.manual_seed(0)
    edges = [PartialChannels(8, stride, 4, PRIMITIVES, SEARCH_OPS) for _ in range(3)]
    w = F.softmax(torch.randn(len(PRIMITIVES)), -1)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 8, 6, 6).contiguous(memory_format=layout)
        for e in edges:
            e.to(memory_format=layout)
        plain = [e(x, w) for e in edges]
        shared = SharedInput(x)
        fast = [e(x, w, shared=shared) for e in edges]
        assert len(shared._parts) == 1 and [k[0] for k in shared._cache] == ["bypass"]
        for p, f in zip(plain, fast):
            torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-6)
            assert f.is_contiguous(memory_format=layout)


def test_channel_shuffle_keeps_the_layout():
    """channel_shuffle interleaves the K groups (out channel j*K + g = in channel g*C/K + j) in either layout."""
    x = torch.arange(2 * 8 * 3 * 3, dtype=torch.float32).view(2, 8, 3, 3)
    ref = torch.stack(x.chunk(4, dim=1), dim=2).flatten(1, 2)  # (2, 8, 3, 3)
    assert torch.equal(channel_shuffle(x, 4), ref)
    last = channel_shuffle(x.contiguous(memory_format=torch.channels_last), 4)
    assert torch.equal(last, ref) and last.is_contiguous(memory_format=torch.channels_last)


def test_edge_normalisation_enters_derivation():
    """Normalised betas multiply the op weights before the DARTS rule, so they choose a node's inputs."""
    space, supernet, strategy = setup("darts", PCDARTS, partial_channels=1)
    with torch.no_grad():
        for t in supernet.cell_types:
            supernet.alphas[t].zero_()
            strategy.betas[t].zero_()
        k = PRIMITIVES.index("sep_conv_3x3")
        supernet.alphas["normal"][2:5, k] = torch.tensor([3.0, 2.9, 2.8])  # node 1: edges from inputs 0, 1, 2
    assert [src for _, src in space.derive(strategy.op_weights()).normal[2:4]] == [0, 1]
    with torch.no_grad():
        strategy.betas["normal"][4] = 2.0  # favour node 1's edge from node 0 (state 2)
    assert sorted(src for _, src in strategy.genotype().normal[2:4]) == [0, 2]
    plain = space.derive({t: F.softmax(supernet.alphas[t], -1) for t in supernet.cell_types})
    assert [src for _, src in plain.normal[2:4]] == [0, 1]


@pytest.mark.parametrize("space_name", SPACES)
def test_betas_are_normalised_per_node_and_learned(space_name):
    """Betas live on the supernet's device, sum to 1 over each node's inputs, and get gradients and Adam steps."""
    _, supernet, strategy = setup(space_name, PCDARTS, partial_channels=1)
    params = {id(p) for g in strategy.arch_optimizer.param_groups for p in g["params"]}
    for t, b in strategy.betas.items():
        assert b.device == supernet.alphas[t].device and id(b) in params
        sums = [float(s.sum()) for s in torch.split(strategy.edge_weights()[t].detach(), strategy.node_sizes)]
        assert sums == pytest.approx([1.0] * len(strategy.node_sizes))
    before = {t: b.detach().clone() for t, b in strategy.betas.items()}
    strategy.arch_loss(batch()).backward()
    for t, b in strategy.betas.items():
        multi = torch.cat([torch.full((n,), n > 1) for n in strategy.node_sizes])  # single-input nodes: softmax = 1
        assert b.grad[multi].abs().min() > 0
    strategy.arch_optimizer.step()
    assert all(not torch.equal(before[t], strategy.betas[t]) for t in before)


def test_pcdarts_resume_is_exact():
    """Restoring state_dict (betas, Adam state) into a fresh strategy gives identical subsequent arch steps."""
    space, supernet, strategy = setup("darts", PCDARTS, partial_channels=1)
    opt = torch.optim.SGD(supernet.weight_parameters(), 0.1)
    strategy.arch_step(batch(), batch(), opt)
    buffer = io.BytesIO()  # through a checkpoint file, as a resumed run
    torch.save(strategy.state_dict(), buffer)
    buffer.seek(0)
    fresh = PCDARTS(supernet, space, partial_channels=1)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    alphas = {t: a.detach().clone() for t, a in supernet.alphas.items()}
    strategy.arch_step(batch(), batch(), opt)
    after = {t: b.detach().clone() for t, b in strategy.betas.items()}
    with torch.no_grad():
        for t, a in supernet.alphas.items():
            a.copy_(alphas[t])
    fresh.arch_step(batch(), batch(), opt)
    for t in after:
        torch.testing.assert_close(fresh.betas[t], after[t], rtol=0, atol=0)


# ---------------------------------------------------------------- DrNAS

@pytest.mark.parametrize("space_name", SPACES)
def test_drnas_samples_lie_on_the_simplex(space_name):
    """Each edge's sampled weights are non-negative, sum to 1, and differ between draws."""
    _, _, strategy = setup(space_name, DrNAS)
    first, second = strategy.mixing(), strategy.mixing()
    for t, m in first.items():
        w = m.weights.detach()  # [E, K]
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[0]))
        assert not torch.equal(w, second[t].weights.detach())


@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("reg_type", ["l2", "kl"])
def test_drnas_arch_parameters_receive_gradients(space_name, reg_type):
    """The pathwise Dirichlet gradient reaches every alpha (finite, non-zero)."""
    _, _, strategy = setup(space_name, DrNAS, reg_type=reg_type)
    strategy.arch_loss(batch()).backward()
    for a in strategy.arch_parameters():
        assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_drnas_regulariser():
    """l2 is Adam weight decay reg_scale; kl adds reg_scale * KL(Dir(elu(a)+1) || Dir(1)), zero at the anchor."""
    _, supernet, l2 = setup("nb201", DrNAS, reg_type="l2", reg_scale=1e-3)
    kl = DrNAS(supernet, l2.space, reg_type="kl", reg_scale=1e-3)
    assert l2.arch_optimizer.param_groups[0]["weight_decay"] == 1e-3
    assert kl.arch_optimizer.param_groups[0]["weight_decay"] == 0.0
    x = batch()

    def loss(strategy):
        torch.manual_seed(5)  # the same Dirichlet draw for both
        with torch.no_grad():
            return float(strategy.arch_loss(x))

    with torch.no_grad():
        supernet.alphas["cell"].zero_()  # concentration 1 = the anchor
    assert loss(kl) == pytest.approx(loss(l2))
    with torch.no_grad():
        supernet.alphas["cell"][:, 3] = 2.0
    c = F.elu(supernet.alphas["cell"].detach()) + 1
    expected = 1e-3 * torch.distributions.kl_divergence(torch.distributions.Dirichlet(c),
                                                        torch.distributions.Dirichlet(torch.ones_like(c))).sum()
    assert loss(kl) - loss(l2) == pytest.approx(float(expected), rel=1e-4)


def test_drnas_derives_from_the_dirichlet_mean_and_logs_concentrations():
    """op_weights is (elu(alpha)+1) normalised per edge; scalars report the concentrations."""
    _, supernet, strategy = setup("darts", DrNAS)
    with torch.no_grad():
        supernet.alphas["normal"].normal_()
    c = F.elu(supernet.alphas["normal"].detach()) + 1
    torch.testing.assert_close(strategy.op_weights()["normal"], c / c.sum(-1, keepdim=True))
    assert float(strategy.scalars()["concentration_normal/max"]) == pytest.approx(float(c.max()))


@pytest.mark.parametrize("kwargs, match", [({"reg_type": "l1"}, "reg_type"), ({"order": 3}, "order")])
def test_drnas_rejects_bad_options(kwargs, match):
    """An unknown regulariser or a bad order is refused with a ValueError."""
    with pytest.raises(ValueError, match=match):
        setup("nb201", DrNAS, **kwargs)


@pytest.mark.parametrize("cls", [PCDARTS, DrNAS])
def test_second_order_arch_step(cls):
    """order=2 (DARTS's unrolled hypergradient) updates every arch parameter to finite values (GDAS refuses it:
    tests/test_gpu_readiness.py)."""
    _, supernet, strategy = setup("nb201", cls, order=2)
    opt = torch.optim.SGD(supernet.weight_parameters(), 0.025, momentum=0.9)
    before = [p.detach().clone() for p in strategy.arch_parameters()]
    strategy.arch_step(batch(), batch(n=3), opt)
    for b, p in zip(before, strategy.arch_parameters()):
        assert torch.isfinite(p).all() and not torch.equal(b, p)


# ---------------------------------------------------------------- configs and end-to-end runs

def compose_search(*overrides: str):
    """The composed search config with these overrides."""
    with initialize_config_dir(str(ROOT / "darts" / "conf"), version_base="1.3"):
        return compose("search", overrides=list(overrides))


@pytest.mark.parametrize("space_name", SPACES)
def test_strategy_configs_set_their_papers_run_settings(space_name):
    """A strategy config's run settings win over search.yaml's in both spaces; command-line overrides win over them."""
    cfg = compose_search("strategy=pcdarts", f"search_space={space_name}")
    assert (cfg.batch_size, cfg.optimizer.lr, cfg.optimizer.lr_min) == (256, 0.1, 0.0)
    assert cfg.strategy.partial_channels == 4
    assert cfg.strategy.arch_start_epoch == 15
    cfg = compose_search("strategy=pcdarts", f"search_space={space_name}", "batch_size=32", "optimizer.lr=0.05")
    assert (cfg.batch_size, cfg.optimizer.lr) == (32, 0.05)
    cfg = compose_search("strategy=gdas", f"search_space={space_name}")
    assert (cfg.epochs, cfg.optimizer.weight_decay, cfg.strategy.tau_max, cfg.strategy.tau_min) == (240, 5e-4, 10, 0.1)
    assert compose_search("strategy=drnas", f"search_space={space_name}").epochs == 100


STRATEGY_TAGS = {"gdas": "arch/tau", "pcdarts": "arch/beta_{}/edge01", "drnas": "arch/concentration_{}/mean"}


@pytest.fixture(scope="module")
def runs(cifar_mini, tmp_path_factory):
    """All end-to-end searches, one after another in this process (one thread each)."""
    procs = {}
    for strategy in STRATEGY_TAGS:
        for space_name in SPACES:
            run_dir = tmp_path_factory.mktemp(f"{strategy}-{space_name}")
            size = ["model.layers=3"] if space_name == "darts" else ["model.cells_per_stage=1"]
            procs[strategy, space_name] = (run_dir, started(
                "train_search.py", f"hydra.run.dir={run_dir}", "progress=false", f"strategy={strategy}",
                f"search_space={space_name}", "dataset=imagefolder", f"dataset.root={cifar_mini}",
                "model.init_channels=4", *size, "epochs=1", "steps_per_epoch=2", "batch_size=8",
                "strategy.arch_start_epoch=0"))
    yield procs
    for _, proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("strategy", sorted(STRATEGY_TAGS))
def test_strategy_runs_end_to_end(runs, strategy, space_name):
    """train_search.py runs each strategy in each space on real images, logging its own scalars and the common ones."""
    run_dir, proc = runs[strategy, space_name]
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-4000:]
    result = read_json(run_dir / "result.json")
    assert result["epochs"] == 1 and result["genotype"]
    cell_type = "normal" if space_name == "darts" else "cell"
    scalars = tensorboard_tags(run_dir)["scalars"]
    assert STRATEGY_TAGS[strategy].format(cell_type) in scalars
    assert {"search/train_loss", "search/valid_acc", f"arch/entropy_{cell_type}"} <= set(scalars)
