"""Paper presets (conf/experiment/*.yaml, selected with +experiment=<name>): each one composes with the entry point it
belongs to, its group choices and keys reach the composed config, its targets import, it records the paper's seeds and
published number, and one preset per entry point runs end to end. Presets are discovered from the folder."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED_DATA, read_json, run_entry, targets
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from darts.runs.reader import resolve_genotype
from darts.settings import SGD
from darts.strategies.base import Strategy
from darts.strategies.discrete.base import DiscreteStrategy

CONF = Path(__file__).resolve().parents[1] / "darts" / "conf"
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
TABLE = SHARED_DATA / "nb201" / "nb201_accuracies.csv"
# values for mandatory (???) keys, by key; a preset with another mandatory key needs one here
DATA = {"evaluator.path": TABLE, "benchmark.path": TABLE, "dataset.root": SHARED_DATA / "cifar10-mini"}
PUBLISHED = {"metric", "value", "std", "source"}
NB201_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
TINY = ["dataset=fake", "dataset.num_train=32", "dataset.num_test=16", "dataset.image_size=8", "epochs=1",
        "steps_per_epoch=1", "batch_size=8", "model.init_channels=4", "model.cells_per_stage=1", "device=cpu"]
# one preset per entry point, run end to end at tiny scale (extra overrides it needs)
SMOKE = {"nb201_gdas": ("train_search.py", [f"benchmark.path={TABLE}"]),
         "retrain_nb201": ("train_final.py", [f"genotype='{NB201_CELL}'"])}


def entry_config(preset: str) -> str:
    """The primary config a preset overlays: final.yaml for retraining recipes (``retrain_*``), else search.yaml."""
    return "final" if preset.startswith("retrain_") else "search"


def preset_yaml(preset: str) -> DictConfig:
    """The preset's file as written (its defaults list and keys)."""
    return OmegaConf.load(CONF / "experiment" / f"{preset}.yaml")


def compose_preset(preset: str) -> DictConfig:
    """The preset composed as its entry point composes it, mandatory values filled from DATA."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(entry_config(preset), [f"+experiment={preset}"])
    for key in OmegaConf.missing_keys(cfg):
        if key not in DATA:
            raise AssertionError(f"{preset}: {key} is mandatory (???); add a test value for it to DATA in {__file__}")
        OmegaConf.update(cfg, key, str(DATA[key]))
    return cfg


def leaves(node: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value of every leaf of a plain dict (lists are leaves)."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def group_choices(preset: str) -> dict[str, str | None]:
    """The config group options a preset's defaults list overrides (``override /strategy: gdas``)."""
    choices = {}
    for item in preset_yaml(preset).get("defaults", []):
        for key, option in item.items():
            assert key.startswith("override /"), f"{preset}: defaults entry {key!r} is not an override of a group"
            choices[key.removeprefix("override /")] = option
    return choices


def is_number(value) -> bool:
    """A float or an int, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def option_target(group: str, option: str) -> str | None:
    """The _target_ a group option builds (a _global_ option, e.g. strategy/gdas.yaml, keeps it under its group)."""
    node = OmegaConf.load(CONF / group / f"{option}.yaml")
    return OmegaConf.select(node, f"{group}._target_") or node.get("_target_")


def cfg_choice(preset: str, group: str) -> str:
    """The option of ``group`` a preset composes with: its override, else the primary config's default."""
    choices = group_choices(preset)
    if group in choices:
        return choices[group]
    primary = OmegaConf.load(CONF / f"{entry_config(preset)}.yaml")
    return next(d[group] for d in primary.defaults if isinstance(d, DictConfig) and group in d)


