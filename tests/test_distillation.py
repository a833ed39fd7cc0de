"""Knowledge distillation (darts/runs/distillation.py, train_final.py distill.*): the KD loss, the teacher, end to end."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision import models

from darts.app import config as cli
from conftest import ROOT, read_json, run_entry
from darts.runs.distillation import Distillation, from_settings, kd_loss
from darts.runs.final import final_loss

TINY = ["genotype=DARTS_V2", "model.init_channels=4", "model.layers=3", "epochs=1", "batch_size=8",
        "steps_per_epoch=2", "device=cpu", "progress=false"]


def tiny(cifar_mini: Path, *overrides: str) -> list[str]:
    """A tiny DARTS retraining on cifar10-mini (1 epoch of 2 steps), with overrides."""
    return ["dataset=imagefolder", f"dataset.root={cifar_mini}", *TINY, *overrides]


def compose_final(overrides: list[str]):
    """conf/final.yaml composed with overrides, as train_final.py sees it."""
    with initialize_config_dir(config_dir=str(ROOT / "darts" / "conf"), version_base="1.3"):
        return compose(config_name="final", overrides=overrides)


def build_run(cfg, run_dir: Path):
    """The retraining entry point's build_run (``darts.app.retrain``)."""
    from darts.app.retrain import build_run as build

    return build(cfg, run_dir)


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """The values of each scalar tag in a run directory's event files."""
    out: dict[str, list[float]] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return out


