"""A deployment run: one step after retraining (pruning, int8 quantisation, export), in a run directory of its own.

A step reads a *source*: a retraining run (``train_final.py``: ``config.yaml`` and ``checkpoint.pt``) or the
directory of an earlier step, and writes a new run directory, by default inside the source's (``RUN/prune_50``,
``RUN/prune_50/int8``, ``RUN/prune_50/int8/export``), on the run lifecycle (``DeployStep``), holding:

- ``config.yaml``: the source's configuration (space, dataset, network, seed) with a ``deploy`` node: the step, its
  arguments, the source directory and the chain of steps (``method``, e.g. ``train_final + prune 50% + int8``);
- what the next step needs: ``model.pt`` (an fp32 network: ``spec`` and ``model`` state, as in a retraining
  checkpoint; loaded with ``weights_only=True``) or ``model.pt2`` (a ``torch.export`` program: the int8 network);
- ``result.json`` (written last: the step is complete), with the input's normalisation and size, and the
  TensorBoard events (the step's scalars and its HParams record).

Running a step again on its directory continues it (the pruning's fine-tuning) or reports it complete; settings
other than those it started with are refused. Every network is taken in eval mode, logits only: the auxiliary head
of a retraining run is left out and drop path is off.
"""
from __future__ import annotations

import io
import json
import logging
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import yaml

from darts.runs.base import Run
from darts.runs.directory import CHECKPOINT, CONFIG, RESULT, write_atomic
from darts.runs.network_spec import NetworkSpec
from darts.runs.reader import NETWORK, Run as StoredRun, build
from darts.runs.tensorboard_log import TensorBoardLog
from darts.context import Context
from darts.training import evaluate

log = logging.getLogger(__name__)
PROGRAM = "model.pt2"  # a torch.export program (the int8 network)
RECORD = "deployment.json"  # the input record, also stored inside the exported files


class Logits(nn.Module):
    """A retrained network's logits (B, K) only, whatever it returns ((logits, logits_aux) or logits)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of images x (B, 3, H, W)."""
        out = self.network(x)
        return out[0] if isinstance(out, tuple) else out


class Source(StoredRun):
    """A finished retraining run or deployment step: what the next step reads."""

    @property
    def step(self) -> str:
        """``final`` (a retraining run) or the deployment step that wrote it (``prune``, ``int8``, ``export``)."""
        return (self.config.get("deploy") or {}).get("step", "final")

    @property
    def method(self) -> str:
        """The chain of steps from the retraining, e.g. ``train_final + prune 50%``."""
        return (self.config.get("deploy") or {}).get("method", "train_final")

    def spec(self) -> tuple[NetworkSpec, dict[str, torch.Tensor]]:
        """The network's spec (without auxiliary head) and its weights (the checkpoint's, auxiliary head left out)."""
        if self.step not in ("final", "prune"):
            raise ValueError(f"{self.path} is an {self.step} run, which holds no fp32 network: give its source "
                             f"({self.config['deploy']['source']})")
        spec, state = self.network_spec(CHECKPOINT if self.step == "final" else NETWORK)
        weights = {k: v for k, v in state.items() if not k.startswith("auxiliary_head.")}
        return replace(spec, auxiliary=False), weights

    def network(self) -> nn.Module:
        """The fp32 network in eval mode, logits only (``Logits``)."""
        spec, weights = self.spec()
        network = spec.build()
        network.load_state_dict(weights)
        return Logits(network).eval()

    def program(self) -> torch.export.ExportedProgram:
        """The int8 network: its ``torch.export`` program."""
        import torchao.quantization.pt2e  # noqa: F401  (registers the quantized_decomposed ops the program calls)

        return torch.export.load(self.path / PROGRAM)

    def datasets(self) -> Any:
        """The retraining's datasets (``darts.data.datasets``), from the config's ``dataset`` node."""
        return build(self.config["dataset"])

    def genotype(self) -> str:
        """The genotype text (from ``result.json``, or the checkpoint of an unfinished retraining)."""
        if self.finished:
            return self.result["genotype"]
        spec, _ = self.spec()
        return spec.space.to_text(spec.genotype)


def open_source(path: str | Path) -> Source:
    """The retraining run or deployment step in ``path``; a one-line FileNotFoundError / ValueError otherwise."""
    try:
        source = Source.open(path)
    except ValueError as err:
        raise ValueError(f"{err}: give a retraining run (train_final.py) or the directory of a prune/quantize step"
                         ) from None
    path, deploy = source.path, source.config.get("deploy")
    if deploy is None and (source.kind != "final" or not (path / CHECKPOINT).is_file()):
        raise ValueError(f"{path} is not a retraining run (train_final.py's run directory, with {CHECKPOINT}); a "
                         "search is deployed by retraining its genotype first")
    if deploy is not None and not source.finished:
        raise ValueError(f"{path}: its {deploy['step']} step has not finished (no {RESULT}); run it again to finish it")
    if deploy is None and not source.finished:
        log.warning("%s has not finished its retraining: using its last checkpoint", path)
    return source


