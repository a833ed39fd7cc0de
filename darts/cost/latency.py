"""A latency table: each op of a space at each input shape the space gives it, timed on one device, and the fixed part
of its networks, saved as a file (built by ``darts-latency``, ``darts.app.latency``).

Entries are keyed by the op module's structure (its ``repr``: class, channels, kernel, stride, dilation...) and its
input shape, so an op that recurs at the same shape (in several cells, edges or probe networks) is timed once.

Timed alone, an op runs with its weights and input in cache; inside a network the other layers evict them and
outputs are kept for the node sums, so isolated timings add up to less than the network takes, by an amount that
grows with the ops' work. Each probe network is therefore also timed end to end, and a line is fitted to the probes
by least squares: ``end-to-end = fixed + scale * sum of its edge ops' entries``. An edge op's latency is ``scale``
times its modules' entries, and the fixed part (stem, preprocessing, reductions, head, the cells' sums) is the
intercept; with ``scale`` = 1 it would be each probe's end-to-end latency less its ops' entries. On NB201 at C=16,
N=5 (one CPU thread, batch size 1) the fit gave a scale of 1.25-1.30 and predicted 30 random networks to 9.7% (mean
absolute error) against 11.2% for scale 1 and the median residual as the fixed part; the ranking is the same either
way, the scale being one positive number (``docs/latency.md``). Timing the non-edge modules one by one instead would
miss the cells' own work and the overhead between calls, a sizeable share at batch size 1 on a CPU.

The file's key names what the timings hold for: the device (CPU model or GPU name), CPU threads, batch size, torch
version, and the space (class, sizes, op set) at its number of classes and input size. Loading a table elsewhere
(another processor or torch version) or for another space is refused with what differs.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn
from tqdm import tqdm

from darts.cost.model import CostedSpace, CostModel, EdgeOp, Probe, probes
from darts.cost.timing import Timer, device_name

FORMAT = 1
CHECKED = ("device", "torch", "space", "sizes", "ops", "num_classes", "input_size")  # must match where it is loaded
Entry = tuple[str, tuple[int, ...]]  # (the module's repr, its input shape at batch size 1)


class KeyedSpace(CostedSpace, Protocol):
    """A costed space that also names its sizes (``search_spaces.base.SearchSpace.network_sizes``)."""

    def network_sizes(self) -> dict[str, int]: ...


def space_key(space: KeyedSpace, num_classes: int, input_size: int) -> dict[str, Any]:
    """What identifies a space's networks: its class, sizes and op set, the number of classes and the input size."""
    return {"space": type(space).__name__, "sizes": dict(space.network_sizes()),
            "ops": {t: [list(row) for row in rows] for t, rows in space.ops.edges.items()},
            "num_classes": num_classes, "input_size": input_size}


def table_key(space: KeyedSpace, num_classes: int, input_size: int, timer: Timer) -> dict[str, Any]:
    """The key of a table measured with ``timer``: device type and name, threads, batch, torch version, space."""
    return {"device_type": timer.device.type, "device": device_name(timer.device), "threads": timer.threads,
            "batch": timer.batch, "torch": torch.__version__, **space_key(space, num_classes, input_size)}


def cache_dir() -> Path:
    """Where tables go by default: ``$XDG_CACHE_HOME/darts/latency`` (``~/.cache/darts/latency``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "darts" / "latency"


def default_path(key: dict[str, Any]) -> Path:
    """The cache file of a key: ``<space>-<device type>-<hash of the key>.json``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{key['space'].lower()}-{key['device_type']}-{digest}.json"


def entry(module: nn.Module, shape: tuple[int, ...]) -> Entry:
    """The table's key of a module at an input shape."""
    return repr(module), tuple(shape)


