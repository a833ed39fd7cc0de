"""NATS-Bench per-epoch data: the archive reader returns the NB201 table's values and the official API's per-epoch
values and simulated times, refuses a pickle holding anything but plain data and names a missing architecture file;
Hyperband and BOHB take every epoch as a fidelity through evaluator=tabular; the size space's genotypes and network
match the benchmark's (parameter counts derived by hand and stored in the archive)."""
from __future__ import annotations

import bz2
import csv
import fractions
import os
import pathlib
import pickle
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, read_json, run_entry
from darts.data.nats import NATSArchive
from darts.data.plain_pickle import load_plain
from darts.evaluators import TabularEvaluator
from darts.runs.directory import read_jsonl
from darts.runs.discrete import HISTORY, DiscreteRun
from darts.strategies.discrete.bohb import BOHB
from search_spaces.nats_sss import CANDIDATES, DynamicShapeTinyNet, NATSSizeSpace, parse_channels
from search_spaces.nb201 import NB201Space
from search_spaces.toy import PRIMITIVES, ToySpace

NATS = SHARED_DATA / "nats"
TSS, SSS = NATS / "NATS-tss-v1_0-3ffb9-simple", NATS / "NATS-sss-v1_0-50262-simple"
TABLE = SHARED_DATA / "nb201" / "nb201_accuracies.csv"
REAL = (0, 11, 284)  # the architectures whose files ../shared/data/nats holds
# plumbing test data: each trial seed's accuracy offset and the per-epoch seconds of the synthetic toy-space archive
# (not NATS-Bench numbers)
TOY_SEEDS, TRAIN_SECONDS, EVAL_SECONDS = {777: 0.0, 888: 0.25}, 10.0, 2.0


def archive(path: Path, space) -> NATSArchive:
    """The archive at ``path``, or a skip naming it when ../shared/data lacks it."""
    if not (path / "meta.pickle.pbz2").is_file():
        pytest.skip(f"NATS-Bench archive files not found at {path} (see ../shared/data/README.md)")
    return NATSArchive(path, space)


@pytest.fixture(scope="module")
def tss() -> NATSArchive:
    """The topology archive's real files (meta and architectures 0, 11, 284)."""
    return archive(TSS, NB201Space())


@pytest.fixture(scope="module")
def sss() -> NATSArchive:
    """The size archive's real files (meta and architectures 0, 11, 284)."""
    return archive(SSS, NATSSizeSpace())


def dump(path: Path, obj) -> None:
    """``obj`` as a bz2-compressed pickle, as NATS-Bench's ``pickle_save`` writes it."""
    with bz2.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


def toy_accuracy(text: str, epochs: int) -> float:
    """The synthetic accuracy of a toy genotype after ``epochs``: 10 per 3x3 conv, plus the epochs."""
    return 10.0 * text.split("|").count("conv_3x3") + epochs


def toy_trial(accuracy: float, epochs: int = 12) -> dict:
    """A ``ResultsCount`` state dict of synthetic plumbing data: accuracy + e after epoch e, fixed epoch times."""
    valid = {f"x-valid@{i}": accuracy + i + 1 for i in range(epochs)}
    test = {f"ori-test@{i}": accuracy + i + 2 for i in range(epochs)}
    return {"epochs": epochs, "train_acc1es": dict.fromkeys(range(epochs), 50.0),
            "train_losses": dict.fromkeys(range(epochs), 1.0), "train_times": dict.fromkeys(range(epochs), TRAIN_SECONDS),
            "eval_names": ["x-valid", "ori-test"], "eval_acc1es": {**valid, **test},
            "eval_losses": dict.fromkeys([*valid, *test], 1.0), "eval_times": dict.fromkeys([*valid, *test], EVAL_SECONDS),
            "params": np.float64(0.01), "flop": 1.0, "latency": [np.float64(0.001)], "net_state_dict": None}


@pytest.fixture(scope="module")
def toy_archive(tmp_path_factory) -> Path:
    """A directory in the NATS-Bench simple format for the toy space's 8 genotypes, holding SYNTHETIC plumbing test
    data (not benchmark results): cifar10-valid trials of seeds 777 and 888, validation accuracy after epoch e
    ``toy_accuracy`` + the seed's offset, 10 s of training and 2 s of evaluation per epoch."""
    path = tmp_path_factory.mktemp("toy-simple")
    texts = ["|".join(ops) for ops in np.array(np.meshgrid(*[PRIMITIVES] * 3, indexing="ij")).reshape(3, -1).T]
    dump(path / "meta.pickle.pbz2", {"meta_archs": texts, "total_archs": len(texts), "arch2infos": None,
                                     "evaluated_indexes": set()})
    for index, text in enumerate(texts):
        results = {("cifar10-valid", s): toy_trial(toy_accuracy(text, 0) + offset) for s, offset in TOY_SEEDS.items()}
        results[("cifar10", 777)] = toy_trial(toy_accuracy(text, 0))
        dump(path / f"{index:06d}.pickle.pbz2", {"12": {"arch_index": index, "arch_str": text, "all_results": results,
                                                        "dataset_seed": {"cifar10-valid": list(TOY_SEEDS)}}})
    return path


