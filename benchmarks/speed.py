"""Throughput of search and retraining steps: the plain path against the fast defaults, in one run (issue 7).

    python -m benchmarks.speed                                   # paper sizes, every case, plain vs fast
    python -m benchmarks.speed --size ci --device cpu --steps 3  # tiny sizes (CI)
    python -m benchmarks.speed --cases darts-1st --variants bf16,channels_last,compile,bf16+channels_last

Variants: ``plain`` is the reference path (every op computed, `none` included; fp32; eager; torch DataLoader
with CPU workers and torchvision transforms). ``fast`` is the library's defaults (``darts.runtime.Runtime.of``:
skip `none`, shared parameter-free heads, precision and channels_last auto, data resident on the device). ``--variants`` adds the fast defaults changed by modifiers joined with '+' (MODIFIERS), so that
each feature can be measured on its own (e.g. ``contiguous`` or ``channels_last`` for the memory format).

A search step is one arch step and one weight step (``darts.trainer.search_epoch`` with steps=1) and
processes B training + B validation images; a retraining step (``darts.trainer.train_epoch``) processes B.
images/s = images per step / wall time of the step, median over the timed steps after the warm-up steps, with
min, max and quartiles; peak memory as ``benchmarks.timing.PeakMemory`` (on CPU only with --isolate, each
variant in its own process).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache, partial
from itertools import count
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from benchmarks.timing import ROOT, PeakMemory, environment, spread, time_steps
from darts.data import Datasets, ImageData, cifar10, fake, image_folder, search_split
from darts.loaders import PlainLoader
from darts.runs.final import FinalRun, FinalSettings, final_loss
from darts.runs.network_spec import NetworkSpec
from darts.runs.search import SearchRun
from darts.runtime import Runtime, pick_device
from darts.schedules import Cosine
from darts.strategies.darts import DARTS
from darts.strategies.gdas import GDAS
from darts.strategies.pcdarts import PCDARTS
from darts.trainer import search_epoch, train_epoch
from search_spaces.darts import GENOTYPES, DartsSpace, NetworkCIFAR
from search_spaces.nb201 import NB201Space

log = logging.getLogger("benchmarks.speed")
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-mini"
CIFAR10_TRAIN, SEARCH_EPOCHS, TRAIN_PORTION = 50_000, 50, 0.5  # the full-size targets (DARTS sec. 3.1.1, A.2.1)


@dataclass(frozen=True)
class Case:
    """A measured workload: a search step (space, strategy) or the DARTS_V2 retraining step, at two sizes.

    full/ci: channels C, layers (DARTS cells, or NB201 cells per stage), batch B, optional partial_channels.
    """

    kind: str
    full: dict[str, int]
    ci: dict[str, int]
    space: str = "darts"
    strategy: type | None = None
    strategy_args: dict[str, Any] = field(default_factory=dict)
    lr: float = 0.025  # DARTS sec. 3.1.1


_DARTS = {"channels": 16, "layers": 8, "batch": 64}  # DARTS sec. 3.1.1
_CI = {"channels": 4, "layers": 3, "batch": 8}
_PC = {"batch": 256, "partial_channels": 4}  # PC-DARTS train_search.py: batch 256, lr 0.1; model_search.py K=4
CASES = {
    "darts-1st": Case("search", _DARTS, _CI, strategy=DARTS, strategy_args={"order": 1}),
    "darts-2nd": Case("search", _DARTS, _CI, strategy=DARTS, strategy_args={"order": 2}),
    "darts-1st-b256": Case("search", {**_DARTS, "batch": 256}, _CI, strategy=DARTS, strategy_args={"order": 1}, lr=0.1),
    # NB201 sec. 3 (C=16, N=5); batch 64 as NATS-Bench's DARTS search (exps/NATS-algos/search-cell.py)
    "nb201-1st": Case("search", {"channels": 16, "layers": 5, "batch": 64}, {**_CI, "layers": 1}, space="nb201",
                      strategy=DARTS, strategy_args={"order": 1}),
    "gdas": Case("search", _DARTS, _CI, strategy=GDAS),
    # arch steps from the first step (PC-DARTS's 15 warm-up epochs have none; the benchmark times full steps)
    "pcdarts": Case("search", {**_DARTS, **_PC}, {**_CI, "partial_channels": 4}, strategy=PCDARTS,
                    strategy_args={"arch_start_epoch": 0}, lr=0.1),
    "retrain-darts_v2": Case("retrain", {"channels": 36, "layers": 20, "batch": 96}, _CI),  # DARTS A.2.1
}


@dataclass(frozen=True)
class Variant:
    """How a case runs: op computation, precision, data loader, memory format, compilation."""

    fast: bool
    precision: str
    loader: str  # "device" (DeviceLoader) or "plain" (PlainLoader: DataLoader + CPU workers)
    channels_last: bool | str  # True, False or "auto" (darts.runtime.use_channels_last)
    compile: bool


PLAIN = Variant(fast=False, precision="fp32", loader="plain", channels_last=False, compile=False)
FAST = Variant(fast=True, precision="auto", loader="device", channels_last="auto", compile=False)  # conf/search.yaml
MODIFIERS = {"fp32": {"precision": "fp32"}, "bf16": {"precision": "bf16"}, "channels_last": {"channels_last": True},
             "contiguous": {"channels_last": False}, "compile": {"compile": True}, "plain_ops": {"fast": False},
             "plain_loader": {"loader": "plain"}}


def parse_variant(name: str) -> Variant:
    """'plain', 'fast', or modifiers of the fast defaults joined by '+' (e.g. 'bf16+channels_last')."""
    if name in ("plain", "fast"):
        return PLAIN if name == "plain" else FAST
    changes: dict[str, Any] = {}
    for mod in name.split("+"):
        if mod not in MODIFIERS:
            raise ValueError(f"variant modifier {mod!r} in {name!r} is not valid; choose plain, fast, or modifiers "
                             f"of fast joined by '+': {', '.join(MODIFIERS)}")
        changes.update(MODIFIERS[mod])
    return replace(FAST, **changes)


def sizes_of(case: Case, size: str) -> dict[str, int]:
    """The case's sizes for --size full|ci."""
    return case.full if size == "full" else case.ci


