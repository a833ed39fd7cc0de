"""``darts-deploy STEP RUN_DIR [options]``: one deployment step on a retraining run (or an earlier step's directory).

    darts-deploy prune RUN_DIR --amount 0.5 [--structured] [--finetune-epochs 10]
    darts-deploy quantize RUN_DIR [--calibration-images 1024]
    darts-deploy export RUN_DIR [--check-images 256]

Each step's module is imported only when it runs, so ``--help`` needs no optional dependency (quantize and export
need the ``deploy`` extra: ``pip install 'darts-nas[deploy]'``).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Any

USER_ERRORS = (ValueError, FileNotFoundError)


def _prune(commands: Any) -> None:
    p = commands.add_parser("prune", help="magnitude pruning and fine-tuning (torch.nn.utils.prune)",
                            description="Prune a retrained network (global magnitude, or whole channels), then "
                                        "fine-tune it with the masks fixed; writes RUN_DIR/prune_<pct>.")
    p.add_argument("run_dir", type=Path, help="a retraining run, or an earlier prune step's directory")
    p.add_argument("--amount", type=float, required=True, help="fraction of weights (or channels) pruned")
    p.add_argument("--structured", action="store_true", help="prune whole channels inside the ops")
    p.add_argument("--finetune-epochs", type=int, default=10, help="fine-tuning epochs (0: none)")
    p.add_argument("--lr", type=float, default=None, help="fine-tuning rate (default: the retraining's / 10)")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="cap on fine-tuning steps per epoch")
    p.add_argument("--device", default="auto", help="fine-tuning device: auto (cuda if available), cpu, cuda")
    p.add_argument("--out", type=Path, default=None, help="the run's directory (default: RUN_DIR/prune_<pct>)")
    p.add_argument("--test-images", type=int, default=None, help="a sample of the test split (default: all)")
    p.set_defaults(step=lambda a: _call("prune", "prune_run", a.run_dir, a.amount, a.structured, a.finetune_epochs,
                                        a.lr, a.steps_per_epoch, a.device, a.out, a.test_images))


def _quantize(commands: Any) -> None:
    p = commands.add_parser("quantize", help="post-training static int8 (PyTorch 2 Export quantisation)",
                            description="Quantise a retrained (or pruned) network to int8, calibrated on training "
                                        "images; reports accuracy, size and CPU latency before and after.")
    p.add_argument("run_dir", type=Path, help="a retraining run, or a prune step's directory")
    p.add_argument("--out", type=Path, default=None, help="the int8 run's directory (default: RUN_DIR/int8)")
    p.add_argument("--calibration-images", type=int, default=1024, help="training images that set the ranges")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="batch sizes timed")
    p.add_argument("--repeats", type=int, default=50, help="timed forward passes per batch size (median)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads while timing")
    p.add_argument("--test-images", type=int, default=None, help="a sample of the test split (default: all)")
    p.set_defaults(step=lambda a: _call("quantize", "quantize", a.run_dir, a.out, a.calibration_images,
                                        tuple(a.batch_sizes), a.repeats, a.threads, a.test_images))


def _export(commands: Any) -> None:
    p = commands.add_parser("export", help="ONNX and torch.export, checked against PyTorch",
                            description="Export a network to ONNX (run with onnxruntime) and a torch.export "
                                        "program; both are checked against the PyTorch logits on test images.")
    p.add_argument("run_dir", type=Path, help="a retraining run, or a prune / int8 step's directory")
    p.add_argument("--out", type=Path, default=None, help="the export's directory (default: RUN_DIR/export)")
    p.add_argument("--check-images", type=int, default=256, help="test images compared with PyTorch")
    p.add_argument("--atol", type=float, default=None,
                   help="largest |logit difference| allowed (default: darts.deploy.export.FP32_ATOL for fp32, none "
                        "for int8)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (torch.onnx's dynamo exporter: >= 18)")
    p.add_argument("--test-images", type=int, default=None, help="a sample of the test split (default: all)")
    p.set_defaults(step=lambda a: _call("export", "export", a.run_dir, a.out, a.check_images, a.atol, a.opset,
                                        a.test_images))


def _call(module: str, function: str, *args: Any) -> dict[str, Any]:
    """``darts.deploy.<module>.<function>(*args)``, imported now; a missing optional dependency is a user error."""
    try:
        step = getattr(importlib.import_module(f"darts.deploy.{module}"), function)
    except ModuleNotFoundError as err:
        raise ValueError(f"darts-deploy {module} needs {err.name}: pip install 'darts-nas[deploy]'") from None
    return step(*args)


def parser() -> argparse.ArgumentParser:
    """The ``darts-deploy`` command line, one subcommand per step."""
    p = argparse.ArgumentParser(prog="darts-deploy", description=__doc__.split("\n\n")[0].replace("``", ""))
    commands = p.add_subparsers(title="steps", metavar="STEP", required=True)
    for add in (_prune, _quantize, _export):
        add(commands)
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` and run the step; a user error (bad input, a missing run) exits with status 1 and one line on
    stderr, as the other commands do."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("darts").setLevel(logging.INFO)  # the steps' progress; the exporters' own notes stay quiet
    try:
        args.step(args)
    except USER_ERRORS as err:
        sys.exit(" ".join(f"{type(err).__name__}: {err}".split()))


if __name__ == "__main__":
    main()