def input_record(data: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    """What a deployed network expects: images (B, C, H, W) float32, normalised per channel with the retraining's
    statistics (``darts.data.datasets``)."""
    return {"input_shape": ["batch", *shape], "dtype": "float32", "layout": "NCHW", "mean": list(data.test.mean),
            "std": list(data.test.std), "normalisation": "x = (pixel / 255 - mean) / std per channel, RGB",
            "output": "logits (batch, num_classes)", "classes": list(getattr(data.test, "classes", []))}


class DeployStep(Run):
    """One deployment step on the run lifecycle (``darts.runs.base``): its directory, created with its ``config.yaml``
    or re-opened when its settings are the same (other settings are refused), locked while it runs; a complete step
    reports its result instead of running again. A step computes ``self.outcome`` (its result's own fields),
    ``self.record`` (the input record) and ``self.measured`` (its HParams metrics).

    Args:
        source: the retraining run or earlier step it reads.
        label: the step in the method's chain (``prune 50%``, ``int8``, ``export``).
        settings: the step's arguments, saved in ``config.yaml``'s ``deploy`` node.
        out: its directory (default: ``source/<default_name>``).
        context: where it computes.
    """

    step: str  # the step's kind: prune, int8, export

    def __init__(self, source: Source, label: str, settings: dict[str, Any], out: str | Path | None,
                 default_name: str, context: Context = Context()):
        path = Path(out).expanduser() if out else source.path / default_name
        config = {k: v for k, v in source.config.items() if k not in ("deploy", "published")}
        config["deploy"] = {"step": self.step, "method": f"{source.method} + {label}",
                            "source": str(source.path.resolve()), **settings}
        if (path / CONFIG).is_file():
            saved = (yaml.safe_load((path / CONFIG).read_text()) or {}).get("deploy") or {}
            if saved != config["deploy"]:
                differ = sorted(k for k in {**saved, **config["deploy"]} if saved.get(k) != config["deploy"].get(k))
                raise ValueError(f"{path} holds another run (its settings differ in {', '.join(differ)}): give "
                                 "the same settings to continue it, or another --out")
        super().__init__(path, context, hparams={k: v for k, v in config["deploy"].items() if k != "source"})
        if not (path / CONFIG).is_file():
            write_atomic(path / CONFIG, yaml.safe_dump(config, sort_keys=False))
        self.source, self.config = source, config
        self.outcome: dict[str, Any] = {}
        self.record: dict[str, Any] = {}
        self.measured: dict[str, float] = {}

    @property
    def path(self) -> Path:
        """The step's directory."""
        return self.dir.path

    def run(self) -> dict[str, Any]:
        """The step's result: computed now, or read back when the step is complete."""
        if self.dir.finished:
            log.info("%s is complete", self.path)
            return json.loads((self.path / RESULT).read_text())
        return super().run()

    def state_dict(self) -> dict[str, Any]:
        """Nothing to resume (a step that checkpoints overrides it)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""

    def finish(self, board: TensorBoardLog) -> dict[str, Any]:
        """The step's outcome with the method, source, genotype and input record."""
        log.info("%s: %s", self.path, ", ".join(f"{k} {v:.4g}" for k, v in self.measured.items()))
        return {"step": self.step, "method": self.config["deploy"]["method"], "source": str(self.source.path),
                "genotype": self.source.genotype(), **self.outcome, "input": self.record}

    def summary(self, result: dict[str, Any]) -> dict[str, float]:
        """The step's measured metrics."""
        return self.measured


def accuracy(forward: Callable[[torch.Tensor], torch.Tensor], loader: Any, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy (%) of ``forward(x) -> logits`` over the whole loader (whose batches are on ``device``)."""
    return evaluate(forward, loader, len(loader), Context(torch.device(device), progress=False))["acc"]


def test_loader(data: Any, images: int | None = None, device: str | torch.device = "cpu") -> Any:
    """The test split in batches of 256 (all of it, or a fixed random sample of ``images``), without augmentation."""
    if images is not None and images < 1:
        raise ValueError(f"--test-images={images} must be >= 1 (or unset: the whole test split)")
    generator = torch.Generator().manual_seed(0)
    sample = None if images is None else torch.randperm(len(data.test), generator=generator)[:images]
    return data.test.loader(256, device, train=False, indices=sample)


@torch.inference_mode()
def latency_ms(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int,
               warmup: int = 3) -> float:
    """Median wall time (ms) of ``forward(x)`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        forward(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(x)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def export_program(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of ``module`` with a dynamic batch size; ``example`` (B, C, H, W) needs B >= 2 (an example
    batch of 1 would specialise the batch dimension: torch.export's 0/1 specialisation)."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    # a copy: the program keeps its example inputs, and a view would keep the whole storage it slices
    return torch.export.export(module, (example.clone(),), dynamic_shapes={"x": {0: batch}})


def program_bytes(program: torch.export.ExportedProgram) -> tuple[int, int]:
    """(bytes of the serialised program, bytes of its tensors: weights, buffers, constants)."""
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    tensors = [*program.state_dict.values(), *program.constants.values()]
    return len(buffer.getvalue()), sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def save_program(program: torch.export.ExportedProgram, path: Path, record: dict[str, Any]) -> None:
    """Save ``program`` atomically with ``record`` inside it (``extra_files``: deployment.json)."""
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={RECORD: json.dumps(record)})
    write_atomic(path, buffer.getvalue())
