"""Hypergradients of training hyperparameters (darts/hypergradients/): the one-step closed forms against autograd
through the unrolled step and central finite differences, the Neumann series against the exact implicit hypergradient
of ridge regression, hypergradient descent against its closed form on a quadratic, and the runs that use them."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

import darts.training as training
from conftest import ROOT, read_json, run_entry, tensorboard_tags
from darts.context import Context
from darts.hypergradients.base import direction
from darts.hypergradients.descent import HypergradientDescent
from darts.hypergradients.implicit import Implicit, weight_decay_hypergradient
from darts.hypergradients.unrolled import Unrolled, hypergradients, through_unroll
from darts.runs.hyperparameters import supernet_loss
from darts.strategies.gradient.darts import DARTS
from search_spaces.toy import ToySpace

F64 = torch.float64


def tiny_supernet():
    """A float64 toy supernet, its DARTS strategy and a train and a valid batch (8x8 images, 10 classes)."""
    torch.manual_seed(0)
    space = ToySpace()
    supernet = space.build_supernet(10, Context()).double()
    strategy = DARTS(supernet, space)
    batch = lambda: (torch.randn(4, 3, 8, 8, dtype=F64), torch.randint(0, 10, (4,)))  # noqa: E731
    return supernet, strategy, batch(), batch()


def weights_of(supernet):
    """The supernet's (name, weight) pairs, alphas left out."""
    return [(n, p) for n, p in supernet.named_parameters() if not n.startswith("alphas.")]