def test_topology_archive_matches_the_nb201_table(tss):
    """For architectures 0, 11 and 284 the archive's 12- and 200-epoch accuracies (seed means) are the NB201 table's
    columns, to the table's 4 decimals."""
    if not TABLE.is_file():
        pytest.skip(f"the NB201 table is not at {TABLE}")
    rows = {int(r["index"]): r for r in csv.DictReader(TABLE.open())}
    for index in REAL:
        row, values = rows[index], tss.query(tss.archs[index])
        assert tss.archs[index] == row["arch"] and tss.index_of(row["arch"]) == index
        for column in set(row) - {"index", "arch"}:
            assert values[column] == pytest.approx(float(row[column]), abs=5e-5), (index, column)


def test_per_epoch_values_follow_the_official_api(tss, sss):
    """Epoch values, trials and simulated times are the official API's (NATS-Bench api_utils.py ``get_more_info``,
    ``simulate_train_eval``), hard-coded from the raw records: size-space architecture 11 (8:8:8:16:32), hp '12',
    cifar10-valid x-valid after epoch 4 (iepoch 3) is 54.58/52.768/48.42 for seeds 777/888/999; its time is 4 epochs
    of 2.9399166 s of training plus one 1.3633020 s evaluation; topology architecture 11 trains 12.4620568 s per
    epoch and evaluates in 4.1512517 s; its CIFAR-100 validation set was evaluated after the 200th epoch only."""
    arch = "8:8:8:16:32"
    assert sss.seeds(arch, "cifar10_valid_4ep") == (777, 888, 999)
    assert sss.query(arch, "cifar10_valid_4ep", seed=888) == pytest.approx(52.767999985351565, abs=1e-9)
    assert sss.query(arch, "cifar10_valid_4ep") == pytest.approx((54.57999998901367 + 52.767999985351565 + 48.42) / 3)
    assert sss.query(arch, "cifar10_valid_4ep_time") == pytest.approx(4 * 2.9399166107177734 + 1.3633019924163818)
    assert sss.query(arch, "cifar10_valid_12ep") == pytest.approx(73.43733331, abs=1e-7)
    assert tss.query(tss.archs[11], "cifar10_valid_4ep_time") == pytest.approx(4 * 12.462056795756022 + 4.151251713434855)
    assert "cifar10_test_90ep" in sss.columns and "cifar10_test_200ep" in tss.columns
    with pytest.raises(ValueError, match="unknown column 'cifar10_valid_13ep'"):
        tss.query(tss.archs[11], "cifar10_valid_13ep")  # epoch 13 of the 12-epoch schedule
    with pytest.raises(ValueError, match="'cifar100' 'x-valid' was not evaluated after epoch 50 of the 200-epoch"):
        tss.query(tss.archs[11], "cifar100_valid_50of200ep")  # evaluated after the last epoch only


def test_missing_architecture_file_is_named_in_one_line(tss):
    """An architecture whose file the directory lacks raises FileNotFoundError naming that file."""
    with pytest.raises(FileNotFoundError, match=r"NATS-tss-v1_0-3ffb9-simple/000001\.pickle\.pbz2 is missing") as err:
        tss.query(tss.archs[1], "cifar10_valid_12ep")
    assert "\n" not in str(err.value)