def logits_pair(seed: int = 0, batch: int = 5, classes: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed student logits (B, K), teacher logits (B, K) and labels (B,)."""
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(batch, classes, generator=g), 3 * torch.randn(batch, classes, generator=g),
            torch.randint(classes, (batch,), generator=g))


def test_kd_loss_equals_hintons_formula():
    """(1 - a) CE + a T^2 KL(p_t || p_s), written out by hand, on fixed logits; the CE and KD terms as returned."""
    s, t, y = logits_pair()
    T, a = 3.0, 0.7
    p_s, p_t = torch.softmax(s / T, -1), torch.softmax(t / T, -1)  # (B, K)
    kl = (p_t * (p_t.log() - p_s.log())).sum(-1).mean()
    ce = -torch.log_softmax(s, -1).gather(1, y[:, None]).mean()
    loss, ce_term, kd_term = kd_loss(s, t, y, T, a)
    assert torch.allclose(ce_term, ce) and torch.allclose(kd_term, T * T * kl)
    assert torch.allclose(loss, (1 - a) * ce + a * T * T * kl)


def test_kd_loss_is_cross_entropy_at_alpha_zero():
    """alpha=0 gives the (label-smoothed) cross-entropy whatever the teacher says."""
    s, t, y = logits_pair(1)
    assert torch.allclose(kd_loss(s, t, y, 4.0, 0.0, 0.1)[0], F.cross_entropy(s, y, label_smoothing=0.1))


def test_soft_term_gradient_is_t_times_the_softened_difference():
    """At alpha=1 d loss / d logits = T (softmax(s/T) - softmax(t/T)) / B (Hinton et al. 2015, eq. 2, times T^2)."""
    s, t, y = logits_pair(2)
    T = 4.0
    s.requires_grad_(True)
    kd_loss(s, t, y, T, 1.0)[0].backward()
    expected = T * (torch.softmax(s / T, -1) - torch.softmax(t / T, -1)) / s.shape[0]
    assert torch.allclose(s.grad, expected.detach(), atol=1e-6)


def test_auxiliary_head_keeps_plain_cross_entropy():
    """With a teacher, final_loss is the KD loss of the main logits plus auxiliary_weight * CE(aux logits)."""
    s, t, y = logits_pair(3)
    aux = logits_pair(4)[0]
    distill = Distillation(nn.Identity(), "test", None, 2.0, 0.5)
    loss, logits = final_loss(((s, aux), t), y, 0.4, 0.1, distill)
    expected = kd_loss(s, t, y, 2.0, 0.5, 0.1)[0] + 0.4 * F.cross_entropy(aux, y, label_smoothing=0.1)
    assert logits is s and torch.allclose(loss, expected)


def test_epoch_terms_are_sample_weighted_means_and_reset():
    """epoch_terms gives the mean CE and KD terms over the samples of every step since the last call, then none."""
    distill = Distillation(nn.Identity(), "test", None, 2.0, 0.5)
    batches = [logits_pair(5, batch=2), logits_pair(6, batch=6)]
    terms = [kd_loss(s, t, y, 2.0, 0.5)[1:] for s, t, y in batches]
    for s, t, y in batches:
        distill.loss(s, t, y)
    got = distill.epoch_terms()
    assert got["train_ce_loss"] == pytest.approx(float(2 * terms[0][0] + 6 * terms[1][0]) / 8)
    assert got["train_kd_loss"] == pytest.approx(float(2 * terms[0][1] + 6 * terms[1][1]) / 8)
    assert distill.epoch_terms() == {}


def test_teacher_stays_frozen_in_eval_mode():
    """Training through the wrapper leaves the teacher in eval mode, without gradients, its BN statistics unchanged."""
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5))
    teacher(torch.randn(2, 3, 6, 6))
    student = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 5))
    distill = Distillation(teacher, "test", None, 4.0, 0.9)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    wrapped = distill.wrap(student).train()
    (student_logits, teacher_logits) = wrapped(torch.randn(8, 3, 6, 6))
    distill.loss(student_logits, teacher_logits, torch.randint(5, (8,))).backward()
    assert wrapped.training and student.training and not teacher.training
    assert all(p.grad is None for p in teacher.parameters()) and student[1].weight.grad is not None
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


@pytest.fixture(scope="module")
def teacher_run(cifar_mini, tmp_path_factory) -> Path:
    """A finished tiny retraining run (train_final.py) to distill from."""
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    run_entry("train_final.py", run_dir, *tiny(cifar_mini))
    return run_dir


def test_distillation_run_includes_the_teacher_term(teacher_run, cifar_mini, tmp_path):
    """train_final.py distill.teacher=<run>: the logged train loss is 0.1 CE + 0.9 KD with a non-zero KD term, and
    result.json records the teacher, its weights file, T, alpha and the teacher's test accuracy as its run reported."""
    run = tmp_path / "student"
    run_entry("train_final.py", run, *tiny(cifar_mini, f"distill.teacher={teacher_run}", "auxiliary_weight=0"))
    tags = scalars(run)
    loss, ce, kd = (tags[f"final/train_{name}"][0] for name in ("loss", "ce_loss", "kd_loss"))
    assert kd > 0 and loss != pytest.approx(ce)
    assert loss == pytest.approx(0.1 * ce + 0.9 * kd, rel=1e-5)
    record = read_json(run / "result.json")["distillation"]
    assert record == {"teacher": str(teacher_run), "teacher_weights": str(teacher_run / "checkpoint.pt"),
                      "temperature": 4, "alpha": 0.9,
                      "teacher_test_accuracy": read_json(teacher_run / "result.json")["test_accuracy"]}


def test_student_starts_from_the_same_weights_with_or_without_a_teacher(teacher_run, cifar_mini, tmp_path):
    """Loading the teacher draws no random numbers: at the same seed the student's initial weights are the same."""
    plain = build_run(compose_final(tiny(cifar_mini)), tmp_path / "plain").model.state_dict()
    taught = build_run(compose_final(tiny(cifar_mini, f"distill.teacher={teacher_run}")), tmp_path / "kd")
    assert taught.distill is not None
    assert all(torch.equal(plain[k], v) for k, v in taught.model.state_dict().items())


def test_torchvision_teacher_with_weights_trains_a_student(cifar_mini, tmp_path):
    """distill.teacher=torchvision:resnet18 with a 10-class state dict trains a student; the teacher is unchanged and
    result.json names it."""
    weights = tmp_path / "resnet18.pt"
    torch.save(models.resnet18(num_classes=10).state_dict(), weights)
    cfg = compose_final(tiny(cifar_mini, "distill.teacher=torchvision:resnet18", f"distill.weights={weights}",
                             "steps_per_epoch=1"))
    run = build_run(cfg, tmp_path / "run")
    result = run.run()
    saved = torch.load(weights, weights_only=True)
    assert all(torch.equal(saved[k], v.cpu()) for k, v in run.distill.teacher.state_dict().items())
    assert result["distillation"]["teacher"] == "torchvision:resnet18"
    assert result["distillation"]["teacher_weights"] == str(weights)
    assert {"final/train_kd_loss", "final/train_ce_loss"} <= set(scalars(tmp_path / "run"))


def bad_settings(tmp_path: Path, teacher_run: Path) -> dict[str, tuple[dict, str]]:
    """Settings from_settings must refuse, each with the text its error must hold."""
    search_like = tmp_path / "search"
    search_like.mkdir()
    for name in ("config.yaml", "result.json"):
        (search_like / name).write_text((teacher_run / name).read_text())
    torch.save({"epoch": 0, "supernet": {}}, search_like / "checkpoint.pt")
    wrong = tmp_path / "resnet18_100.pt"
    torch.save(models.resnet18(num_classes=100).state_dict(), wrong)
    return {
        "not a run": ({"teacher": str(tmp_path)}, "is not a retraining run directory"),
        "search run": ({"teacher": str(search_like)}, "holds no network spec"),
        "unknown model": ({"teacher": "torchvision:resnet19"}, "torchvision has no classification model 'resnet19'"),
        "run classes": ({"teacher": str(teacher_run), "num_classes": 100}, "classifies 10 classes, the dataset has 100"),
        "weights classes": ({"teacher": "torchvision:resnet18", "weights": str(wrong)}, "with the dataset's 10 classes"),
        "temperature": ({"teacher": "torchvision:resnet18", "temperature": 0}, "distill.temperature=0 is not valid: a number > 0"),
        "alpha": ({"teacher": "torchvision:resnet18", "alpha": 1.5}, r"distill.alpha=1.5 is not valid: a number in \[0, 1\]"),
        "weights alone": ({"weights": str(wrong)}, "needs a teacher"),
        "weights for a run": ({"teacher": str(teacher_run), "weights": str(wrong)}, "is for a torchvision teacher"),
    }


def test_bad_settings_are_one_line_errors(teacher_run, tmp_path):
    """A teacher that is not a retraining run, an unknown torchvision model, a class-count mismatch (run or weights),
    temperature <= 0, alpha outside [0, 1] and misplaced weights each raise one line naming the problem."""
    for case, (settings, match) in bad_settings(tmp_path, teacher_run).items():
        with pytest.raises(ValueError, match=match) as err:
            from_settings(**{"num_classes": 10, **settings})
        assert "\n" not in str(err.value), case


def test_cli_reports_a_bad_teacher_in_one_line(cifar_mini, tmp_path):
    """train_final.py with a teacher directory that holds no run exits with status 1 and one line on stderr."""
    proc = run_entry("train_final.py", tmp_path / "run", *tiny(cifar_mini, f"distill.teacher={tmp_path}"),
                     check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "is not a retraining run directory" in proc.stderr


@pytest.mark.parametrize("override, match", [("distill.temperature=-1", "a number > 0"),
                                             ("distill.alpha=2", r"a number in \[0, 1\]")])
def test_config_checks_refuse_bad_temperature_and_alpha(override, match):
    """The distillation settings refuse temperature <= 0 and alpha outside [0, 1], with or without a teacher, before
    any teacher or data is read."""
    with pytest.raises(ValueError, match=f"{override.replace('.', '[.]')} is not valid: {match}"):
        from_settings(10, **compose_final([override]).distill)


def test_resume_keeps_the_distillation():
    """A resumed run may not change its teacher, weights, temperature or alpha."""
    saved = compose_final([])
    for override in ("distill.teacher=torchvision:resnet18", "distill.weights=w.pt", "distill.temperature=2",
                     "distill.alpha=0.5"):
        with pytest.raises(ValueError, match=f"cannot change '{override.partition('=')[0]}' when resuming"):
            cli.resumed_config(saved, ["resume=/some/run", override])


def test_default_config_has_no_teacher():
    """conf/final.yaml trains on the labels alone by default, with T=4 and alpha=0.9 ready for a teacher."""
    cfg = compose_final([])
    assert dict(cfg.distill) == {"teacher": None, "weights": None, "temperature": 4, "alpha": 0.9}
    assert from_settings(10, **cfg.distill) is None
