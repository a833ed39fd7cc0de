"""Every YAML in conf/ composes, its targets import, and it runs: strategies, spaces, evaluators, datasets and
recipes are discovered from the config folders (the package's and the plugins' of ``DARTS_PLUGINS``), so a new YAML
is tested without editing this file: ``DARTS_PLUGINS=/path/to/plugin pytest tests/test_configs.py``."""
from __future__ import annotations

from functools import cache, partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

import darts.app.retrain as train_final
import darts.app.search as train_search
from conftest import SHARED_DATA, read_json, targets
from darts.app import plugins
from darts.strategies.base import Strategy, supernet_options
from darts.strategies.discrete.base import DiscreteStrategy

SEARCH_PATH = plugins.activate()  # the plugins' modules importable, their configs on the search path
SMOKE_SPACE = "toy"  # every strategy smoke-runs in the toy space (search_spaces/toy.py)
NO_SUPERNET = {"nats_sss"}  # spaces searched by discrete strategies only (their make_supernet refuses)
# values for mandatory (???) keys, by key; a new mandatory key needs one here
DATA = {"evaluator.path": SHARED_DATA / "nb201" / "nb201_accuracies.csv", "dataset.root": SHARED_DATA / "cifar10-mini"}
FAKE = ["dataset=fake", "dataset.num_train=48", "dataset.num_test=16", "dataset.image_size=8"]
SMOKE = ["progress=false", "device=cpu", "batch_size=8", "steps_per_epoch=1", "epochs=1"]
# evaluator keys that shorten a smoke run, by evaluator (one without an entry runs with its defaults)
TINY_EVALUATOR = {"train": ["evaluator.epochs=1", "evaluator.batch_size=8", "evaluator.eval_batches=1"],
                  "supernet": ["evaluator.epochs=1", "evaluator.batch_size=8", "evaluator.eval_batches=1"],
                  "zero_cost": ["evaluator.batch_size=8"]}


def options(group: str) -> list[str]:
    """The option names of a config group, the plugins' included (sub-folders give ``a/b``)."""
    return sorted(plugins.options(group))


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose conf/<name>.yaml with overrides, as the entry point would, mandatory values filled from DATA; a
    strategy with a weight-only warm-up runs its arch steps from the first epoch."""
    with initialize_config_dir(str(plugins.CONF), version_base="1.3"):
        cfg = compose(name, [*overrides, *SEARCH_PATH])
    for key in OmegaConf.missing_keys(cfg):
        if key not in DATA:
            raise AssertionError(f"{key} is mandatory (???); add a test value for it to DATA in {__file__}")
        OmegaConf.update(cfg, key, str(DATA[key]))
    if "arch_start_epoch" in cfg.get("strategy", {}):
        cfg.strategy.arch_start_epoch = 0
    return cfg


def space_of(cfg: DictConfig):
    """The configuration's space at its size."""
    return instantiate(cfg.search_space, **cfg.model)


def check_targets(cfg: DictConfig) -> None:
    """Each _target_ names an importable object."""
    for target in targets(cfg):
        assert get_object(target) is not None, target


@cache
def strategy_class(strategy: str) -> type:
    """The class a strategy config builds."""
    return get_object(compose_config("search", [f"strategy={strategy}"]).strategy._target_)


def with_evaluator(strategy: str) -> list[str]:
    """``evaluator=train`` for a discrete strategy (it needs one), nothing for a gradient strategy."""
    return ["evaluator=train"] if issubclass(strategy_class(strategy), DiscreteStrategy) else []


@pytest.mark.parametrize("space", options("search_space"))
@pytest.mark.parametrize("strategy", options("strategy"))
def test_search_configs_compose_and_build(strategy, space):
    """Each strategy composes with each space at the space's own size; gradient strategies build the supernet they
    ask for and run one forward pass with their mixing weights, whose genotype round-trips through the space's text;
    a space without a supernet (discrete search only) refuses to build one in one line naming itself."""
    cfg = compose_config("search", [f"strategy={strategy}", f"search_space={space}", *with_evaluator(strategy)])
    OmegaConf.resolve(cfg)
    check_targets(cfg)
    if not issubclass(strategy_class(strategy), Strategy):
        return  # a discrete strategy: run below with every evaluator
    torch.manual_seed(0)
    space_obj = space_of(cfg)
    make = instantiate(cfg.strategy, _partial_=True)
    if space in NO_SUPERNET:
        with pytest.raises(ValueError, match=f"search_space={space} has no weight-sharing supernet") as err:
            space_obj.build_supernet(10, options=supernet_options(make))
        assert "\n" not in str(err.value)
        return
    supernet = space_obj.build_supernet(10, options=supernet_options(make))
    strategy_obj = make(supernet=supernet, space=space_obj)
    assert supernet(torch.randn(2, 3, 8, 8), strategy_obj.mixing()).shape == (2, 10)
    assert space_obj.parse(space_obj.to_text(strategy_obj.genotype())) == strategy_obj.genotype()