class Touch:
    """Unpickling it would create ``marker`` (it must never happen)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.mark.parametrize("make", [lambda p: fractions.Fraction(1, 3), lambda p: os.system, lambda p: Touch(p)],
                         ids=["instance", "function", "call"])
def test_a_pickle_holding_other_objects_is_refused(tmp_path, make):
    """A pickle holding a class instance, a function reference or a call is refused with one line naming the file,
    before anything in it runs; so is such a meta file of an archive directory."""
    marker = tmp_path / "ran"
    dump(tmp_path / "meta.pickle.pbz2", {"meta_archs": ["|".join(["skip_connect"] * 3)], "x": [make(marker)]})
    with pytest.raises(ValueError, match=r"meta\.pickle\.pbz2 holds .*not only plain containers and numbers") as err:
        load_plain(tmp_path / "meta.pickle.pbz2")
    assert "\n" not in str(err.value) and not marker.exists()
    with pytest.raises(ValueError, match="meta.pickle.pbz2 holds"):
        NATSArchive(tmp_path, ToySpace())


def test_size_space_genotypes_and_network_are_the_benchmarks(sss):
    """A channel string round-trips with its benchmark index (main-sss.py traverse_net order; 32,768 = 8^5) and its
    archive record; a mutation changes exactly one layer; the CIFAR-10 network of 8:8:8:8:8 has 11,714 parameters and
    of 8:8:8:16:32 49,202, derived by hand from InferTinyCellNet.py (stem 232; an 8->8 cell of five 3x3 ReLUConvBN
    2,960; an 8->8 residual block 1,248; 8->16 block 3,648; the 16->32 cell 37,760 with its 1x1 FactorizedReduce skip;
    BN 2c and classifier 11c), and every network's count is the archive's ``params`` (millions) for all datasets."""
    space, generator = NATSSizeSpace(), torch.Generator().manual_seed(0)
    assert parse_channels("64:64:64:64:64").index == len(CANDIDATES) ** 5 - 1 == len(sss) - 1
    for _ in range(5):
        genotype = space.sample(generator)
        assert space.parse(space.to_text(genotype)) == genotype == space.from_json(space.to_json(genotype))
        assert sum(a != b for a, b in zip(space.mutate(genotype, generator), genotype)) == 1
    counts = {"8:8:8:8:8": 11714, "8:8:8:16:32": 49202}
    for index in REAL:
        text = sss.archs[index]
        assert parse_channels(text).index == index
        for data, classes in (("cifar10", 10), ("cifar100", 100), ("imagenet16", 120)):
            params = sum(p.numel() for p in DynamicShapeTinyNet(text, classes).parameters())
            assert params == counts.get(text, params) if classes == 10 else True
            assert params == round(sss.query(text, f"{data}_params") * 1e6), (text, data)
    with pytest.raises(ValueError, match="layer 2 has 12 channels"):
        space.parse("8:8:12:8:8")


def test_hyperband_takes_every_epoch_as_a_fidelity(toy_archive, tmp_path):
    """darts-search strategy=hyperband evaluator=tabular on an archive directory (synthetic toy-space records) writes
    history.jsonl with each rung's fidelity (1, 4, 12 epochs) and its simulated time as the cost (epochs x 10 s of
    training + 2 s of evaluation), and reports the archive's summary for the result."""
    run_entry("train_search.py", tmp_path / "run", "search_space=toy", "strategy=hyperband", "evaluator=tabular",
              f"evaluator.path={toy_archive}", "strategy.budget=13")
    records = read_jsonl(tmp_path / "run" / HISTORY)
    assert [r["fidelity"] for r in records] == [1] * 9 + [4] * 3 + [12]
    assert all(r["cost"] == r["fidelity"] * TRAIN_SECONDS + EVAL_SECONDS for r in records)
    mean = sum(TOY_SEEDS.values()) / len(TOY_SEEDS)
    assert all(r["score"] == toy_accuracy(r["genotype"], r["fidelity"]) + mean for r in records)  # the trials' mean
    result = read_json(tmp_path / "run" / "result.json")
    assert result["fidelity"] == 12 and result["benchmark"]["cifar10_test_12ep"] == toy_accuracy(result["genotype"], 13)


def test_bohb_draws_one_trial_per_evaluation(toy_archive, tmp_path):
    """BOHB with evaluator.trial=random scores each evaluation with one trial (NATS-Bench simulate_train_eval's
    is_random=True), recorded as trial_seed, reproducibly from the seed; a CSV table cannot draw trials; a training,
    loss or cost column cannot be the score."""
    def run(name: str) -> list[dict]:
        DiscreteRun(tmp_path / name, ToySpace(), None, partial(BOHB, budget=13, max_fidelity=12, seed=3),
                    partial(TabularEvaluator, path=str(toy_archive), trial="random", seed=3)).run()
        return read_jsonl(tmp_path / name / HISTORY)

    records = run("a")
    assert {r["trial_seed"] for r in records} == set(TOY_SEEDS)
    for r in records:
        assert r["score"] == toy_accuracy(r["genotype"], r["fidelity"]) + TOY_SEEDS[int(r["trial_seed"])]
    assert [r["score"] for r in run("b")] == [r["score"] for r in records]
    for column in ("cifar10_train_12ep", "cifar10_params", "cifar10_valid_12ep_loss"):  # never the search's score
        with pytest.raises(ValueError, match=f"evaluator.column='{column}' cannot score a search"):
            TabularEvaluator(ToySpace(), path=str(toy_archive), column=column)
    if TABLE.is_file():
        with pytest.raises(ValueError, match="evaluator.trial='random'.*per-trial"):
            TabularEvaluator(NB201Space(), path=str(TABLE), trial="random")