def fit(edges: list[float], totals: list[float]) -> tuple[float, float]:
    """(fixed, scale) of the least-squares line ``totals = fixed + scale * edges`` over the probes (ms); scale 1 when
    the probes' edge sums do not vary. ValueError if the scale is not positive (timings too noisy to rank networks)."""
    n = len(edges)
    mean_e, mean_t = sum(edges) / n, sum(totals) / n
    var = sum((e - mean_e) ** 2 for e in edges)
    scale = sum((e - mean_e) * (t - mean_t) for e, t in zip(edges, totals)) / var if var > 0 else 1.0
    if scale <= 0:
        raise ValueError(f"the probe networks' latencies do not grow with their ops' ({[round(t, 2) for t in totals]} "
                         f"ms against {[round(e, 2) for e in edges]} ms): "
                         "the timings are too noisy; measure again with more --repeats on a quieter machine")
    return mean_t - scale * mean_e, scale


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file and a rename (never a half-written table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LatencyTable:
    """Milliseconds per (op module, input shape) and of the fixed part, on one device; a ``LatencyMeter`` for
    ``CostModel.measure``.

    Args:
        key: what the timings hold for (``table_key``).
        entries: (module repr, input shape) -> median ms.
        fixed: the fixed part's ms (see the module docstring).
        scale: the factor from isolated timings to an op's share of a network's latency (the module docstring).
        info: how it was measured (repeats, warm-up, the probes' end-to-end and edge-op ms, when, how long);
            saved, not checked.
        path: the file it was loaded from or saved to (named in errors).
    """

    def __init__(self, key: dict[str, Any], entries: dict[Entry, float], fixed: float, scale: float = 1.0,
                 info: dict[str, Any] | None = None, path: Path | None = None):
        self.key, self.entries, self.fixed, self.scale = key, dict(entries), float(fixed), float(scale)
        self.info, self.path = info or {}, path

    @classmethod
    def measure(cls, space: KeyedSpace, num_classes: int = 10, input_size: int = 32, timer: Timer | None = None,
                progress: bool = False) -> LatencyTable:
        """Time every op module of the space's probe networks once per input shape, then each probe end to end, and
        fit the fixed part and the scale (the module docstring)."""
        timer = timer or Timer.of()
        start = time.perf_counter()
        found = probes(space, num_classes, input_size)
        todo = {entry(m, s): (m, s) for p in found for units in p.units.values() for m, s in units}
        bar = tqdm(total=timer.repeats * (len(todo) + len(found)), desc="latency table", unit="pass",
                   disable=not progress)
        key = table_key(space, num_classes, input_size, timer)
        table = cls(key, dict(zip(todo, timer.each(list(todo.values()), bar))), 0.0)
        totals = timer.each([(p.network, (1, 3, input_size, input_size)) for p in found], bar)
        bar.close()
        edges = [table.edge_sum(p) for p in found]
        table.fixed, table.scale = fit(edges, totals)
        table.info = {"repeats": timer.repeats, "warmup": timer.warmup, "probe_ms": totals, "probe_edge_ms": edges,
                      "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": time.perf_counter() - start}
        return table

    def ms(self, module: nn.Module, shape: tuple[int, ...]) -> float:
        """The entry of ``module`` at input ``shape``; ValueError naming it if the table has none."""
        try:
            return self.entries[entry(module, shape)]
        except KeyError:
            raise ValueError(f"latency table {self.path or ''} has no entry for {type(module).__name__} at input "
                             f"{list(shape)} ({' '.join(repr(module).split())[:80]}): it was built for other networks; "
                             "rebuild it with darts-latency --refresh") from None

    def edge_latency(self, probe: Probe, key: EdgeOp) -> float:
        """(cell type, edge, op) ``key``'s share of ``probe``'s latency (ms): ``scale`` times its modules' entries."""
        return self.scale * sum(self.ms(m, s) for m, s in probe.units[key])

    def edge_sum(self, probe: Probe) -> float:
        """The summed entries of every edge op of ``probe`` (ms, unscaled)."""
        return sum(self.ms(m, s) for units in probe.units.values() for m, s in units)

    def fixed_latency(self, probe: Probe) -> float:
        """The fixed part (ms): the fit's intercept, the same for every probe."""
        return self.fixed

    def to_json(self) -> str:
        """The file's text: format, key, fixed part, entries (module, input shape, ms) and how it was measured."""
        rows = [{"module": m, "input": list(s), "ms": v} for (m, s), v in self.entries.items()]
        return json.dumps({"format": FORMAT, "key": self.key, "fixed_ms": self.fixed, "scale": self.scale,
                           "entries": rows, "info": self.info}, indent=1)

    def save(self, path: Path | str) -> Path:
        """Write the table to ``path`` atomically; the path."""
        self.path = Path(path).expanduser()
        _write_atomic(self.path, self.to_json())
        return self.path

    @classmethod
    def read(cls, path: Path | str) -> LatencyTable:
        """The table saved at ``path``, unchecked; ValueError if it is not a latency table of this format."""
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text())
            entries = {(r["module"], tuple(r["input"])): float(r["ms"]) for r in data["entries"]}
            if data["format"] != FORMAT:
                raise ValueError(f"format {data['format']}")
            return cls(data["key"], entries, data["fixed_ms"], data["scale"], data.get("info"), path)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is not a latency table of format {FORMAT} ({err}); rebuild it with "
                             "darts-latency --refresh") from None

    @classmethod
    def load(cls, path: Path | str, space: KeyedSpace, num_classes: int = 10, input_size: int = 32) -> LatencyTable:
        """The table at ``path``, checked to be for this device (processor, torch version) and this space at these
        sizes; ValueError saying what differs and how to refresh it otherwise."""
        table = cls.read(path)
        table.check(space, num_classes, input_size)
        return table

    def check(self, space: KeyedSpace, num_classes: int, input_size: int) -> None:
        """ValueError (one line) unless the table was measured here, for this space at these sizes."""
        saved = self.key
        here = {"device": _current_device(saved.get("device_type", "cpu"), saved.get("device")), "torch": torch.__version__,
                **space_key(space, num_classes, input_size)}
        differ = [f for f in CHECKED if saved.get(f) != here[f]]
        if differ:
            what = "; ".join(f"{f} {_short(saved.get(f))} in the table, {_short(here[f])} here" for f in differ)
            raise ValueError(f"latency table {self.path} does not hold here ({what}): rebuild it on this machine with "
                             f"darts-latency --space <name> --refresh (and --out {self.path}), with this space's sizes")


def _current_device(device_type: str, saved: str | None) -> str | None:
    """This machine's processor of the table's device type: the saved GPU's name if one of the visible GPUs has it,
    else the first GPU's (None: no CUDA device); the CPU model."""
    if device_type != "cuda":
        return device_name(torch.device("cpu"))
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return saved if saved in names else next(iter(names), None)


def cost_model(space: KeyedSpace, num_classes: int, input_size: int = 32, latency_table: str | Path | None = None,
               ) -> CostModel:
    """The space's cost model for ``num_classes`` and ``input_size``, with latency from ``latency_table`` (a
    ``darts-latency`` file, checked to be for this space, device and torch) when one is given."""
    latency = None if latency_table is None else LatencyTable.load(latency_table, space, num_classes, input_size)
    return CostModel.measure(space, num_classes, input_size, latency=latency)
