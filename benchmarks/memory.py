"""Peak memory and step time of search and retraining steps, ours in each memory setting against the original DARTS
code, each in a fresh process.

    python -m benchmarks.memory --original /tmp/darts_original            # every case, ours and the original
    python -m benchmarks.memory --cases darts-1st --batch 32 --budget-mib 4096 --device cuda

Cases are ``benchmarks.workloads.CASES`` at their full (paper) sizes, ours with the library's defaults
(``workloads.FAST``), set up as the speed benchmark sets them up (``search_step``: one arch step and one weight
step; ``retrain_step``: DARTS_V2 with the auxiliary head). The original (``benchmarks.original_darts``) has
darts-1st, darts-2nd (``Architect.step`` unrolled=False/True, then the weight step) and retrain-darts_v2; the
other cases have no original driver. Ours reads synthetic uint8 images (``darts.data.datasets.fake``), the
original random float tensors of the same shape: memory does not depend on pixel values.

Ours runs in each of ``--variants`` (default: ``no_recompute``, ``memory.checkpoint=none``, the plain step;
``fast``, the defaults, ``norms``; ``checkpoint``, ``cells``); the time of each as a ratio to the plain step's is
the median step after the first (a warm-up), in the same process as its memory: on CPU the process's CPU time
(with ``--threads 1``, what other load on the machine changes least), on CUDA the synchronised wall time. Each (case, code, variant) runs
``--steps`` steps in a process of its own. CPU: the peak resident set (VmHWM, reset to the
RSS after the imports by ``benchmarks.timing.PeakMemory``), reported absolute, with the baseline (the RSS after
imports) beside it. CUDA: ``torch.cuda.max_memory_allocated`` (absolute) and ``max_memory_reserved``. The largest
batch within ``--budget-mib`` (of the absolute peak) is searched for darts-1st (ours in each variant, and the
original), each probe a fresh process: a linear extrapolation from the last fitting probe, then bisection, at most
``--probes`` probes per code.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks import original_darts
from benchmarks.timing import PeakMemory, environment, in_fresh_process
from benchmarks.workloads import CASES, load_data, parse_variant, retrain_step, search_step, sizes_of
from darts.context import pick_device

log = logging.getLogger("benchmarks.memory")
ORIGINAL_CASES = {"darts-1st", "darts-2nd", "retrain-darts_v2"}  # the cases benchmarks.original_darts can run
DEFAULT_CASES = ("darts-1st", "darts-2nd", "nb201-1st", "pcdarts", "retrain-darts_v2")
VARIANTS = ("no_recompute", "fast", "checkpoint")  # memory.checkpoint none (the plain step), norms (default), cells
PLAIN_STEP = "no_recompute"
BATCH_STEP = 8  # the budget search's batch granularity


def _sizes(case: str, size: str, batch: int | None) -> dict[str, int]:
    """The case's sizes (full or ci), the batch replaced by ``batch`` when given."""
    return {**sizes_of(CASES[case], size), **({"batch": batch} if batch else {})}


def _ours(case: str, sizes: dict[str, int], device: torch.device, run_dir: Path, variant: str) -> Callable[[], Any]:
    """Our step of the case with the library's defaults changed by ``variant`` (e.g. ``fast+checkpoint``)."""
    data = load_data("synthetic", 16 * sizes["batch"])
    if CASES[case].kind == "retrain":
        return retrain_step(sizes, parse_variant(variant), data, device, 0, run_dir)
    return search_step(CASES[case], sizes, parse_variant(variant), data, device, 0, run_dir)


def _original(case: str, sizes: dict[str, int], device: torch.device, path: str) -> Callable[[], Any]:
    """The original code's step of the case."""
    modules = original_darts.load(path, device)
    if case == "retrain-darts_v2":
        return original_darts.retrain_step(modules, sizes, device)
    return original_darts.search_step(modules, sizes, CASES[case].strategy_args["order"], device)


