"""The DARTS evaluation protocol as one resumable command (darts-protocol): searches, selection on a held-out split,
final retraining, report; at smoke scale on real images, killed after its first stage and run again."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from conftest import command as in_process


def command(study, cifar_mini) -> list[str]:
    """darts-protocol darts_v1 at smoke scale: 2 searches of one step, 1-epoch selection, 2 one-step retrainings."""
    data = ["dataset=imagefolder", f"dataset.root={cifar_mini}", "progress=false", "batch_size=8",
            "steps_per_epoch=1", "epochs=1"]
    return [sys.executable, "-m", "darts.app.protocol", "darts_v1", "--study", str(study), "--seeds", "0,1",
            "--retrain-seeds", "0,1", "--select-epochs", "1",
            "--search", *data, "model.layers=2", "model.init_channels=4",
            "--retrain", *data, "model.layers=3", "model.init_channels=4"]


def test_the_protocol_runs_end_to_end_and_resumes_after_a_kill(cifar_mini, tmp_path):
    """Killed once its search stage finished, the protocol run again skips the searches, continues with selection and
    the final retraining of the best-validated cell, and ends with the report."""
    study = tmp_path / "study"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command(study, cifar_mini), cwd=ROOT, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (study / "search" / "done").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    searches = sorted((study / "search").glob("*/result.json"))
    assert len(searches) == 2 and not (study / "final" / "done").exists()
    stamps = [p.stat().st_mtime_ns for p in searches]
    proc = subprocess.run(command(study, cifar_mini), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in searches] == stamps  # the finished stage was not run again
    selected = [json.loads(p.read_text()) for p in sorted((study / "select").glob("*/result.json"))]
    finals = [json.loads(p.read_text()) for p in (study / "final").glob("*/result.json")]
    assert len(selected) == 2 and all("best_valid_accuracy" in r for r in selected)
    best = max(selected, key=lambda r: r["best_valid_accuracy"])  # the first of the best, in directory order
    assert len(finals) == 2 and {r["genotype"] for r in finals} == {best["genotype"]}
    report = (study / "report" / "report.md").read_text()
    assert "DARTS" in report and (study / "report" / "report.csv").is_file()
    assert sorted(p.name for p in (study / "final").iterdir() if p.is_dir()) == ["seed=0", "seed=1"]  # the swept key


def test_a_preset_without_a_protocol_is_one_line(tmp_path):
    """A preset that is not a DARTS-space search (no `protocol` node), or an unknown one, stops with one line."""
    for name, expected in (("nb201_gdas", "has no `protocol` node"), ("darts_v9", "preset 'darts_v9' is not valid")):
        proc = in_process("darts.app.protocol", name, "--study", str(tmp_path))
        assert proc.returncode == 1 and expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["plain", "a,b=c", "it's"])
def test_quoting_keeps_a_value_whole_for_hydra(value):
    """protocol.quoted gives a Hydra override value that parses back to the same string."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from darts.app import protocol
    assert OverridesParser.create().parse_overrides([f"genotype={protocol.quoted(value)}"])[0].value() == value
