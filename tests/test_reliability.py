"""A run never loses or mixes up work and never reports a broken result: unique run directories, the divergence
guard, settings checked when the config is built, tolerant readers, validated tables, one-line user errors."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from darts.app import rundir
from conftest import ROOT, read_json, run_entry
from darts.data.datasets import image_folder
from darts.context import amp_dtype
from darts.data.search_split import SearchData
from darts.runs import lock
from darts.runs.search import SearchRun
from darts.settings import SGD
from darts.strategies.gradient.darts import DARTS
from search_spaces.nb201 import NB201Benchmark
from search_spaces.toy import ToySpace

TOY = ["search_space=toy", "dataset=fake", "dataset.num_train=32", "dataset.num_test=8", "dataset.image_size=8",
       "batch_size=4", "device=cpu"]


def entry(script: str, *args: str, cwd: Path = ROOT) -> subprocess.Popen:
    """An entry point started in the background (no hydra.run.dir: the default run directory)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / script), "progress=false", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The failed run's stderr, checked to be exactly one line without a traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
def test_runs_started_together_get_their_own_directories(tmp_path):
    """Two searches started at once from one directory with the default run directory (same second) write two run
    directories, each with its own config (its own seed) and its own full history."""
    procs = [entry("train_search.py", *TOY, "epochs=2", f"seed={seed}", cwd=tmp_path) for seed in (1, 2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    runs = sorted(tmp_path.glob("outputs/*/*"))
    assert len(runs) == 2
    assert sorted(OmegaConf.load(run / "config.yaml").seed for run in runs) == [1, 2]
    assert all(len((run / "genotypes.jsonl").read_text().splitlines()) == 2 for run in runs)


@pytest.mark.slow
def test_two_processes_resuming_one_run_directory_run_it_once(tmp_path):
    """Two resume=DIR started together: one continues the run, the other stops with one line naming the process that
    holds the directory; the run's files hold each epoch once."""
    run = tmp_path / "run"
    big = [*TOY, "dataset.num_train=512"]  # long enough epochs that the first process is still running
    run_entry("train_search.py", run, *big, "epochs=1")
    procs = [entry("train_search.py", f"resume={run}", "epochs=4") for _ in range(2)]
    outs = [proc.communicate(timeout=300) for proc in procs]
    assert sorted(proc.returncode for proc in procs) == [0, 1], [err[-2000:] for _, err in outs]
    refused = next(err for proc, (_, err) in zip(procs, outs) if proc.returncode == 1).strip()
    assert "\n" not in refused and "Traceback" not in refused
    assert f"{run} is in use by process " in refused and "one process per run directory" in refused
    epochs = [json.loads(line)["epoch"] for line in (run / "genotypes.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3] and read_json(run / "result.json")["epochs"] == 4


@pytest.mark.slow
def test_a_killed_holders_lock_is_taken_over(tmp_path):
    """The lock of a process that died (killed, no clean-up) is the next process's: the kernel released it."""
    code = f"from darts.runs import lock; lock.acquire({str(tmp_path)!r}); import time; time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.time() + 60
    while not (tmp_path / lock.LOCK).is_file() or not (tmp_path / lock.LOCK).read_text():
        assert time.time() < deadline and holder.poll() is None
        time.sleep(0.05)
    with pytest.raises(ValueError, match=f"in use by process {holder.pid} "):
        lock.acquire(tmp_path)
    holder.kill()
    holder.wait()
    lock.acquire(tmp_path)
    assert f"process {os.getpid()} " in (tmp_path / lock.LOCK).read_text()
    lock.release(tmp_path)


def test_a_directory_holding_a_run_is_never_reused(tmp_path):
    """A new run pointed at a directory that holds a run is refused, leaving that run's config untouched."""
    run = tmp_path / "run"
    run_entry("train_search.py", run, *TOY, "epochs=1")
    config = (run / "config.yaml").read_text()
    message = one_line_error(run_entry("train_search.py", run, *TOY, "epochs=1", "seed=5", check=False))
    assert "already holds a run" in message and f"resume={run}" in message
    assert (run / "config.yaml").read_text() == config


def test_new_run_dir_never_returns_an_existing_directory(tmp_path):
    """new_run_dir creates the directory itself, adding a suffix when it exists, and is stable within a process."""
    (tmp_path / "a").mkdir()
    made = rundir.new_run_dir(str(tmp_path / "a"))
    assert made == str(tmp_path / "a_1") and Path(made).is_dir() and rundir.new_run_dir(str(tmp_path / "a")) == made


def test_a_diverging_search_stops_keeps_its_last_checkpoint_and_reports_nothing(tmp_path):
    """Arch steps from epoch 1 with an absurd arch learning rate: the search stops in epoch 1 with one line naming
    the epoch, the step and strategy.arch_lr; epoch 0's checkpoint and history stay; no result, no genotype file."""
    run = tmp_path / "run"
    proc = run_entry("train_search.py", run, *TOY, "epochs=3", "strategy.arch_start_epoch=1", "strategy.arch_lr=1e30",
                     check=False)
    message = one_line_error(proc)
    assert re.match(r"Diverged: the search diverged in epoch 1: non-finite arch parameters at step \d+;", message)
    assert "strategy.arch_lr" in message and "checkpoint (epoch 0) is kept" in message
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 0
    assert len((run / "genotypes.jsonl").read_text().splitlines()) == 1
    assert not (run / "result.json").exists() and not (run / "genotype.txt").exists()


def test_a_diverging_retraining_stops_without_a_result(tmp_path):
    """A retraining with an absurd learning rate stops with one line naming optimizer.lr; no result.json (the NaN
    model would otherwise score 'test accuracy 100%')."""
    run = tmp_path / "run"
    message = one_line_error(run_entry("train_final.py", run, *TOY, "genotype=conv_3x3|conv_3x3|conv_3x3", "epochs=2",
                                       "optimizer.lr=1e12", "optimizer.grad_clip=null", check=False))
    assert "the retraining diverged in epoch" in message and "optimizer.lr=1000000000000.0" in message
    assert not (run / "result.json").exists()


@pytest.mark.parametrize("args, expected", [
    (["batch_size=0"], "batch_size=0 is not valid: an integer >= 1"),
    (["train_portion=1.5"], "train_portion=1.5 is not valid: a number in (0, 1)"),
    (["epochs=-1"], "epochs=-1 is not valid: an integer >= 1"),
    (["device=cuda:7"], "device='cuda:7'"),
    (["precision=fp16"], "precision='fp16' is not valid; choose one of ('auto', 'fp32', 'tf32', 'bf16')"),
    (["+foo=1"], "'+foo=1' adds a key"),
    (["resume=/no/such/run"], "resume='/no/such/run': no run in that directory"),
    (["strategy=dartz"], "strategy='dartz' is not valid; choose one of beta_darts, "),
    (["strategy=random", "evaluator=tabular", "+strategy.budget=300"], "already at 'strategy.budget'"),
    (["strategy.nonexistent=1"], "Could not override 'strategy.nonexistent'"),
], ids=["batch_size", "train_portion", "epochs", "device", "precision", "plus", "resume", "group-option",
        "hydra-append", "hydra-override"])
def test_user_errors_are_one_line(tmp_path, args, expected):
    """Bad settings stop the search with status 1 and one line on stderr naming the key, the value and the fix."""
    if args == ["device=cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    proc = run_entry("train_search.py", tmp_path / "run", *TOY, "epochs=1", *args, check=False)
    assert expected in one_line_error(proc)


def test_a_bad_genotype_is_one_line(tmp_path):
    """train_final.py with an unknown genotype name stops with one line listing the published names."""
    message = one_line_error(run_entry("train_final.py", tmp_path / "run", "genotype=DARTS_V9", check=False))
    assert "unknown published genotype 'DARTS_V9'" in message and "DARTS_V2" in message


def test_settings_are_checked_with_their_ranges(tmp_path):
    """The owner of each setting (the search run, the search split, the weights' SGD) names a bad one with its value
    and valid range when it is built, before any data is read; good settings pass."""
    SGD(lr=0.1, grad_clip=None)
    make = {"epochs": lambda v: SearchRun(tmp_path, ToySpace(), None, DARTS, epochs=v),
            "train_portion": lambda v: SearchData(lambda: None, v, 0),
            "optimizer.lr": lambda v: SGD(lr=v), "optimizer.grad_clip": lambda v: SGD(grad_clip=v)}
    for key, value, words in [("epochs", 0, "an integer >= 1"), ("train_portion", 0.0, "(0, 1)"),
                              ("optimizer.lr", -1, "> 0"), ("optimizer.grad_clip", 0, "null or a number > 0"),
                              ("epochs", True, "an integer")]:
        with pytest.raises(ValueError, match=rf"{key}={value!r} is not valid: .*{words.replace('(', '.').replace(')', '.')}"):
            make[key](value)


def test_a_corrupted_checkpoint_is_named(tmp_path):
    """Resuming from a checkpoint cut short stops with one line naming the file."""
    run = tmp_path / "run"
    run_entry("train_search.py", run, *TOY, "epochs=1")
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    message = one_line_error(run_entry("train_search.py", run, f"resume={run}", "epochs=2", check=False))
    assert str(run / "checkpoint.pt") in message and "not a readable checkpoint" in message


def test_a_run_without_a_completed_checkpoint_starts_over_and_temporary_files_go(tmp_path):
    """A run killed during its first checkpoint write (config, no checkpoint, a leftover .tmp) resumes by saying so
    and starting over, and ends like a run started afresh; the temporary file is removed."""
    run = tmp_path / "run"
    run_entry("train_search.py", run, *TOY, "epochs=1")
    reference = read_json(run / "result.json")
    for name in ("checkpoint.pt", "result.json", "genotype.txt", "genotype.json"):
        (run / name).unlink()
    (run / "checkpoint.pt8f2k.tmp").write_bytes(b"half a checkpoint")
    proc = run_entry("train_search.py", run, f"resume={run}")
    assert "no completed checkpoint" in proc.stdout and "starting over" in proc.stdout
    assert read_json(run / "result.json")["genotype"] == reference["genotype"]
    assert not list(run.glob("*.tmp")) and len((run / "genotypes.jsonl").read_text().splitlines()) == 1


def test_deterministic_runs_are_bitwise_repeatable(tmp_path):
    """deterministic=true (PyTorch's deterministic algorithms) runs, and two such runs write identical histories."""
    histories = []
    for name in ("a", "b"):
        run_entry("train_search.py", tmp_path / name, *TOY, "epochs=2", "deterministic=true", "strategy=gdas")
        histories.append([{k: v for k, v in r.items() if k != "epoch_time"} for r in
                          map(json.loads, (tmp_path / name / "genotypes.jsonl").read_text().splitlines())])
    assert histories[0] == histories[1]


def test_precision_auto_is_fp32_on_every_device():
    """precision=auto is the papers' fp32 on CPU and CUDA alike; bf16 is one override away."""
    assert amp_dtype("auto", torch.device("cuda")) is None and amp_dtype("auto", torch.device("cpu")) is None
    assert amp_dtype("bf16", torch.device("cuda")) == torch.bfloat16


@pytest.mark.parametrize("edit, problem", [
    (lambda rows: rows[:2] + [rows[2].replace("|skip_connect~", "|skip_conect~", 1)] + rows[3:], ":3: arch"),
    (lambda rows: rows[:3] + [rows[3].rsplit(",", 1)[0] + ",nan"] + rows[4:], ":4: non-finite value in column"),
    (lambda rows: [rows[0] + ",cifar10_valid_12ep"] + [r + ",1" for r in rows[1:]], "repeats the columns"),
    (lambda rows: rows[:1], "holds no architecture rows"),
], ids=["arch", "nan", "repeated-column", "empty"])
def test_tables_are_validated_when_loaded(nb201_csv, tmp_path, edit, problem):
    """A malformed table (a bad arch string, a non-finite number, a repeated column, no rows) is refused when loaded,
    naming the file and, for a row, its line."""
    rows = nb201_csv.read_text().splitlines()[:50]
    path = tmp_path / "table.csv"
    path.write_text("\n".join(edit(rows)) + "\n")
    with pytest.raises(ValueError) as err:
        NB201Benchmark(path)
    assert problem in str(err.value) and str(path) in str(err.value)


def test_a_binary_file_given_as_a_table_is_named(tmp_path):
    """A binary file given as the table is refused naming it."""
    path = tmp_path / "weights.csv"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="is not a text CSV file"):
        NB201Benchmark(path)


def test_a_corrupt_image_is_named(tmp_path):
    """An image folder with a file that is not an image is refused naming that file."""
    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "0.png")
    (tmp_path / "train" / "b" / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"train/b/1\.png is not a readable image"):
        image_folder(str(tmp_path))


def test_a_diverging_candidate_training_stops_the_discrete_search():
    """A candidate whose training from scratch diverges stops the search with an error naming the candidate and
    evaluator.lr (its score would be meaningless)."""
    from darts.data.datasets import fake
    from darts.divergence import Diverged
    from darts.evaluators import TrainEvaluator
    from darts.data.search_split import SearchData
    from search_spaces.toy import ToySpace

    data = SearchData(lambda: fake(num_train=32, num_test=8, image_size=8), 0.5, 0)
    evaluator = TrainEvaluator(ToySpace(4), data, epochs=2, batch_size=8, lr=1e12, momentum=0.0, nesterov=False)
    evaluator.prepare()
    with pytest.raises(Diverged, match=r"training candidate 3 \(conv_3x3\|conv_3x3\|conv_3x3\) diverged.*evaluator\.lr"):
        evaluator.evaluate(ToySpace().parse("conv_3x3|conv_3x3|conv_3x3"), 3)
