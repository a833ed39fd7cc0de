"""Throughput of search and retraining steps: the plain path against the fast defaults, in one run (issue 7).

    python -m benchmarks.speed                                   # paper sizes, every case, plain vs fast
    python -m benchmarks.speed --size ci --device cpu --steps 3  # tiny sizes (CI)
    python -m benchmarks.speed --cases darts-1st --variants bf16,channels_last,compile,bf16+channels_last

Variants: ``plain`` is the reference path (every op computed, `none` included; fp32; eager; torch DataLoader
with CPU workers and torchvision transforms). ``fast`` is the library's defaults (``darts.context.Context.of``:
skip `none`, shared parameter-free heads, precision and channels_last auto, data resident on the device). ``--variants`` adds the fast defaults changed by modifiers joined with '+' (MODIFIERS), so that
each feature can be measured on its own (e.g. ``contiguous`` or ``channels_last`` for the memory format).

A search step is one arch step and one weight step (``darts.strategies.bilevel.search_epoch`` with steps=1) and
processes B training + B validation images; a retraining step (``darts.training.train_epoch``) processes B.
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
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import ROOT, PeakMemory, environment, in_fresh_process, spread, time_steps
from benchmarks.workloads import (CASES, MODIFIERS, Case, describe_data, load_data, parse_variant, retrain_step,
                                  search_step, sizes_of)
from darts.context import pick_device

log = logging.getLogger("benchmarks.speed")
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-mini"
CIFAR10_TRAIN, SEARCH_EPOCHS, TRAIN_PORTION = 50_000, 50, 0.5  # the full-size targets (DARTS sec. 3.1.1, A.2.1)


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
    row = in_fresh_process("benchmarks.speed", [*argv, "--one", case_name, variant_name])
    return row if row.get("status") != "error" else {"case": case_name, "variant": variant_name, **row}


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