@pytest.mark.parametrize("strategy", [s for s in options("strategy") if issubclass(strategy_class(s), Strategy)])
def test_every_gradient_strategy_runs_a_search(strategy, tmp_path):
    """Each gradient strategy runs a one-step search through train_search.search in the toy space and writes its
    result, the final genotype and a checkpoint."""
    cfg = compose_config("search", [f"strategy={strategy}", f"search_space={SMOKE_SPACE}", *FAKE, *SMOKE])
    result = train_search.search(cfg, tmp_path)
    assert read_json(tmp_path / "result.json") == result and (tmp_path / "checkpoint.pt").is_file()
    assert space_of(cfg).parse(result["genotype"])


def fitting_run(strategy: str, evaluator: str) -> DictConfig:
    """The config of a tiny discrete run with this evaluator in the first space it accepts (toy first)."""
    spaces = [SMOKE_SPACE, *(s for s in options("search_space") if s != SMOKE_SPACE)]
    for space in spaces:
        cfg = compose_config("search", [f"strategy={strategy}", f"evaluator={evaluator}", f"search_space={space}",
                                        *FAKE, "progress=false", "device=cpu", "steps_per_epoch=1",
                                        "strategy.budget=2", *TINY_EVALUATOR.get(evaluator, [])])
        try:
            instantiate(cfg.evaluator)(space=space_of(cfg), data=None)
        except ValueError as err:
            if "not a genotype of" in str(err):
                continue  # the evaluator scores another space (a table of another space)
            raise
        return cfg
    raise AssertionError(f"evaluator={evaluator} accepts none of the spaces {spaces}")


