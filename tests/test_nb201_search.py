"""A DARTS search in the NAS-Bench-201 space reports the benchmark accuracy of every epoch's genotype."""
from __future__ import annotations

import json

from conftest import read_json, run_entry, tensorboard_tags
from search_spaces.nb201.genotype import parse_arch


def test_nb201_search_logs_benchmark_accuracy(cifar_mini, nb201_csv, tmp_path):
    """An NB201 search on real images logs the table's accuracies per epoch and in result.json."""
    run = tmp_path / "run"
    run_entry("train_search.py", run, "search_space=nb201", f"benchmark.path={nb201_csv}", "dataset=imagefolder",
              f"dataset.root={cifar_mini}", "model.init_channels=4", "model.cells_per_stage=1", "epochs=2",
              "steps_per_epoch=2", "batch_size=8")
    result = read_json(run / "result.json")
    parse_arch(result["genotype"])
    assert 0 < result["benchmark"]["cifar10_test_200ep"] < 100
    records = [json.loads(line) for line in (run / "genotypes.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert all({"cifar10_test_200ep", "cifar100_test_12ep", "imagenet16_valid_12ep"} <= r["benchmark"].keys()
               for r in records)
    scalars = set(tensorboard_tags(run)["scalars"])
    assert {"benchmark/cifar10_test_200ep", "benchmark/cifar100_test_200ep", "benchmark/imagenet16_test_200ep",
            "benchmark/cifar10_valid_12ep"} <= scalars


def test_benchmark_rejects_darts_space(nb201_csv, tmp_path):
    """Asking for the NB201 table in the DARTS space fails with a clear message before training."""
    proc = run_entry("train_search.py", tmp_path / "run", f"benchmark.path={nb201_csv}", "dataset=fake",
                     "dataset.num_train=16", "dataset.num_test=8", "batch_size=4", "model.layers=3", "model.init_channels=4",
                     "epochs=1", check=False)
    assert proc.returncode != 0 and "benchmark.path is for search_space=nb201" in proc.stderr
