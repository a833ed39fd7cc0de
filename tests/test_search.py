"""DARTS space, supernet, derivation, first/second-order steps and the search entry point."""
from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch.func import functional_call

from conftest import read_json, run_entry, tensorboard_tags
from search_spaces.darts.genotype import Genotype
from darts.strategies.gradient.darts import DARTS
from darts.strategies.bilevel import search_epoch
from search_spaces.darts import GENOTYPES, PRIMITIVES, DartsSpace, build_supernet, derive_genotype

# DARTS cnn/train_search.py logs "param size = 1.930618MB" for Network(16, 10, 8) (alphas are not parameters there)
REFERENCE_SUPERNET_WEIGHTS = 1_930_618


def tiny_setup(order: int = 1, dtype: torch.dtype = torch.float32):
    """A 3-cell supernet (normal, reduce, reduce) at 4 channels, its DARTS strategy, an SGD optimizer and two batches."""
    torch.manual_seed(0)
    space = DartsSpace(init_channels=4, layers=3)
    supernet = space.build_supernet(num_classes=10).to(dtype)
    strategy = DARTS(supernet, space, order=order)
    opt = torch.optim.SGD(supernet.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    g = torch.Generator().manual_seed(1)
    train = (torch.randn(4, 3, 8, 8, generator=g, dtype=dtype), torch.randint(10, (4,), generator=g))
    valid = (torch.randn(4, 3, 8, 8, generator=g, dtype=dtype), torch.randint(10, (4,), generator=g))
    return space, supernet, strategy, opt, train, valid


def test_supernet_matches_reference_size():
    """The default supernet has exactly the DARTS reference search network's weights, plus 2 alphas [14, 8]."""
    net = build_supernet()
    assert sum(p.numel() for p in net.weight_parameters()) == REFERENCE_SUPERNET_WEIGHTS
    assert [tuple(a.shape) for a in net.arch_parameters()] == [(14, 8), (14, 8)]
    assert len(net.cells) == 8 and [c.reduction for c in net.cells].count(True) == 2
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [8 // 3, 2 * 8 // 3]
    assert all(not m.affine for m in net.cells.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_supernet_forward_backward():
    """A forward pass gives (B, classes) logits and gradients reach weights and alphas."""
    net = build_supernet(init_channels=4, layers=3, num_classes=7)
    out = net(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.arch_parameters())


def test_derivation_keeps_two_strongest_edges_and_skips_none():
    """Derivation takes per node the 2 edges whose best non-none op is strongest, even if none dominates."""
    normal = torch.zeros(14, 8)
    reduce = torch.zeros(14, 8)
    sep3, dil5, skip = PRIMITIVES.index("sep_conv_3x3"), PRIMITIVES.index("dil_conv_5x5"), PRIMITIVES.index("skip_connect")
    normal[0, sep3] = 2.0           # node 0: edges 0, 1
    normal[1, skip] = 1.0
    normal[1, 0] = 50.0             # `none` dominates edge 1 but is never chosen
    normal[2 + 2, dil5] = 3.0       # node 1: edges 2..4 -> inputs 2 and 0
    normal[2 + 0, sep3] = 1.0
    normal[5 + 3, skip] = 4.0       # node 2: input 3, then input 0 (ties keep the lower index)
    normal[9 + 4, sep3] = 5.0       # node 3: input 4, then input 0
    g = derive_genotype(normal, reduce)
    assert g.normal[:2] == (("sep_conv_3x3", 0), ("skip_connect", 1))
    assert g.normal[2:4] == (("dil_conv_5x5", 2), ("sep_conv_3x3", 0))
    assert g.normal[4:6] == (("skip_connect", 3), ("max_pool_3x3", 0))
    assert g.normal[6:8] == (("sep_conv_3x3", 4), ("max_pool_3x3", 0))
    assert all(op != "none" for op, _ in g.normal + g.reduce)
    assert repr(g).endswith("reduce_concat=range(2, 6))")


def test_one_hot_runs_a_genotype_in_the_supernet():
    """The one-hot mixing of a genotype selects its ops on its edges and `none` elsewhere."""
    space = DartsSpace(init_channels=4, layers=2)
    mixing = space.one_hot(GENOTYPES["DARTS_V2"])
    index = mixing["normal"].index
    assert sum(i != 0 for i in index) == 8
    derived = space.derive({t: F.one_hot(torch.tensor(m.index), 8).float() for t, m in mixing.items()})

    def nodes(gene):  # pairs per node, order-free (equal weights tie, ties keep input order)
        return [sorted(gene[k:k + 2], key=lambda p: p[1]) for k in range(0, len(gene), 2)]

    assert nodes(derived.normal) == nodes(GENOTYPES["DARTS_V2"].normal)
    assert nodes(derived.reduce) == nodes(GENOTYPES["DARTS_V2"].reduce)
    out = space.build_supernet(10)(torch.randn(2, 3, 8, 8), mixing)
    assert out.shape == (2, 10)


def test_sample_and_mutate_are_valid():
    """Sampled genotypes are valid DARTS genotypes; a mutation changes exactly one pair."""
    space = DartsSpace()
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        parent = space.sample(g)
        child = space.mutate(parent, g)
        diffs = [(a, b) for a, b in zip(parent.normal + parent.reduce, child.normal + child.reduce) if a != b]
        assert len(diffs) == 1
        assert isinstance(child, Genotype) and all(op != "none" for op, _ in child.normal + child.reduce)


def _step_changes_everything(order: int) -> None:
    space, supernet, strategy, opt, train, valid = tiny_setup(order)
    alphas = [a.detach().clone() for a in supernet.arch_parameters()]
    weights = [w.detach().clone() for w in supernet.weight_parameters()]
    search_epoch(supernet, strategy, [train], [valid], opt, 5.0, 1)
    assert all(not torch.equal(a, b) for a, b in zip(alphas, supernet.arch_parameters()))
    assert sum(not torch.equal(a, b) for a, b in zip(weights, supernet.weight_parameters())) > 0.9 * len(weights)


def test_first_order_step_changes_alphas_and_weights():
    """One first-order bilevel step updates both the alphas and the weights."""
    _step_changes_everything(1)


def test_second_order_step_changes_alphas_and_weights():
    """One second-order bilevel step updates both the alphas and the weights."""
    _step_changes_everything(2)


def test_second_order_hypergradient_matches_exact_autograd():
    """The finite-difference hypergradient (eq. 7-8) equals the double-backward gradient of L_val(w')."""
    space, supernet, strategy, opt, train, valid = tiny_setup(2, torch.float64)
    # The paper's r = 0.01 is too coarse to compare with on a 4-channel net whose ReLU/BN kinks lie closer
    # than that; a small radius in float64 isolates the implementation (same code path, same eq. 7-8).
    strategy.fd_radius = 1e-6
    search_epoch(supernet, strategy, [train], [valid], opt, 5.0, 1)  # momentum
    approx = strategy.unrolled_gradient(train, valid, opt)

    names, w = zip(*[(n, p) for n, p in supernet.named_parameters() if not n.startswith("alphas.")])
    group = opt.param_groups[0]
    xi, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
    loss_train = F.cross_entropy(supernet(train[0], strategy.mixing()), train[1])
    grads = torch.autograd.grad(loss_train, w, create_graph=True, allow_unused=True)
    w_unrolled = {n: p - xi * ((0 if g is None else g) + wd * p + mom * opt.state[p]["momentum_buffer"])
                  for n, p, g in zip(names, w, grads)}
    loss_valid = F.cross_entropy(functional_call(supernet, w_unrolled, (valid[0], strategy.mixing())), valid[1])
    exact = torch.autograd.grad(loss_valid, supernet.arch_parameters())

    for a, e in zip(approx, exact):
        # stated tolerance: 1e-6 relative (float64 central differences away from kinks)
        assert torch.linalg.norm(a - e) <= 1e-6 * torch.linalg.norm(e)


def test_order_is_validated():
    """An unsupported order is rejected with the valid choices."""
    space, supernet, *_ = tiny_setup()
    try:
        DARTS(supernet, space, order=3)
    except ValueError as e:
        assert "(1, 2)" in str(e)
    else:
        raise AssertionError("order=3 accepted")


def test_search_end_to_end_on_real_images(cifar_mini, tmp_path):
    """train_search.py on real CIFAR-10 images writes result.json, per-epoch genotypes and TensorBoard data."""
    run = tmp_path / "run"
    run_entry("train_search.py", run, "dataset=imagefolder", f"dataset.root={cifar_mini}", "model.init_channels=4",
              "model.layers=3", "epochs=2", "steps_per_epoch=2", "batch_size=8", "strategy.order=2")
    result = read_json(run / "result.json")
    genotype = DartsSpace().parse(result["genotype"])
    assert isinstance(genotype, Genotype) and result["epochs"] == 2
    assert {"train_acc", "valid_acc", "train_loss", "valid_loss"} <= result.keys()
    assert len((run / "genotypes.jsonl").read_text().splitlines()) == 2
    assert (run / "config.yaml").is_file() and (run / "checkpoint.pt").is_file()
    tags = tensorboard_tags(run)
    assert {"search/train_loss", "search/valid_acc", "search/lr", "arch/entropy_normal"} <= set(tags["scalars"])
    assert {"arch/normal", "arch/reduce"} <= set(tags["images"])
    assert any(t.startswith("arch/genotype") for t in tags["tensors"])


def test_resume_continues_from_checkpoint(cifar_mini, tmp_path):
    """resume=<run dir> epochs=N continues after the saved epoch, past a genotypes.jsonl line torn by a kill, and
    keeps one record per epoch; overrides that would change the model or the seed are refused, naming the key."""
    run = tmp_path / "run"
    common = ["model.init_channels=4", "model.layers=2", "steps_per_epoch=1", "batch_size=8"]
    run_entry("train_search.py", run, "dataset=imagefolder", f"dataset.root={cifar_mini}", "epochs=1", *common)
    with open(run / "genotypes.jsonl", "a") as f:
        f.write('{"epoch": 1, "genotype": "Geno')  # a kill during the next epoch's append
    for override in ("seed=3", "model.layers=5"):
        proc = run_entry("train_search.py", run, f"resume={run}", "epochs=2", override, check=False)
        assert proc.returncode != 0 and f"cannot change '{override.split('=')[0]}' when resuming" in proc.stderr
    proc = run_entry("train_search.py", run, f"resume={run}", "epochs=2")
    assert "at epoch 2 of 2" in proc.stdout + proc.stderr  # the second epoch (1-based) of the longer schedule
    epochs = [json.loads(line)["epoch"] for line in (run / "genotypes.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]
    assert read_json(run / "result.json")["epochs"] == 2
    assert "epochs: 2" in (run / "config.yaml").read_text()  # the saved configuration is the one that ran


def test_missing_cifar_is_a_clear_error(tmp_path):
    """Without CIFAR-10 data or internet the run stops with one line saying how to point at local data."""
    proc = run_entry("train_search.py", tmp_path / "run", f"dataset.root={tmp_path}/nothing", "epochs=1", check=False)
    assert proc.returncode != 0
    assert "dataset.root=" in proc.stderr + proc.stdout
