"""A sweep's settings in Hydra's override syntax (``interval``, ``tag(log, ...)``, ``int(...)``, ``range``, ``choice``)
as a study's space (``darts.tuning.space``), and a trial's settings back as overrides."""
from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from darts.tuning.space import Choice, Float, Int, Param


def _param(override: Override) -> Param:
    """The space entry of one sweep override."""
    sweep, key = override.value(), override.get_key_element()
    log = "log" in sweep.tags
    if isinstance(sweep, IntervalSweep):
        ints = isinstance(sweep.start, int) and isinstance(sweep.end, int) or "int" in sweep.tags
        return (Int(int(sweep.start), int(sweep.end), log) if ints else Float(float(sweep.start), float(sweep.end), log))
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)) and values and not log:
            return Int(values[0], values[-1], step=sweep.step) if len(values) > 1 else Choice(tuple(values))
        return Choice(tuple(values))
    if isinstance(sweep, ChoiceSweep):
        return Choice(tuple(sweep.list))
    raise ValueError(f"{key}: {override.input_line} is not a sweep a study can tune; give interval(a,b), "
                     "tag(log,interval(a,b)), int(interval(a,b)), range(a,b[,step]) or choice(x,y,...)")


def parse(arguments: list[str], params: dict[str, Any]) -> tuple[dict[str, Param], list[str]]:
    """The space (the config's ``params``, then the command line's sweep overrides) and the fixed overrides every
    trial gets; ValueError for a value that is not a sweep."""
    parser = OverridesParser.create()
    space: dict[str, Param] = {}
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        if not override.is_sweep_override():
            raise ValueError(f"hydra.sweeper.params.{key}={value!r} is not a sweep; give interval(a,b), "
                             "tag(log,interval(a,b)), int(interval(a,b)), range(a,b[,step]) or choice(x,y,...)")
        space[key] = _param(override)
    fixed = []
    for override in parser.parse_overrides(arguments):
        if override.is_sweep_override():
            space[override.get_key_element()] = _param(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def quoted(text: str) -> str:
    """``text`` as a quoted override value (a path, a run name, JSON)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def value(x: Any) -> str:
    """A trial's setting as an override value: numbers and booleans as Hydra reads them, strings quoted."""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, (int, float)):
        return repr(x)
    return "null" if x is None else quoted(str(x))