def describe_data(spec: str) -> str:
    """What --data names: 'synthetic', 'CIFAR-10 <root>' or 'image folder <root>'."""
    if spec == "synthetic":
        return "synthetic (darts.data.fake: uint8 images, 16 batches of the case's size)"
    root = Path(spec).expanduser()
    return f"CIFAR-10 {root}" if (root / "cifar-10-batches-py").is_dir() else f"image folder {root}"


@lru_cache(maxsize=4)
def load_data(spec: str, synthetic_train: int) -> Datasets:
    """'synthetic' (darts.data.fake, synthetic_train images), a torchvision CIFAR-10 root or an ImageFolder root."""
    if spec == "synthetic":
        return fake(num_train=synthetic_train, num_test=max(synthetic_train // 8, 128))
    root = Path(spec).expanduser()
    if (root / "cifar-10-batches-py").is_dir():
        return cifar10(str(root), download=False)
    return image_folder(str(root))


def _loader(data: ImageData, batch: int, device: torch.device, variant: Variant, workers: int, train: bool = True,
            cutout: int = 0, seed: int = 0, indices: torch.Tensor | None = None):
    """The variant's loader: DeviceLoader (ImageData.loader) or the reference PlainLoader."""
    if variant.loader == "plain":
        return PlainLoader(data, batch, device, indices=indices, augment=train, cutout=cutout, shuffle=train,
                           drop_last=train, seed=seed, num_workers=workers)
    return data.loader(batch, device, train=train, cutout=cutout, seed=seed, indices=indices)


def _forever(loader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches epoch after epoch (a benchmark may need more steps than an epoch holds)."""
    for epoch in count():
        loader.set_epoch(epoch)
        yield from loader


class _VariantData:
    """The search split of ``data`` with the variant's loaders, in the shape ``SearchRun`` asks of a ``SearchData``."""

    def __init__(self, data: Datasets, variant: Variant, device: torch.device, workers: int):
        self.data, self.variant, self.device, self.workers = data, variant, device, workers
        self.num_classes = data.num_classes
        self.weight_idx, self.arch_idx = search_split(len(data.train))

    def weight_loader(self, batch: int, seed: int):
        return _loader(self.data.train, batch, self.device, self.variant, self.workers, seed=seed, indices=self.weight_idx)

    def arch_loader(self, batch: int, seed: int):
        return _loader(self.data.train, batch, self.device, self.variant, self.workers, seed=seed, indices=self.arch_idx)


def _runtime(variant: Variant, device: torch.device) -> Runtime:
    return Runtime.of(device.type, variant.precision, variant.channels_last, variant.fast, variant.compile)


def search_step(case: Case, sizes: dict[str, int], variant: Variant, data: Datasets, device: torch.device,
                workers: int, run_dir: Path) -> Callable[[], Any]:
    """One bilevel step of a search set up by ``SearchRun`` (as train_search.py does) with the variant's settings."""
    C, layers, B, K = sizes["channels"], sizes["layers"], sizes["batch"], sizes.get("partial_channels", 1)
    space = DartsSpace(C, layers, partial_channels=K) if case.space == "darts" else NB201Space(C, layers, partial_channels=K)
    run = SearchRun(run_dir, space, _VariantData(data, variant, device, workers),
                    partial(case.strategy, **case.strategy_args), _runtime(variant, device), batch_size=B, lr=case.lr,
                    seed=0, progress=False)
    run.strategy.epoch_start(0, run.epochs)
    batches = (_forever(run.train_loader), _forever(run.valid_loader))
    return partial(search_epoch, run.supernet, run.strategy, *batches, run.optimizer, run.grad_clip, 1, device,
                   progress=False)


def retrain_step(sizes: dict[str, int], variant: Variant, data: Datasets, device: torch.device, workers: int,
                 run_dir: Path) -> Callable[[], Any]:
    """One training step of the DARTS_V2 retraining set up by ``FinalRun`` (auxiliary head, cutout 16)."""
    settings = FinalSettings(progress=False)
    network = partial(NetworkCIFAR, C=sizes["channels"], layers=sizes["layers"])
    spec = NetworkSpec(network, GENOTYPES["DARTS_V2"], DartsSpace(), data.num_classes, auxiliary=True)
    train = _loader(data.train, sizes["batch"], device, variant, workers, cutout=16)  # DARTS A.2.1 cutout
    test = _loader(data.test, sizes["batch"], device, variant, workers, train=False)
    run = FinalRun(run_dir, spec, train, test, settings, Cosine(), _runtime(variant, device))
    if variant.compile:  # no FinalRun option: measured here to decide whether one pays off
        run.model.compile()
    run.model.drop_path_prob = settings.drop_path_prob / 2  # the mean of DARTS's linear drop-path ramp
    loss_fn = partial(final_loss, auxiliary_weight=settings.auxiliary_weight)
    return partial(train_epoch, run.model, _forever(train), run.optimizer, 1, device, loss_fn, settings.grad_clip,
                   progress=False, amp_dtype=run.amp_dtype)


def _projection(case: Case, sizes: dict[str, int], step_s: float) -> dict[str, Any]:
    """The issue's full-size target quantity from the median step time (training steps only, no eval passes)."""
    B = sizes["batch"]
    if case.kind == "retrain":
        return {"what": "seconds per retraining epoch on CIFAR-10 (train steps only)", "value": CIFAR10_TRAIN // B * step_s}
    steps = int(CIFAR10_TRAIN * TRAIN_PORTION) // B
    return {"what": f"minutes for {SEARCH_EPOCHS} search epochs on CIFAR-10 (search steps only)",
            "value": SEARCH_EPOCHS * steps * step_s / 60}


def not_applicable(case_name: str, variant_name: str, device: torch.device) -> str | None:
    """Why a variant does not apply to a case on the device (None when it does)."""
    variant = parse_variant(variant_name)
    if CASES[case_name].kind == "retrain" and "plain_ops" in variant_name.split("+"):
        return "plain_ops concerns mixed ops; the retraining network has none"
    if device.type == "cpu" and variant.precision == "bf16" and variant.channels_last is True:
        return "refused on CPU: oneDNN gives wrong bf16 gradients for channels_last dilated depthwise convs"
    return None


def measure(case_name: str, variant_name: str, args: argparse.Namespace, isolated: bool) -> dict[str, Any]:
    """Time one (case, variant) in this process and return its result row."""
    case, variant, device = CASES[case_name], parse_variant(variant_name), pick_device(args.device)
    sizes = sizes_of(case, args.size)
    row: dict[str, Any] = {"case": case_name, "variant": variant_name, "kind": case.kind, "sizes": sizes,
                           "settings": asdict(variant), "images_per_step": sizes["batch"] * (2 if case.kind == "search" else 1)}
    reason = not_applicable(case_name, variant_name, device)
    if reason:
        return {**row, "status": "n/a", "reason": reason}
    data = load_data(args.data, 16 * sizes["batch"])
    torch.manual_seed(0)
    memory = PeakMemory(device, isolated)
    with tempfile.TemporaryDirectory() as run_dir:
        if case.kind == "search":
            step = search_step(case, sizes, variant, data, device, args.workers, Path(run_dir))
        else:
            step = retrain_step(sizes, variant, data, device, args.workers, Path(run_dir))
        times, warm = time_steps(step, args.steps, args.warmup, device)
        del step
    ips = [row["images_per_step"] / t for t in times]
    row.update(status="ok", images_per_s=spread(ips), step_s=times, warmup_s=warm, peak_memory_mb=memory.peak_mb(),
               memory_method=memory.method or "not measured: CPU memory needs --isolate")
    if args.size == "full":
        row["projection"] = _projection(case, sizes, statistics.median(times))
    return row


def measure_isolated(case_name: str, variant_name: str, argv: list[str]) -> dict[str, Any]:
    """``measure`` in a fresh process (clean peak memory, caches and compiled code)."""
    cmd = [sys.executable, "-m", "benchmarks.speed", *argv, "--one", case_name, variant_name]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    return {"case": case_name, "variant": variant_name, "status": "error", "reason": f"exit {proc.returncode}: {tail}"}


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """speedup_vs_plain = median images/s of the row / that of the case's plain row."""
    plain = {r["case"]: r["images_per_s"]["median"] for r in rows if r["variant"] == "plain" and r["status"] == "ok"}
    for r in rows:
        if r["status"] == "ok" and r["case"] in plain:
            r["speedup_vs_plain"] = r["images_per_s"]["median"] / plain[r["case"]]


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows."""
    lines = ["| case | variant | images/s (median) | min-max | peak memory (MiB) | vs plain | full-size projection |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['case']} | {r['variant']} | {r['status']}: {r['reason'][:100]} | | | | |")
            continue
        ips, mem, proj = r["images_per_s"], r["peak_memory_mb"], r.get("projection")
        mem_text = "-" if mem is None else f"{mem:.0f}"
        proj_text = "" if proj is None else f"{proj['value']:.1f} {proj['what'].split(' on ')[0]}"
        lines.append(f"| {r['case']} | {r['variant']} | {ips['median']:.1f} | {ips['min']:.1f}-{ips['max']:.1f} | "
                     f"{mem_text} | {r.get('speedup_vs_plain', float('nan')):.2f}x | {proj_text} |")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=("full", "ci"), default="full", help="paper sizes or tiny CI sizes")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--variants", default="", help="extra variants besides plain and fast, comma-separated "
                   f"(modifiers of fast joined by '+': {', '.join(MODIFIERS)})")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (cudnn autotuning, compilation)")
    p.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.is_dir() else "synthetic",
                   help="an ImageFolder root, a CIFAR-10 root (cifar-10-batches-py) or 'synthetic'")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain path (DARTS: 2)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                   help="each variant in its own process (needed for CPU peak memory)")
    p.add_argument("--out", default="speed.json", help="the JSON result file")
    p.add_argument("--one", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    bad = [c for c in cases if c not in CASES]
    if bad or not cases:
        raise ValueError(f"--cases {args.cases!r} is not valid; choose among {', '.join(CASES)}")
    if args.steps < 1 or args.warmup < 0:
        raise ValueError(f"--steps={args.steps} must be >= 1 and --warmup={args.warmup} >= 0")
    args.case_list = cases
    args.variant_list = list(dict.fromkeys(["plain", "fast", *[v for v in args.variants.split(",") if v]]))
    for v in args.variant_list:
        parse_variant(v)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure every (case, variant), print the table and write the JSON; returns the JSON's content."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.one:  # a child of --isolate: one row as the last line of stdout
        print(json.dumps(measure(*args.one, args, isolated=True)))
        return {}
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = pick_device(args.device)
    child_argv = ["--size", args.size, "--steps", str(args.steps), "--warmup", str(args.warmup), "--data", args.data,
                  "--device", device.type, "--workers", str(args.workers)]
    env = environment(device)
    load = os.getloadavg()
    rows = []
    for case in args.case_list:
        for variant in args.variant_list:
            log.info("measuring %s / %s", case, variant)
            if args.isolate and not not_applicable(case, variant, device):
                rows.append(measure_isolated(case, variant, child_argv))
                continue
            try:
                rows.append(measure(case, variant, args, isolated=False))
            except RuntimeError as e:  # e.g. out of memory or a failed compilation: keep the other figures
                rows.append({"case": case, "variant": variant, "status": "error", "reason": f"{type(e).__name__}: {e}"})
    add_speedups(rows)
    env["load_average_start_end"] = [load[0], os.getloadavg()[0]]
    result = {"benchmark": "speed", "size": args.size, "steps": args.steps, "warmup": args.warmup,
              "data": describe_data(args.data), "workers": args.workers, "isolate": args.isolate, "environment": env, "results": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print(f"\n{env['date']} {env.get('gpu', env['cpu'])}; torch {env['torch']}, torchvision {env['torchvision']}, "
          f"python {env['python']}; data: {result['data']}; JSON: {args.out}")
    return result


if __name__ == "__main__":
    main()