def measure(code: str, case: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``--steps`` steps of one code (ours in ``--variant`` | original) on one case in this process; its row:
    peak memory, and the median step time after the first."""
    device, sizes = pick_device(args.device), _sizes(case, args.size, args.batch)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    memory = PeakMemory(device, isolated=True)  # after the imports: its start is the baseline
    if args.threads:
        torch.set_num_threads(args.threads)
    times, cpu = [], []
    with tempfile.TemporaryDirectory() as run_dir:
        step = _ours(case, sizes, device, Path(run_dir), args.variant) if code == "ours" else _original(case, sizes, device, args.original)
        for _ in range(args.steps):
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            sync()
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    row = {"code": code, "case": case, "variant": args.variant if code == "ours" else "", "sizes": sizes,
           "status": "ok", "method": memory.method, "step_s": statistics.median(times[1:] or times),
           "step_cpu_s": statistics.median(cpu[1:] or cpu), "threads": torch.get_num_threads(),
           "baseline_mib": memory.start / 2**20, "peak_mib": memory.start / 2**20 + memory.peak_mb()}
    if device.type == "cuda":
        row["reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    return row


def measure_isolated(code: str, case: str, args: argparse.Namespace, variant: str = "fast",
                     batch: int | None = None) -> dict[str, Any]:
    """``measure`` in a fresh process (ours in ``variant``)."""
    argv = ["--device", args.device, "--size", args.size, "--steps", str(args.steps), "--variant", variant,
            "--threads", str(args.threads), "--one", code, case]
    argv += ["--batch", str(batch or args.batch)] if batch or args.batch else []
    argv += ["--original", args.original] if args.original else []
    row = in_fresh_process("benchmarks.memory", argv)
    return row if row.get("status") != "error" else {"code": code, "case": case, "variant": variant, **row}


def _next_probe(fits: int, fails: int | None, last: dict[str, Any]) -> int:
    """The next batch to try: extrapolate the last fitting probe's peak linearly until one fails, then bisect."""
    if fails is None:
        slope = (last["peak_mib"] - last["baseline_mib"]) / last["sizes"]["batch"]
        guess = int(last["sizes"]["batch"] + (last["budget_mib"] - last["peak_mib"]) / slope)
        return max(fits + BATCH_STEP, min(2 * fits, guess // BATCH_STEP * BATCH_STEP))
    return (fits + fails) // 2 // BATCH_STEP * BATCH_STEP


def largest_batch(code: str, args: argparse.Namespace, variant: str = "") -> dict[str, Any]:
    """The largest darts-1st batch (a multiple of BATCH_STEP) whose peak is within --budget-mib, and the probes."""
    fits, fails, batch, probes = 0, None, _sizes("darts-1st", args.size, args.batch)["batch"], []
    while len(probes) < args.probes and batch > 0 and (fails is None or fails - fits > BATCH_STEP):
        row = measure_isolated(code, "darts-1st", args, variant, batch)
        probes.append({"batch": batch, "peak_mib": row.get("peak_mib"), "status": row["status"]})
        if row["status"] == "ok" and row["peak_mib"] <= args.budget_mib:
            fits, last = batch, {**row, "budget_mib": args.budget_mib}
            batch = _next_probe(fits, fails, last)
        else:
            fails = batch if fails is None else min(fails, batch)
            batch = _next_probe(fits, fails, {}) if fits else batch // 2 // BATCH_STEP * BATCH_STEP
    return {"code": code, "variant": variant, "budget_mib": args.budget_mib, "largest_batch": fits,
            "exact": fails is not None and fails - fits <= BATCH_STEP, "probes": probes}


def table(rows: list[dict[str, Any]], budgets: list[dict[str, Any]]) -> str:
    """A Markdown table of ours (each variant) against the original per case, then the budget search."""
    orig = {r["case"]: r for r in rows if r["code"] == "original"}
    plain = {r["case"]: r for r in rows if r["code"] == "ours" and r["variant"] == PLAIN_STEP}
    lines = ["| case | batch | ours | ours MiB | original MiB | ours / original | step s (CPU: process time) | "
             "time / plain step |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (list(dict.fromkeys(x["case"] for x in rows)).index(r["case"]),
                                         r["code"] == "original")):
        o, p = orig.get(r["case"]), plain.get(r["case"])
        ratio = f"{r['peak_mib'] / o['peak_mib']:.2f}x" if _ok(r) and _ok(o) and r is not o else "-"
        key = "step_cpu_s" if r.get("method", "").startswith("peak RSS") else "step_s"  # CPU: the process's time
        slower = f"{r[key] / p[key]:.2f}x" if _ok(r) and _ok(p) and r["code"] == "ours" else "-"
        lines.append(f"| {r['case']} | {r.get('sizes', {}).get('batch', '')} | {r['variant'] or '(original)'} | "
                     f"{_mib(r, 'peak_mib')} | {_mib(o, 'peak_mib')} | {ratio} | "
                     f"{r[key]:.2f} | {slower} |" if _ok(r) else f"| {r['case']} | | {r['variant']} | "
                     f"{_mib(r, 'peak_mib')} | | | | |")
    for b in budgets:
        probes = ", ".join(f"{p['batch']}: {p['peak_mib']:.0f}" if p["peak_mib"] else f"{p['batch']}: {p['status']}"
                           for p in b["probes"])
        who = b["code"] + (f" ({b['variant']})" if b["variant"] else "")
        lines.append(f"\nlargest darts-1st batch within {b['budget_mib']} MiB, {who}: {b['largest_batch']}"
                     f"{'' if b['exact'] else ' (not bracketed within the probes)'} (probes, batch: MiB: {probes})")
    return "\n".join(lines)


def _ok(row: dict[str, Any] | None) -> bool:
    return bool(row) and row["status"] == "ok"


def _mib(row: dict[str, Any] | None, key: str) -> str:
    """A row's figure in MiB, or why there is none."""
    if row is None:
        return "-"
    return f"{row[key]:.0f}" if _ok(row) else f"{row['status']}: {row['reason'][:80]}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    p.add_argument("--original", default=None, help="a checkout of github.com/quark0/darts (or its cnn/ folder)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated, of: {', '.join(CASES)}; empty: only the budget search")
    p.add_argument("--size", choices=("full", "ci"), default="full", help="paper sizes or tiny CI sizes")
    p.add_argument("--batch", type=int, default=None, help="batch of every case (default: each case's paper batch)")
    p.add_argument("--steps", type=int, default=2, help="steps per measurement")
    p.add_argument("--variants", default=",".join(VARIANTS), help="ours, comma-separated: fast (the defaults) or "
                   "fast's modifiers joined by '+', e.g. checkpoint (memory.checkpoint=cells), no_recompute "
                   "(memory.checkpoint=none, the plain step the times are compared with; benchmarks.workloads MODIFIERS)")
    p.add_argument("--variant", default="fast", help=argparse.SUPPRESS)  # a child's one variant
    p.add_argument("--threads", type=int, default=0, help="CPU threads of each process (0: torch's default); the "
                   "time column is the process's CPU time on CPU (robust to other load with 1 thread), wall on CUDA")
    p.add_argument("--budget-mib", type=float, default=4096, help="memory budget of the largest-batch search (0: skip)")
    p.add_argument("--probes", type=int, default=6, help="most processes the largest-batch search runs per code")
    p.add_argument("--out", default="memory.json", help="the JSON result file")
    p.add_argument("--one", nargs=2, metavar=("CODE", "CASE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.case_list = [c for c in args.cases.split(",") if c]
    args.variant_list = [v for v in args.variants.split(",") if v]
    for v in args.variant_list:
        parse_variant(v)  # a bad name: ValueError naming it and the valid modifiers
    bad = [c for c in args.case_list if c not in CASES]
    if bad or not (args.case_list or args.budget_mib > 0):
        raise ValueError(f"--cases {args.cases!r} is not valid; choose among {', '.join(CASES)} (empty: only the budget search)")
    if args.steps < 1 or (args.batch is not None and args.batch < 1):
        raise ValueError(f"--steps={args.steps} and --batch={args.batch} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure every (case, code), search the largest batches, print the table and write the JSON."""
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.one:  # a child: one row as the last line of stdout
        print(json.dumps(measure(*args.one, args)))
        return {}
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.original:
        log.info("no --original: the original DARTS code's rows are skipped")
    runs = [("ours", v) for v in args.variant_list] + [("original", "")] * bool(args.original)
    rows = []
    for case in args.case_list:
        for code, variant in runs:
            if code == "ours" or case in ORIGINAL_CASES:
                log.info("measuring %s / %s %s", case, code, variant)
                rows.append(measure_isolated(code, case, args, variant))
    budgets = [largest_batch(code, args, variant) for code, variant in runs] if args.budget_mib > 0 else []
    result = {"benchmark": "memory", "steps": args.steps, "environment": environment(pick_device(args.device)),
              "results": rows, "largest_batch": budgets}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    env = result["environment"]
    print(table(rows, budgets))
    print(f"\n{env['date']} {env.get('gpu', env['cpu'])}; torch {env['torch']}, python {env['python']}; JSON: {args.out}")
    return result


if __name__ == "__main__":
    main()