@pytest.mark.parametrize("evaluator", options("evaluator"))
@pytest.mark.parametrize("strategy", [s for s in options("strategy") if issubclass(strategy_class(s), DiscreteStrategy)])
def test_every_discrete_strategy_runs_with_every_evaluator(strategy, evaluator, tmp_path):
    """Each discrete strategy runs a 2-evaluation search with each evaluator (in the first space the evaluator
    accepts) and writes a history of 2 records and its result; a multi-fidelity one (Hyperband, BOHB) is refused by
    the supernet and zero-cost evaluators, which have no fidelity."""
    if not DATA["evaluator.path"].is_file():
        pytest.skip(f"the NB201 table is not at {DATA['evaluator.path']} (see ../shared/data/README.md)")
    cfg = fitting_run(strategy, evaluator)
    if strategy_class(strategy).multi_fidelity and not get_object(cfg.evaluator._target_).takes_fidelity:
        with pytest.raises(ValueError, match="takes no fidelity"):
            train_search.search(cfg, tmp_path)
        return
    result = train_search.search(cfg, tmp_path)
    assert result["evaluations"] == 2 and len((tmp_path / "history.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("dataset", options("dataset"))
def test_datasets_compose_and_load(dataset):
    """Each dataset composes in search and retraining; those available offline load a batch of images."""
    cfg = compose_config("search", [f"dataset={dataset}"])
    check_targets(cfg)
    check_targets(compose_config("final", [f"dataset={dataset}"]))
    if "download" in cfg.dataset:
        cfg.dataset.download = False
    try:
        data = instantiate(cfg.dataset)
    except InstantiationException as err:  # needs data that is not on this machine (e.g. CIFAR-10, ImageNet)
        if not isinstance(err.__cause__, FileNotFoundError):
            raise
        pytest.skip(f"dataset={dataset} is not available here: {str(err.__cause__)[:200]}")
    x, y = next(iter(data.train.loader(4, torch.device("cpu"), train=True)))
    assert x.shape[:2] == (4, 3) and y.shape == (4,) and data.num_classes >= 2


def recipes() -> list[tuple[str, str]]:
    """(space, dataset) of every retraining recipe: each space's own (conf/recipe/<space>.yaml, with CIFAR-10) and
    each dataset's (conf/recipe_for_dataset/<space>_<dataset>.yaml)."""
    spaces = options("search_space")
    for_dataset = [next((s, r[len(s) + 1:]) for s in spaces if r.startswith(f"{s}_")) for r in options("recipe_for_dataset")]
    return [(space, "cifar10") for space in options("recipe")] + for_dataset


@pytest.mark.parametrize("space, dataset", recipes())
def test_every_recipe_composes_and_builds_its_network(space, dataset):
    """Each recipe composes with its space and dataset, and builds its network at the space's size from a sampled
    genotype."""
    cfg = compose_config("final", [f"search_space={space}", f"dataset={dataset}"])
    check_targets(cfg)
    space_obj = space_of(cfg)
    genotype = space_obj.sample(torch.Generator().manual_seed(0))
    net = partial(get_object(cfg.network._target_), **space_obj.network_sizes())(genotype=genotype, num_classes=10)
    assert sum(p.numel() for p in net.parameters()) > 0
    instantiate(cfg.scheduler)


@pytest.mark.parametrize("space", options("search_space"))
def test_every_space_has_a_cifar10_recipe_and_retrains(space, tmp_path):
    """Each space retrains a sampled genotype through train_final.build_run for one step of its own CIFAR-10
    recipe (4 initial channels and 32x32 synthetic images; 8x8 images where the genotype sizes the network) and
    reports it."""
    cfg = compose_config("final", [f"search_space={space}", "dataset=fake", "dataset.num_train=16",
                                   "dataset.num_test=8", "epochs=1", "steps_per_epoch=1", "batch_size=8",
                                   "progress=false", "device=cpu"])
    if "init_channels" in cfg.model:
        cfg.model.init_channels = 4
    else:  # the genotype sizes the network (the NATS size space): smaller images instead
        cfg.dataset.image_size = 8
    space_obj = space_of(cfg)
    genotype_text = space_obj.to_text(space_obj.sample(torch.Generator().manual_seed(0)))
    cfg.genotype = genotype_text
    result = train_final.build_run(cfg, tmp_path).run()
    assert 0 <= result["test_accuracy"] <= 100 and result["genotype"] == genotype_text


@pytest.mark.parametrize("method", options("hypergradient"))
def test_every_hypergradient_composes_in_search_and_retraining(method):
    """Each hypergradient option composes in a search and a retraining and builds its method (``none``: no method),
    whose config name is the option's."""
    from darts.app.config import hypergradient

    for name in ("search", "final"):
        cfg = compose_config(name, [f"hypergradient={method}"])
        check_targets(cfg)
        built = hypergradient(cfg)
        assert (built is None) if method == "none" else built.name == method


@pytest.mark.parametrize("preset", options("tune"))
def test_tuning_presets_compose_with_a_valid_study(preset):
    """Each tuning preset (conf/tune/, ``-m +tune=<name>``; ``retrain_*`` for train_final.py) composes with its entry
    point and the project's sweeper; its space, sampler, pruner and objectives build, and a retraining preset scores
    trials on a held-out split, never on the test set."""
    pytest.importorskip("optuna")
    from hydra_plugins.darts_sweepers.overrides import parse

    from darts.tuning import algorithms
    from darts.tuning.space import check
    from darts.tuning.study import Objective

    entry = "final" if preset.startswith("retrain_") else "search"
    with initialize_config_dir(str(plugins.CONF), version_base="1.3"):
        cfg = compose(entry, [f"+tune={preset}", *SEARCH_PATH], return_hydra_config=True)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper)
    assert get_object(sweeper["_target_"]) is not None
    space, fixed = parse([], sweeper["params"])
    assert space and not fixed and all(check(k, p) for k, p in space.items())
    assert all(OmegaConf.select(cfg, key) is not None for key in space), space  # every tuned key is a setting
    algorithms.sampler(sweeper["sampler"], 0, space, sweeper["sampler_args"])
    algorithms.pruner(sweeper["pruner"], sweeper["pruner_args"])
    objectives = [Objective(k, v) for k, v in sweeper["objectives"].items()]
    assert not any("test" in o.metric for o in objectives), objectives
    if entry == "final":
        assert cfg.valid_portion > 0