def test_one_step_closed_forms_equal_autograd_and_central_differences():
    """dL_val(w')/dwd = -lr grad L_val(w') . w and dL_val(w')/dlr = -grad L_val(w') . grad L_train(w, wd) equal
    autograd through the unrolled step and central finite differences, in float64 on a tiny supernet."""
    supernet, strategy, train, valid = tiny_supernet()
    names, w = zip(*weights_of(supernet))
    loss = supernet_loss(supernet, strategy)
    train_loss = lambda ws: loss(dict(zip(names, ws)), train)  # noqa: E731
    valid_loss = lambda ws: loss(dict(zip(names, ws)), valid)  # noqa: E731
    lr, wd = 0.1, 3e-2
    closed = torch.stack(hypergradients(train_loss, valid_loss, w, lr, wd))
    autograd = torch.stack(through_unroll(train_loss, valid_loss, w, lr, wd))
    grads = torch.autograd.grad(train_loss(list(w)), w)

    def after_step(rate: float, decay: float) -> float:
        return float(valid_loss([p.detach() - rate * (g + decay * p.detach()) for p, g in zip(w, grads)]))

    h = 1e-5
    central = torch.tensor([(after_step(lr + h, wd) - after_step(lr - h, wd)) / (2 * h),
                            (after_step(lr, wd + h) - after_step(lr, wd - h)) / (2 * h)], dtype=F64)
    assert closed.abs().min() > 1e-4  # both hypergradients are far from zero here: the comparison means something
    torch.testing.assert_close(closed, autograd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(closed, central, rtol=1e-6, atol=1e-9)


def test_direction_is_torch_sgds_step():
    """``direction`` is the step torch.optim.SGD takes (w' = w - lr d) with weight decay, momentum and Nesterov, at
    the first step and with a momentum buffer."""
    torch.manual_seed(1)
    for nesterov in (False, True):
        w = nn.Parameter(torch.randn(5, dtype=F64))
        opt = torch.optim.SGD([w], lr=0.3, momentum=0.9, nesterov=nesterov, weight_decay=0.1)
        for _ in range(2):
            w.grad = torch.randn(5, dtype=F64)
            buf = opt.state.get(w, {}).get("momentum_buffer")
            expected = w.detach() - 0.3 * direction([w.detach()], [w.grad], 0.1, 0.9, nesterov, [buf])[0]
            opt.step()
            torch.testing.assert_close(w.detach(), expected, rtol=1e-14, atol=1e-14)


def test_unrolled_method_matches_differences_through_torch_sgd_with_nesterov_momentum():
    """The method's hypergradients on a run's optimizer (SGD, Nesterov momentum with a buffer, weight decay) equal
    central differences of L_val after torch's own SGD step, in float64; then it steps lr and wd in log space."""
    supernet, strategy, train, valid = tiny_supernet()
    named = weights_of(supernet)
    w = [p for _, p in named]
    lr, wd, mu = 0.05, 0.02, 0.9
    opt = torch.optim.SGD(w, lr=lr, momentum=mu, nesterov=True, weight_decay=wd)
    for batch in (train, valid, train):  # two steps leave a momentum buffer; the third's gradient stays in .grad
        opt.zero_grad()
        strategy.loss(batch).backward()
        if batch is not train or opt.state:
            opt.step()
    state = {i: opt.state[p]["momentum_buffer"].clone() for i, p in enumerate(w)}
    loss = supernet_loss(supernet, strategy)

    def after_step(rate: float, decay: float) -> float:
        params = [p.detach().clone().requires_grad_(True) for p in w]
        step = torch.optim.SGD(params, lr=rate, momentum=mu, nesterov=True, weight_decay=decay)
        for i, p in enumerate(params):
            p.grad = w[i].grad.clone()
            step.state[p] = {"momentum_buffer": state[i].clone()}
        step.step()
        with torch.no_grad():
            return float(loss(dict(zip([n for n, _ in named], params)), valid))

    h = 1e-6
    central = {"grad_lr": (after_step(lr + h, wd) - after_step(lr - h, wd)) / (2 * h),
               "grad_weight_decay": (after_step(lr, wd + h) - after_step(lr, wd - h)) / (2 * h)}
    hyper = Unrolled(hyper_lr=0.5)
    hyper.bind(named, opt, loss)
    with hyper.update(train, valid):
        in_step = opt.param_groups[0]["lr"]
    values = hyper.scalars()
    assert in_step == pytest.approx(values["lr"]) and values["lr"] != lr  # the step ran at the adapted rate
    assert values["grad_lr"] == pytest.approx(central["grad_lr"], rel=1e-6)
    assert values["grad_weight_decay"] == pytest.approx(central["grad_weight_decay"], rel=1e-6)
    assert values["lr"] == pytest.approx(lr * math.exp(-0.5 * lr * central["grad_lr"]), rel=1e-6)
    assert values["weight_decay"] == pytest.approx(wd * math.exp(-0.5 * wd * central["grad_weight_decay"]), rel=1e-6)
    assert opt.param_groups[0]["lr"] == lr  # the schedule's rate is back in the group after the step


def ridge(seed: int = 0):
    """A ridge-regression problem with two weight blocks ("layers"), each with its own decay: its data, the
    minimiser w* of L_T, H and the exact implicit hypergradient dL_val/dlambda_l = -[(H^{-1} g_val)_l . w*_l]."""
    g = torch.Generator().manual_seed(seed)
    n, m, sizes, decays = 200, 50, (3, 4), (0.3, 0.8)
    x, x_val = torch.randn(n, sum(sizes), generator=g, dtype=F64), torch.randn(m, sum(sizes), generator=g, dtype=F64)
    true = torch.randn(sum(sizes), generator=g, dtype=F64)
    y, y_val = x @ true + torch.randn(n, generator=g, dtype=F64), x_val @ true + torch.randn(m, generator=g, dtype=F64)
    lam = torch.cat([torch.full((k,), d, dtype=F64) for k, d in zip(sizes, decays)])
    hessian = x.T @ x / n + torch.diag(lam)
    w_star = torch.linalg.solve(hessian, x.T @ y / n)
    g_val = x_val.T @ (x_val @ w_star - y_val) / m
    exact = (-(torch.linalg.solve(hessian, g_val) * w_star)).split(sizes)
    return x, y, sizes, decays, hessian, w_star, g_val, torch.stack([e.sum() for e in exact])


def test_neumann_hypergradient_converges_to_the_exact_ridge_answer():
    """On ridge regression the Neumann-series hypergradient of per-layer weight decay approaches the exact
    implicit-function answer as terms grow, with step 1/lambda_max(H): monotone, and within 1e-4 (relative) at 20."""
    x, y, sizes, decays, hessian, w_star, g_val, exact = ridge()
    step = 1 / torch.linalg.eigvalsh(hessian).max().item()
    errors = []
    for terms in (0, 1, 2, 5, 10, 20):
        w = [b.clone().requires_grad_(True) for b in w_star.split(sizes)]
        train_loss = 0.5 * ((x @ torch.cat(w) - y) ** 2).mean()
        got = torch.stack(weight_decay_hypergradient(train_loss, list(g_val.split(sizes)), w, decays, terms, step))
        errors.append(((got - exact).norm() / exact.norm()).item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 1e-2 and errors[-1] < 1e-4, errors


def test_implicit_method_gives_each_layer_its_group_and_descends_its_decay():
    """Bound to a two-layer ridge model, the method splits the optimizer into one group per layer and moves each
    decay against its (exact, at w*) hypergradient: log wd_l <- log wd_l - hyper_lr * wd_l * dL_val/dwd_l."""
    x, y, sizes, decays, hessian, w_star, _, _ = ridge()
    model = nn.Sequential(nn.Linear(sizes[0], 1, bias=False), nn.Linear(sizes[1], 1, bias=False)).double()
    for layer, block in zip(model, w_star.split(sizes)):
        layer.weight.data = block[None].clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.5)

    def loss_of(weights, batch):
        xb, yb = batch
        pred = sum(xi @ weights[f"{i}.weight"][0] for i, xi in enumerate(xb.split(sizes, dim=1)))
        return 0.5 * ((pred - yb) ** 2).mean()

    hyper = Implicit(terms=40, step=1 / torch.linalg.eigvalsh(hessian).max().item(), interval=1, hyper_lr=0.1)
    hyper.bind(list(model.named_parameters()), opt, loss_of)
    assert [g["layer"] for g in opt.param_groups] == ["0", "1"]
    for g, d in zip(opt.param_groups, decays):
        g["weight_decay"] = d
    hyper.step((x, y), (x, y), 0.1)  # a valid batch whose gradient is the training one: only the decay term
    expected = [d * math.exp(-0.1 * d * h) for d, h in zip(decays, hyper_grads(x, y, sizes, decays, hessian, w_star))]
    assert list(hyper.decays().values()) == pytest.approx(expected, rel=1e-6)


def hyper_grads(x, y, sizes, decays, hessian, w_star) -> list[float]:
    """The exact implicit hypergradients when the validation set is the training set."""
    g = x.T @ (x @ w_star - y) / len(y)
    return [v.sum().item() for v in (-(torch.linalg.solve(hessian, g) * w_star)).split(sizes)]


def test_hypergradient_descent_on_a_quadratic_matches_its_closed_form():
    """SGD-HD on f = 1/2 t^T A t - b^T t: alpha_1 = alpha_0 + beta g_0^T (I - alpha_0 A) g_0, the whole run equals
    the recursion alpha_t = alpha_{t-1} + beta g_t . g_{t-1}, t_{t+1} = t_t - alpha_t g_t, and each h_t is
    d f(t_t) / d alpha_{t-1} by autograd."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(4, 4, generator=gen, dtype=F64)
    a, b = q @ q.T / 4 + torch.eye(4, dtype=F64), torch.randn(4, generator=gen, dtype=F64)
    theta0, alpha0, beta = torch.randn(4, generator=gen, dtype=F64), 0.05, 0.01
    f = lambda t: 0.5 * t @ a @ t - b @ t  # noqa: E731
    theta = nn.Parameter(theta0.clone())
    opt = torch.optim.SGD([theta], lr=alpha0, momentum=0.0, weight_decay=0.0)
    hyper = HypergradientDescent(beta=beta)
    hyper.bind([("theta", theta)], opt, lambda weights, batch: torch.zeros(()))
    rates, hs = [], []
    for _ in range(6):
        opt.zero_grad()
        f(theta).backward()
        with hyper.update(None, None):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
        hs.append(hyper.sums.get("lr"))
        hyper.sums = {}
    g0 = a @ theta0 - b
    assert rates[1] == pytest.approx(alpha0 + beta * g0 @ (torch.eye(4, dtype=F64) - alpha0 * a) @ g0, rel=1e-12)
    t, alpha, g_prev, expected = theta0.clone(), alpha0, None, []
    for _ in range(6):
        g = a @ t - b
        if g_prev is not None:
            alpha = alpha + beta * float(g @ g_prev)
        expected.append(alpha)
        t, g_prev = t - alpha * g, g
    assert rates == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(theta.detach(), t, rtol=1e-12, atol=1e-12)
    rate = torch.tensor(alpha0, dtype=F64, requires_grad=True)  # h_1 = d f(t_0 - alpha g_0) / d alpha at alpha_0
    (autograd,) = torch.autograd.grad(f(theta0 - rate * g0), rate)
    assert hs[0] is None and hs[1] == pytest.approx(float(autograd), rel=1e-12)


@pytest.mark.parametrize("kwargs, match", [({"adapt": ["momentum"]}, "hypergradient.adapt"),
                                           ({"hyper_lr": 0}, "hypergradient.hyper_lr")])
def test_bad_settings_are_refused_in_one_line(kwargs, match):
    """A bad setting raises one ValueError naming it and the valid values."""
    with pytest.raises(ValueError, match=match) as err:
        Unrolled(**kwargs)
    assert "\n" not in str(err.value)


TINY_FINAL = ["genotype=DARTS_V2", "model.init_channels=4", "model.layers=3", "epochs=2", "batch_size=8",
              "steps_per_epoch=2", "device=cpu", "dataset=imagefolder"]


def test_retraining_adapts_lr_and_weight_decay_on_the_held_out_split(cifar_mini, tmp_path):
    """train_final.py hypergradient=unrolled on cifar10-mini logs hyper/lr, hyper/weight_decay and their
    hypergradients per epoch in TensorBoard and result.json; without a held-out split it stops with one line."""
    run = tmp_path / "run"
    run_entry("train_final.py", run, *TINY_FINAL, f"dataset.root={cifar_mini}", "valid_portion=0.1",
              "hypergradient=unrolled", "hypergradient.hyper_lr=1")
    record = read_json(run / "result.json")["hypergradient"]
    assert record["method"] == "unrolled" and [e["epoch"] for e in record["epochs"]] == [0, 1]
    assert record["weight_decay"] != 3e-4 and record["lr"] == record["epochs"][-1]["lr"]
    assert all(math.isfinite(e["grad_lr"]) and e["grad_weight_decay"] != 0 for e in record["epochs"])
    tags = tensorboard_tags(run)["scalars"]
    assert {"hyper/lr", "hyper/weight_decay", "hyper/grad_lr", "hyper/grad_weight_decay"} <= set(tags)
    proc = run_entry("train_final.py", tmp_path / "refused", *TINY_FINAL, f"dataset.root={cifar_mini}",
                     "hypergradient=unrolled", check=False)
    message = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and "hypergradient=unrolled needs a held-out split" in message
    assert "valid_portion" in message


def test_a_resumed_retraining_continues_with_its_learned_rate(cifar_mini, tmp_path, monkeypatch):
    """A retraining with hypergradient=hd stopped after epoch 1 of 2 resumes with its learned rate and last direction
    (from the checkpoint) and ends with the uninterrupted run's rates."""
    from hydra import compose, initialize_config_dir

    from darts.app.retrain import build_run

    with initialize_config_dir(config_dir=str(ROOT / "darts" / "conf"), version_base="1.3"):
        cfg = compose(config_name="final", overrides=[*TINY_FINAL, f"dataset.root={cifar_mini}", "progress=false",
                                                      "hypergradient=hd", "hypergradient.beta=0.01"])
    reference = build_run(cfg, tmp_path / "reference").run()["hypergradient"]
    real_train_epoch, calls = training.train_epoch, []

    def stop_at_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", stop_at_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        build_run(cfg, tmp_path / "resumed").run()
    monkeypatch.undo()
    run = build_run(cfg, tmp_path / "resumed")
    run.resume()
    resumed = run.run()["hypergradient"]
    assert reference["lr"] != 0.025 and [e["epoch"] for e in resumed["epochs"]] == [0, 1]
    for got, expected in zip(resumed["epochs"], reference["epochs"]):
        assert got == pytest.approx(expected, rel=1e-6)


def test_search_steps_per_layer_weight_decay_with_the_architecture(cifar_mini, tmp_path):
    """A tiny toy-space search with hypergradient=implicit steps every layer's weight decay on the arch step's
    batches, and records them per epoch (TensorBoard hyper/..., result.json)."""
    run = tmp_path / "run"
    run_entry("train_search.py", run, "search_space=toy", "dataset=imagefolder", f"dataset.root={cifar_mini}",
              "epochs=2", "steps_per_epoch=2", "batch_size=8", "device=cpu", "hypergradient=implicit",
              "hypergradient.interval=1", "hypergradient.terms=2", "hypergradient.hyper_lr=100")
    record = read_json(run / "result.json")["hypergradient"]
    decays = record["weight_decay_per_layer"]
    assert record["method"] == "implicit" and len(decays) > 2 and len(set(decays.values())) == len(decays)
    assert [e["epoch"] for e in record["epochs"]] == [0, 1] and record["epochs"][0]["grad_weight_decay_norm"] > 0
    assert {"hyper/weight_decay", "hyper/grad_weight_decay", "hyper/lr"} <= set(tensorboard_tags(run)["scalars"])