def test_presets_are_discovered():
    """conf/experiment holds presets for both entry points."""
    assert {entry_config(p) for p in PRESETS} == {"search", "final"}, PRESETS


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_with_its_choices_and_keys(preset):
    """The preset composes with its entry point's config into the global package; every group it overrides builds
    that option's target (a strategy's run kind included), every key it sets keeps its value, the whole config
    resolves, passes the entry point's setting checks, and every _target_ imports."""
    cfg = compose_preset(preset)
    assert "experiment" not in cfg, f"{preset} lacks '# @package _global_' (its keys land under 'experiment')"
    for group, option in group_choices(preset).items():
        if option is not None:
            assert cfg[group]._target_ == option_target(group, option), (preset, group, option)
    if "strategy" in cfg:  # the strategy's class selects its run kind (darts.app.search.RUN_KINDS)
        assert issubclass(get_object(cfg.strategy._target_), (Strategy, DiscreteStrategy))
    composed = leaves(OmegaConf.to_container(cfg, resolve=False))
    for key, value in leaves(OmegaConf.to_container(preset_yaml(preset), resolve=False)).items():
        if key != "defaults" and value != "???":
            assert composed[key] == value, f"{preset}: {key} composes to {composed[key]!r}, the preset sets {value!r}"
    OmegaConf.resolve(cfg)
    SGD(**cfg.optimizer)  # the preset's optimizer settings are in range (its owner's check)
    for target in targets(cfg):
        assert get_object(target) is not None, target


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_records_seeds_and_published_number(preset):
    """``seeds`` is a non-empty list of distinct non-negative integers; ``published`` names a metric, a number, its
    std (a number >= 0, or null where the paper gives none) and its source."""
    node = OmegaConf.to_container(preset_yaml(preset))
    seeds, published = node.get("seeds"), node.get("published")
    assert isinstance(seeds, list) and seeds and len(set(seeds)) == len(seeds), (preset, seeds)
    assert all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds), (preset, seeds)
    assert isinstance(published, dict) and set(published) == PUBLISHED, (preset, published)
    assert is_number(published["value"]), published
    assert published["std"] is None or is_number(published["std"]) and published["std"] >= 0, published
    assert all(isinstance(published[k], str) and published[k].strip() for k in ("metric", "source")), published


@pytest.mark.parametrize("preset", [p for p in PRESETS if entry_config(p) == "final"])
def test_retraining_preset_genotype_belongs_to_its_space(preset):
    """A retraining preset's genotype is read by its space (a published name or the space's text)."""
    cfg = compose_preset(preset)
    space = instantiate(cfg.search_space)
    assert space.to_text(resolve_genotype(cfg.genotype, space))


def test_nb201_gdas_composes_gdas_in_nb201():
    """nb201_gdas builds GDAS in the NB201 space with tracked BN statistics and NB201's 240 epochs."""
    if "nb201_gdas" not in PRESETS:
        pytest.skip("no nb201_gdas preset")
    cfg = compose_preset("nb201_gdas")
    assert cfg.search_space._target_ == "search_spaces.nb201.NB201Space" and cfg.search_space.track_running_stats
    assert cfg.strategy._target_ == "darts.strategies.gradient.gdas.GDAS" and issubclass(
        get_object(cfg.strategy._target_), Strategy)  # a gradient strategy: a bilevel search (SearchRun)
    assert cfg.epochs == 240 and cfg.benchmark.path == str(TABLE)


@pytest.mark.parametrize("preset", sorted(SMOKE))
def test_preset_runs_end_to_end(preset, tmp_path):
    """One preset per entry point runs a one-step run from the command line; its run directory holds the published
    number and seeds (config.yaml) next to the measured result (result.json: the search's benchmark columns, the
    retraining's test accuracy)."""
    if preset not in PRESETS:
        pytest.skip(f"no {preset} preset")
    script, extra = SMOKE[preset]
    if any(str(TABLE) in arg for arg in extra) and not TABLE.is_file():
        pytest.skip(f"the NB201 table is not at {TABLE} (see ../shared/data/README.md)")
    run_entry(script, tmp_path / "run", f"+experiment={preset}", *TINY, *extra)
    result = read_json(tmp_path / "run" / "result.json")
    saved, preset_node = OmegaConf.load(tmp_path / "run" / "config.yaml"), preset_yaml(preset)
    assert saved.published == preset_node.published and saved.seeds == preset_node.seeds
    if entry_config(preset) == "search":
        assert saved.published.metric in result["benchmark"], result
    else:
        assert 0 <= result["test_accuracy"] <= 100, result
