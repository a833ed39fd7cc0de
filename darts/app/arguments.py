"""The command line, checked before Hydra starts: a bad one ends with one line on stderr and status 1 (Hydra would
print several lines and a hint about HYDRA_FULL_ERROR, or fail inside its own error formatting).

- A config group option that does not exist (``strategy=foo``) names the valid ones.
- ``resume=DIR`` must name a run; on resume a setting is given as written (``strategy.budget=120``), whatever the
  default composition holds: the run's own saved configuration is what it resumes with.
- Plugins (``DARTS_PLUGINS``, ``darts.app.plugins``) add their config folders to the search path.
- The configuration is composed once here, so that a composition error (a key that does not exist, a bad value
  syntax) is one line too; a key that its mapping lacks (``constraint.flop=3``) names the mapping's keys.
"""
from __future__ import annotations

import re
import sys

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from darts.app import plugins
from darts.app.rundir import record_sweep
from darts.runs.directory import find_resume_dir

NOISE = ("full_key:", "object_type", "reference_type", "Set the environment variable HYDRA_FULL_ERROR")


def one_line(err: BaseException) -> str:
    """``Type: message`` on one line (a composition error's detail lines about object types dropped)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.strip().startswith(NOISE)]
    text = "".join(f"{'' if not k else ' ' if lines[k - 1][-1] in '.:;' else '; '}{line}" for k, line in enumerate(lines))
    return f"{type(err).__name__}: {text}"


def plugin_options(group: str) -> set[str]:
    """The options Hydra and its installed plugins register for a ``hydra/`` group (``hydra/launcher``: basic,
    joblib, submitit_local, submitit_slurm, beside the project's ``conf/hydra/launcher/``)."""
    if not group.startswith("hydra/"):
        return set()
    Plugins.instance()  # imports the plugins, which store their configs
    try:
        return {name.removesuffix(".yaml") for name in ConfigStore.instance().list(group)}
    except OSError:  # a group only the project defines
        return set()


def check_groups(args: list[str]) -> None:
    """ValueError for a config group option that does not exist, naming the valid ones."""
    for arg in args:
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and value.replace("/", "").replace("_", "").isalnum():
            choices = plugins.options(key) | plugin_options(key)  # hydra/sweeper: the plugins' options only
            if (plugins.is_group(key) or choices) and value not in choices:  # Hydra's own YAML groups: not here
                raise ValueError(f"{key}={value!r} is not valid; choose one of {', '.join(sorted(choices))}")


def resume_arguments(args: list[str], outputs: str) -> list[str]:
    """With ``resume=``: FileNotFoundError unless it names a run; each ``key=value`` setting forced in (``++``), since
    the defaults Hydra composes need not hold the resumed run's keys (its saved configuration is what it uses)."""
    values = [arg.partition("=")[2].strip("'\"") for arg in args if arg.startswith("resume=")]
    if not values or find_resume_dir(values[-1], outputs) is None:  # not resuming, or resume=auto (a sweep again)
        return args
    forced = []
    for arg in args:
        key, sep, _ = arg.partition("=")
        plain = sep and not arg.startswith(("-", "+", "~")) and not key.startswith("hydra.")
        forced.append(f"++{arg}" if plain and not plugins.is_group(key) and key != "resume" else arg)
    return forced


def first_value(override: Override) -> str:
    """A sweep's first value: its first choice, or an interval's low end (a tuning sweep's ``interval(a, b)``)."""
    sweep = override.value()
    return str(sweep.start) if isinstance(sweep, IntervalSweep) else next(override.sweep_string_iterator())


def precompose(args: list[str], config_name: str) -> list[str]:
    """Compose the configuration the overrides describe (a sweep's first job): Hydra's composition errors raised.
    Returns the keys a sweep varies."""
    overrides = [a for a in args if not a.startswith("-")]
    single, swept = [], []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            swept.append(override.get_key_element().lstrip("+~"))
        value = first_value(override) if override.is_sweep_override() else override.get_value_element_as_str()
        single.append(f"{override.get_key_element()}" + ("" if override.is_delete() and value is None else f"={value}"))
    with initialize_config_dir(str(plugins.CONF), version_base="1.3"):
        try:
            compose(config_name, overrides=single)
        except HydraException as err:
            raise unknown_key(err, single, config_name) from None
    return swept


def unknown_key(err: HydraException, overrides: list[str], config_name: str) -> Exception:
    """For an override of a key its mapping lacks (``constraint.flop=3``), a ValueError naming the mapping's keys; else
    ``err`` itself."""
    match = re.search(r"Could not override '([^']+)'", str(err))
    parent, _, name = match.group(1).rpartition(".") if match else ("", "", "")
    others = [o for o in overrides if o.partition("=")[0] != (match and match.group(1))]
    try:
        node = OmegaConf.select(compose(config_name, overrides=others), parent) if parent else None
    except (HydraException, OmegaConfBaseException):
        node = None
    if not isinstance(node, DictConfig) or name in node:
        return err
    keys = [str(k) for k in node if not str(k).startswith("_")]
    return ValueError(f"Could not override '{parent}.{name}': {parent} has no such setting; choose one of "
                      f"{', '.join(keys)}")


def prepare(argv: list[str], outputs: str, config_name: str) -> list[str]:
    """The arguments Hydra gets (plugins' search path added, resume settings forced), checked; a bad command line
    exits with one line and status 1."""
    try:
        args = resume_arguments([*argv, *plugins.activate()], outputs)
        if not any(a in ("-h", "--help", "--hydra-help", "--info") for a in args):
            check_groups(args)
            record_sweep(precompose(args, config_name))
    except (ValueError, FileNotFoundError, HydraException, OmegaConfBaseException) as err:
        sys.exit(one_line(err))
    return args
