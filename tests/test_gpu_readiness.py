"""The device-specific paths, tested on CPU with stand-ins for the GPU: resume onto another device and with fewer
GPUs, IEEE fp32 in the unrolled step, one sample per arch step, no validation syncs, backend settings, and the
discrete evaluators' precision. tests/test_cuda.py runs the same paths on a GPU when there is one."""
from __future__ import annotations

import logging
from functools import partial

import pytest
import torch
import torch.nn as nn

import darts.strategies.gradient.drnas as drnas
from darts.data.datasets import fake
from darts.evaluators import TrainEvaluator
from darts.runs import checkpoint
from darts.runs.search import SearchRun
from darts.context import Context, configure_backends
from darts.data.search_split import SearchData
from darts.strategies.gradient.darts import DARTS
from darts.strategies.gradient.drnas import DrNAS, FixedDirichlet
from darts.strategies.gradient.gdas import GDAS
from darts.supernet import SupernetOptions
from search_spaces.darts import DartsSpace
from search_spaces.toy import ToySpace

CPU = torch.device("cpu")


def tiny_data(device: torch.device = CPU) -> SearchData:
    """Synthetic 8x8 images, split in halves."""
    return SearchData(lambda: fake(num_train=32, num_test=8, image_size=8), 0.5, 0, Context(device))


@pytest.fixture
def backends():
    """Restore the process-wide backend settings a test changes."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled())
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
     torch.backends.cudnn.deterministic) = saved[:4]
    torch.use_deterministic_algorithms(saved[4])


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_a_checkpoint_resumes_onto_another_device(tmp_path):
    """A CPU checkpoint resumes into a run on the meta device (a stand-in for CUDA): the tensors are loaded onto the
    CPU, each object copies its state to its own device, and the CPU random state is restored on the CPU."""
    SearchRun(tmp_path, ToySpace(4), tiny_data(), DARTS, Context(), epochs=1, batch_size=4).run()
    meta = torch.device("meta")
    run = SearchRun(tmp_path, ToySpace(4), tiny_data(), DARTS, Context(device=meta), epochs=2, batch_size=4)
    run.resume()
    assert run.start_epoch == 1 and next(run.supernet.parameters()).device.type == "meta"
    assert all(s.device.type == "meta" for st in run.optimizer.state.values() for s in st.values()
               if isinstance(s, torch.Tensor))


def test_more_gpu_random_states_than_visible_gpus_resume_with_a_warning(caplog):
    """A checkpoint saved with the random states of 2 GPUs restores on a machine with fewer (here none): the CPU state
    is restored exactly, the missing GPUs are named in a warning, nothing raises."""
    state = {"cpu": torch.get_rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8)] * 2}
    expected = torch.rand(3)
    torch.set_rng_state(state["cpu"])
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with caplog.at_level(logging.WARNING):
        checkpoint.set_rng_state(state)
    assert torch.equal(torch.rand(3), expected)
    assert visible >= 2 or "random states of 2 GPUs" in caplog.text


def test_the_unrolled_step_runs_in_ieee_fp32_and_restores_tf32(backends):
    """With TF32 allowed, every convolution of the unrolled step sees it disallowed, and it is allowed again after."""
    torch.manual_seed(0)
    space = DartsSpace(4, 3)
    supernet = space.build_supernet(10)
    strategy = DARTS(supernet, space, order=2)
    seen = []
    for m in supernet.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_pre_hook(lambda *_: seen.append((torch.backends.cudnn.allow_tf32,
                                                                torch.backends.cuda.matmul.allow_tf32)))
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    batch = (torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))
    strategy.arch_step(batch, batch, torch.optim.SGD(supernet.weight_parameters(), 0.025, momentum=0.9))
    assert seen and set(seen) == {(False, False)}
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32


def test_backends_follow_precision_and_deterministic(backends):
    """fp32 (and auto) forbid TF32, tf32 allows it; deterministic=true turns on deterministic algorithms and turns off
    cuDNN autotuning, which is on otherwise."""
    configure_backends("fp32", deterministic=False)
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    configure_backends("tf32", deterministic=True)
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert not torch.backends.cudnn.benchmark and torch.are_deterministic_algorithms_enabled()


def test_gdas_refuses_the_second_order_step_and_compile():
    """GDAS defines a first-order step only, and its per-step sampled modules would recompile every step."""
    space = ToySpace(4)
    with pytest.raises(ValueError, match="strategy.order=2 is not defined for GDAS"):
        GDAS(space.build_supernet(10), space, order=2)
    with pytest.raises(ValueError, match="compile=true is not supported with strategy=gdas"):
        GDAS(space.make_supernet(10, Context(compile=True), SupernetOptions()), space)


def test_drnas_uses_one_dirichlet_draw_per_second_order_arch_step():
    """Every mixing of DrNAS's unrolled step is the same draw (a fresh one per arch step), and that fixed draw has
    exactly rsample's pathwise gradient."""
    torch.manual_seed(0)
    space = ToySpace(4)
    supernet = space.build_supernet(10)
    strategy = DrNAS(supernet, space, order=2)
    draws = []
    mixing = strategy.mixing
    strategy.mixing = lambda: draws.append(mixing()["cell"].weights.detach().clone()) or mixing()
    batch = (torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))
    optimizer = torch.optim.SGD(supernet.weight_parameters(), 0.025, momentum=0.9)
    strategy.arch_step(batch, batch, optimizer)
    first = len(draws)
    strategy.arch_step(batch, batch, optimizer)
    assert first >= 4 and all(torch.equal(d, draws[0]) for d in draws[:first])
    assert not torch.equal(draws[first], draws[0])
    c = torch.rand(3, 4).add(0.5).requires_grad_()
    g = torch.randn(3, 4)
    torch.manual_seed(1)
    (torch.distributions.Dirichlet(c).rsample() * g).sum().backward()
    reference, c.grad = c.grad.clone(), None
    torch.manual_seed(1)
    (FixedDirichlet.apply(c, torch.distributions.Dirichlet(c.detach()).sample()) * g).sum().backward()
    torch.testing.assert_close(c.grad, reference, rtol=1e-6, atol=1e-7)


