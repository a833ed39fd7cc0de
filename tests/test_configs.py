"""Every YAML in conf/ composes, its targets import, and the cheap ones build (so new configs are tested)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

import train_final  # noqa: F401  (registers the run-dir resolvers)
import train_search  # noqa: F401

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = {"darts": ["model.init_channels=8", "model.layers=3"], "nb201": ["model.init_channels=8", "model.cells_per_stage=1"]}


def options(group: str) -> list[str]:
    """The option names of a config group (its YAML files)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose conf/<name>.yaml with overrides, as the entry point would."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(name, overrides)


def targets(node) -> list[str]:
    """Every _target_ in a config tree."""
    if isinstance(node, DictConfig):
        own = [node["_target_"]] if "_target_" in node else []
        return own + [t for k in node if k != "_target_" for t in targets(node._get_node(k))]
    if isinstance(node, ListConfig):
        return [t for v in node for t in targets(v)]
    return []


def check_targets(cfg: DictConfig) -> None:
    """Each _target_ names an importable object."""
    for target in targets(cfg):
        assert get_object(target) is not None, target


@pytest.mark.parametrize("space", options("search_space"))
@pytest.mark.parametrize("strategy", options("strategy"))
def test_search_configs_compose_and_build(strategy, space):
    """Each strategy composes with each space; gradient strategies build and run one forward pass."""
    extra = ["evaluator=tabular", "evaluator.path=x.csv"] if strategy in ("random", "evolution") else []
    cfg = compose_config("search", [f"strategy={strategy}", f"search_space={space}", *TINY[space], *extra])
    OmegaConf.resolve(cfg)
    check_targets(cfg)
    if cfg.run._target_ != "darts.runs.search.SearchRun":  # discrete: built with an evaluator (test_discrete.py)
        return
    torch.manual_seed(0)
    space_obj = instantiate(cfg.search_space)
    supernet = space_obj.build_supernet(10)
    strategy_obj = instantiate(cfg.strategy, supernet=supernet, space=space_obj)
    assert supernet(torch.randn(2, 3, 16, 16), strategy_obj.mixing()).shape == (2, 10)
    space_obj.parse(space_obj.to_text(strategy_obj.genotype()))


@pytest.mark.parametrize("dataset", options("dataset"))
def test_dataset_and_recipe_configs_compose(dataset):
    """Each dataset composes in search and retraining, and selects the retraining recipe of its name."""
    root = ["dataset.root=/nonexistent"] if dataset in ("imagefolder", "imagenet") else []
    check_targets(compose_config("search", [f"dataset={dataset}", *root]))
    final = compose_config("final", [f"dataset={dataset}", *root])
    check_targets(final)
    assert (final.model.layers, final.model.init_channels) == ((14, 48) if dataset == "imagenet" else (20, 36))


def test_fake_dataset_instantiates():
    """The synthetic dataset config builds a train/test pair."""
    data = instantiate(compose_config("search", ["dataset=fake"]).dataset)
    assert data.num_classes == 10 and len(data.train) == 512


@pytest.mark.parametrize("evaluator", options("evaluator"))
def test_evaluator_configs_compose(evaluator):
    """Each evaluator composes with each discrete strategy."""
    for strategy in ("random", "evolution"):
        cfg = compose_config("search", [f"strategy={strategy}", f"evaluator={evaluator}", "search_space=nb201",
                                        "++evaluator.path=x.csv"])
        check_targets(cfg)
