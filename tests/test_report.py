"""The study report (darts.reporting.report) over real multiruns of train_search.py and train_final.py: its statistics equal
those of the runs' own files, genotype agreement is counted right, and it writes its files and one-line errors."""
from __future__ import annotations

import csv
import json
import statistics
from collections import Counter
from pathlib import Path

import pytest

from conftest import Done, command, read_json, started
from darts.reporting.report import (PUBLISHED, agreement, collect, distance, edge_agreement, main,
                          mean_pairwise_distance, published, skip_count, summarise, write_report)
from darts.reporting.plots import benchmark_column, epoch_curves
from darts.runs.reader import Run
from darts.supernet import OpSet

TINY = ("model.init_channels=4", "model.cells_per_stage=1", "steps_per_epoch=2", "batch_size=8")
CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def sweep(script: str, sweep_dir: Path, *overrides: str) -> Done:
    """A Hydra multirun (``-m``) of an entry point writing its jobs into ``sweep_dir`` (run in this process)."""
    return started(script, "-m", f"hydra.sweep.dir={sweep_dir}", "progress=false", *overrides)


@pytest.fixture(scope="module")
def study(tmp_path_factory, cifar_mini, nb201_csv) -> Path:
    """A study: DARTS and GDAS (2 seeds, 2 epochs, NB201 table), random search and evolution (2 seeds, 20
    evaluations of the table), and an NB201 cell retrained for 1 epoch (2 seeds), each a real multirun."""
    root = tmp_path_factory.mktemp("study")
    data = ("search_space=nb201", "dataset=imagefolder", f"dataset.root={cifar_mini}")
    table = ("search_space=nb201", "evaluator=tabular", f"evaluator.path={nb201_csv}", "seed=0,1", "strategy.budget=20")
    procs = [
        sweep("train_search.py", root / "gradient", *data, *TINY, "strategy=darts,gdas", "seed=0,1", "epochs=2",
              f"benchmark.path={nb201_csv}"),
        sweep("train_search.py", root / "random", "strategy=random", *table),
        sweep("train_search.py", root / "evolution", "strategy=evolution", *table),
        sweep("train_final.py", root / "final", *data, *TINY, f"genotype='{CELL}'", "epochs=1", "seed=0,1"),
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
    return root


def result_groups(study: Path) -> dict[str, list[Path]]:
    """Run directories by method, read independently of darts.reporting.report: strategy class and space from config.yaml."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(study.glob("*/*/result.json")):
        text = (path.parent / "config.yaml").read_text()
        strategy = next((line.split(".")[-1] for line in text.splitlines() if "darts.strategies." in line),
                        "train_final")
        groups.setdefault(f"{strategy} / NB201Space", []).append(path.parent)
    return groups


def ops(text: str) -> list[str]:
    """The op of each edge of an NB201 string, in edge order (by splitting the text, not by the space)."""
    return [token.split("~")[0] for token in text.split("|") if "~" in token]


def test_statistics_equal_the_runs_own_results(study):
    """Mean and std (ddof=1) of every final metric per method equal those of the runs' result.json and histories."""
    groups = result_groups(study)
    assert sorted(groups) == ["DARTS / NB201Space", "GDAS / NB201Space", "RandomSearch / NB201Space",
                              "RegularizedEvolution / NB201Space", "train_final / NB201Space"]
    summary = summarise(collect([study]))
    assert sorted(summary) == sorted(groups)
    for method, dirs in groups.items():
        results = [read_json(d / "result.json") for d in dirs]
        keys = ("valid_acc", "score", "test_accuracy", "params")
        expected = {k: [r[k] for r in results] for k in keys if k in results[0]}
        expected.update({k: [r["benchmark"][k] for r in results] for k in results[0].get("benchmark", {})})
        if "elapsed" in results[0]:
            expected["search_cost_s"] = [r["elapsed"] for r in results]
        elif "valid_acc" in results[0]:
            expected["search_cost_s"] = [sum(json.loads(line)["epoch_time"] for line in
                                             (d / "genotypes.jsonl").read_text().splitlines()) for d in dirs]
        assert len(expected) >= 2
        for name, values in expected.items():
            stat = summary[method][name]
            assert (stat.n, stat.mean) == (2, pytest.approx(statistics.mean(values), abs=1e-9)), (method, name)
            assert stat.std == pytest.approx(statistics.stdev(values), abs=1e-9), (method, name)


def test_agreement_counts_each_edge_across_seeds(study):
    """Per method, each edge's most common op and its share, the mean distance and the most common genotype equal
    those counted from the final genotype strings."""
    agreements = agreement(collect([study]))
    for method, dirs in result_groups(study).items():
        texts = [read_json(d / "result.json")["genotype"] for d in dirs]
        a, cells = agreements[method], [ops(t) for t in texts]
        for vote in a.edges:
            counts = Counter(c[vote.edge] for c in cells)
            assert (vote.cell_type, vote.count, vote.runs) == ("cell", max(counts.values()), 2)
            assert counts[vote.op] == vote.count and vote.fraction == vote.count / 2
        assert a.mean_distance == sum(x != y for x, y in zip(*cells)) and a.num_edges == 6
        assert (a.common_genotype in texts) and a.common_count == Counter(texts).most_common(1)[0][1]
    assert agreements["train_final / NB201Space"].common_genotype == CELL
    assert {e.fraction for e in agreements["train_final / NB201Space"].edges} == {1.0}


def test_edge_agreement_and_distance_on_synthetic_genotypes():
    """Hand-checked votes, ties to the lower op index (an unused edge, None, last), op names per edge, distances over
    all cell types."""
    genotypes = [{"normal": [1, 2, 3], "reduce": [0, 0, None]}, {"normal": [1, 2, 4], "reduce": [0, 1, 0]},
                 {"normal": [1, 5, 4], "reduce": [1, 2, None]}]
    names = ("none", "a", "b", "c", "d", "e")
    ops = OpSet({"normal": (names,) * 3, "reduce": (names, names, names[::-1])})
    votes = edge_agreement(genotypes, ops)
    assert [(v.cell_type, v.edge, v.op, v.count) for v in votes] == [
        ("normal", 0, "a", 3), ("normal", 1, "b", 2), ("normal", 2, "d", 2), ("reduce", 0, "none", 2),
        ("reduce", 1, "none", 1), ("reduce", 2, "unused", 2)]  # reduce edge 1: 0, 1, 2 once each -> the lowest
    assert votes[1].fraction == pytest.approx(2 / 3)
    assert edge_agreement(genotypes[1:2], ops)[-1].op == "e"  # reduce edge 2 lists the ops in reverse
    assert [distance(genotypes[0], g) for g in genotypes] == [0, 3, 4]
    assert mean_pairwise_distance(genotypes) == pytest.approx((3 + 4 + 4) / 3)
    assert mean_pairwise_distance(genotypes[:1]) is None


def test_per_epoch_curves_follow_the_histories(study):
    """The benchmark curve is the mean of the records' column per epoch; the skip curve counts skip_connect edges."""
    runs = [r for r in collect([study / "gradient"]) if r.strategy == "DARTS"]
    histories = [[json.loads(line) for line in (r.path / "genotypes.jsonl").read_text().splitlines()] for r in runs]
    assert benchmark_column(runs) == "cifar10_test_200ep"
    bench = epoch_curves({"m": runs}, lambda run, rec: rec["benchmark"]["cifar10_test_200ep"])["m"]
    skips = epoch_curves({"m": runs}, skip_count)["m"]
    for e in (0, 1):
        accuracies = [h[e]["benchmark"]["cifar10_test_200ep"] for h in histories]
        counts = [h[e]["genotype"].count("skip_connect~") for h in histories]
        assert bench.mean[e] == pytest.approx(statistics.mean(accuracies))
        assert (skips.mean[e], skips.std[e]) == (pytest.approx(statistics.mean(counts)),
                                                 pytest.approx(statistics.stdev(counts)))


def test_report_files_and_cli(study, tmp_path):
    """`darts-report` writes report.md (metrics, published numbers, agreement, figures), one CSV row per
    run with its result.json values, and the PNG figures."""
    out = tmp_path / "report"
    proc = command("darts.reporting.report", str(study), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(f"wrote {out / 'report.md'}")
    for name in ("report.md", "report.csv", "benchmark.png", "skip_connections.png", "published.png"):
        assert (out / name).stat().st_size > 0, name
    text = (out / "report.md").read_text()
    for needle in ("GDAS / NB201Space", "93.61 ± 0.09", "NB201 paper (Dong & Yang, ICLR 2020), Table 5",
                   "Genotype agreement", "(benchmark.png)", "(skip_connections.png)", "(published.png)"):
        assert needle in text
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert len(rows) == 10
    for row in rows:
        result = read_json(Path(row["run_dir"]) / "result.json")
        assert row["genotype"] == result["genotype"]
        for key in ("valid_acc", "score", "test_accuracy", "cifar10_test_200ep"):
            value = result.get(key, result.get("benchmark", {}).get(key))
            assert (row[key] == "") == (value is None) and (value is None or float(row[key]) == value)


def test_the_report_goes_beside_the_runs_by_default(study, tmp_path):
    """Without --out, darts-report writes report/ inside the directory it reads (or the one holding all the
    directories given), never into the current directory."""
    here = tmp_path / "cwd"
    here.mkdir()
    assert main([str(study / "random"), str(study / "evolution")]) == 0
    assert (study / "report" / "report.md").is_file()
    proc = command("darts.reporting.report", str(study / "final"), cwd=here)
    assert proc.returncode == 0, proc.stderr
    assert (study / "final" / "report" / "report.csv").is_file() and not any(here.iterdir())


def test_published_numbers_are_keyed_by_strategy_and_space(study):
    """GDAS in NB201 reads NB201's Table 5; a retraining run has no published number of its own."""
    runs = {r.method: r for r in collect([study])}
    assert PUBLISHED[("GDAS", "NB201Space")].value == 93.61
    assert published(runs["GDAS / NB201Space"]).std == 0.09
    assert published(runs["train_final / NB201Space"]) is None


def test_a_directory_without_runs_is_a_one_line_error(tmp_path, capsys):
    """No config.yaml below a directory, no finished run, or an unreadable result.json: ValueError naming the
    directory; the CLI prints one line and exits with status 1."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{empty} holds no run directory"):
        collect([empty])
    (tmp_path / "unfinished" / "0").mkdir(parents=True)
    (tmp_path / "unfinished" / "0" / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(ValueError, match="no finished run"):
        write_report([tmp_path / "unfinished"], tmp_path / "out")
    (tmp_path / "unfinished" / "0" / "result.json").write_text('{"genotype": ')
    with pytest.raises(ValueError, match=f"{tmp_path / 'unfinished' / '0'}: JSONDecodeError"):
        collect([tmp_path / "unfinished"])
    assert main([str(empty), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(empty) in err


def test_a_retraining_config_without_a_space_reads_darts_genotypes(tmp_path):
    """Older retraining runs have no search_space in config.yaml: their genotypes are read by the DARTS space."""
    space = Run(tmp_path, {"seed": 0, "genotype": "DARTS_V2"}).space
    assert type(space).__name__ == "DartsSpace" and len(space.one_hot(space.parse(
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, "
        "4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
        "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, "
        "4, 5])"))["normal"].index) == 14