def test_drnas_builds_its_dirichlets_without_validation(monkeypatch):
    """DrNAS's concentrations are positive by construction, so its Dirichlets skip argument validation (a host sync
    on CUDA at every construction)."""
    built = []

    class Recording(torch.distributions.Dirichlet):
        def __init__(self, concentration, validate_args=None):
            built.append(validate_args)
            super().__init__(concentration, validate_args=validate_args)

    monkeypatch.setattr(drnas, "Dirichlet", Recording)
    space = ToySpace(4)
    strategy = DrNAS(space.build_supernet(10), space, reg_type="kl")
    strategy.mixing()
    strategy.arch_penalty()
    with strategy.one_sample():
        strategy.mixing()
    assert built and set(built) == {False}


def test_the_train_evaluator_honours_precision():
    """evaluator=train trains and scores under bf16 autocast when the run's precision is bf16."""
    dtypes = set()
    space = ToySpace(4)
    original = space.build_network

    def hooked(genotype, num_classes):
        net = original(genotype, num_classes)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(lambda mod, args, out: dtypes.add(out.dtype))
        return net

    space.build_network = hooked
    evaluator = TrainEvaluator(space, tiny_data(), epochs=1, batch_size=4, steps_per_epoch=1, eval_batches=1,
                               context=Context.of("cpu", precision="bf16", channels_last=False))
    evaluator.prepare()
    evaluator.evaluate(space.sample(torch.Generator().manual_seed(0)), 0)
    assert dtypes == {torch.bfloat16}


def test_search_run_accepts_a_strategy_partial():
    """(a guard for the tests above) strategies are given to runs as partials, e.g. DrNAS order 2."""
    run_strategy = partial(DrNAS, order=2)
    space = ToySpace(4)
    assert run_strategy(supernet=space.build_supernet(10), space=space).order == 2
