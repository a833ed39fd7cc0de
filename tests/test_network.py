"""Tests for search_spaces/darts/network.py: reference parameter counts, shapes, drop path and genotype errors."""

from collections import namedtuple

import pytest
import torch

from search_spaces.darts.network import (
    AuxiliaryHeadCIFAR,
    AuxiliaryHeadImageNet,
    Cell,
    NetworkCIFAR,
    NetworkImageNet,
    drop_path,
)
from darts.cost.counting import count_parameters
from search_spaces.darts.genotypes import GENOTYPES

DARTS_V2 = GENOTYPES["DARTS_V2"]
AMOEBA = GENOTYPES["AmoebaNet"]
# A plain namedtuple stands in for "any object with the four genotype attributes".
G = namedtuple("G", "normal normal_concat reduce reduce_concat")


def _op_params(name: str, C: int, stride: int) -> int:
    """Hand-derived parameter count of one op with affine BN (DARTS cnn/operations.py layers)."""
    if name.startswith(("sep_conv", "dil_conv")):
        k = int(name[-1])
        one_pass = C * k * k + C * C + 2 * C  # depthwise + pointwise + BN
        return 2 * one_pass if name.startswith("sep") else one_pass
    if name == "skip_connect":
        return 0 if stride == 1 else C * C + 2 * C  # FactorizedReduce(C, C)
    if name == "conv_7x1_1x7":
        return 2 * 7 * C * C + 2 * C
    return 0  # none, pools


def _reference_count(genotype, C: int, layers: int, num_classes: int, C_stem: int, stem: int) -> int:
    """Parameter count (no auxiliary head) derived by hand from DARTS cnn/model.py's structure."""
    total, (C_pp, C_p, C_cur) = stem, (C_stem, C_stem, C)
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        C_cur *= 2 if reduction else 1
        # preprocess0 (ReLUConvBN 1x1 or FactorizedReduce: both C_pp*C weights) and preprocess1.
        total += C_pp * C_cur + 2 * C_cur + C_p * C_cur + 2 * C_cur
        pairs = genotype.reduce if reduction else genotype.normal
        concat = genotype.reduce_concat if reduction else genotype.normal_concat
        total += sum(_op_params(n, C_cur, 2 if reduction and j < 2 else 1) for n, j in pairs)
        C_pp, C_p = C_p, len(concat) * C_cur
    return total + C_p * num_classes + num_classes


def _cifar_reference_count(genotype, C: int, layers: int) -> int:
    """Hand-derived NetworkCIFAR count: 3x3 conv stem to 3C channels + BN, 10 classes."""
    return _reference_count(genotype, C, layers, 10, 3 * C, 3 * 3 * C * 9 + 2 * 3 * C)


def test_darts_v2_cifar_parameter_count():
    """NetworkCIFAR(36, 10, 20, aux, DARTS_V2) has the reference's 3,349,342 parameters (README: 3.349MB)."""
    model = NetworkCIFAR(36, 10, 20, True, DARTS_V2)
    assert count_parameters(model) == 3_349_342
    assert count_parameters(model) == _cifar_reference_count(DARTS_V2, 36, 20)


def test_cifar_auxiliary_head_parameter_count():
    """The CIFAR auxiliary head on 576 channels has the hand-computed 476,426 parameters."""
    head = AuxiliaryHeadCIFAR(576, 10)
    expected = 576 * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 10 + 10
    assert sum(p.numel() for p in head.parameters()) == expected == 476_426
    model = NetworkCIFAR(36, 10, 20, True, DARTS_V2)
    assert sum(p.numel() for p in model.parameters()) == 3_349_342 + 476_426


def test_amoebanet_cifar_parameter_count():
    """AmoebaNet (sep_conv_7x7, conv_7x1_1x7, 5-node cells) at 36/20 has 3,145,078 parameters."""
    model = NetworkCIFAR(36, 10, 20, True, AMOEBA)
    assert count_parameters(model) == _cifar_reference_count(AMOEBA, 36, 20) == 3_145_078


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_every_published_genotype_matches_hand_count(name):
    """Each published genotype's NetworkCIFAR count equals the hand-derived reference count."""
    model = NetworkCIFAR(16, 10, 8, True, GENOTYPES[name])
    assert count_parameters(model) == _cifar_reference_count(GENOTYPES[name], 16, 8)


def test_darts_v2_imagenet_parameter_count():
    """NetworkImageNet(48, 1000, 14, aux, DARTS_V2) has 4,718,752 parameters (README: 4.719MB)."""
    C = 48
    stem = 3 * (C // 2) * 9 + C + (C // 2) * C * 9 + 2 * C + C * C * 9 + 2 * C
    model = NetworkImageNet(C, 1000, 14, True, DARTS_V2)
    assert count_parameters(model) == _reference_count(DARTS_V2, C, 14, 1000, C, stem) == 4_718_752


def test_imagenet_auxiliary_head_has_no_final_bn():
    """AuxiliaryHeadImageNet omits the BatchNorm2d(768) as the reference does."""
    head = AuxiliaryHeadImageNet(64, 5)
    assert [m.num_features for m in head.modules() if isinstance(m, torch.nn.BatchNorm2d)] == [128]


def test_state_dict_keys_follow_reference_names():
    """Module names match DARTS cnn/model.py so reference checkpoints map key for key."""
    keys = set(NetworkCIFAR(8, 10, 5, True, DARTS_V2).state_dict())
    assert {"stem.0.weight", "cells.0.preprocess0.op.1.weight", "cells.0._ops.0.op.1.weight",
            "cells.2.preprocess0.conv_1.weight", "auxiliary_head.features.2.weight",
            "auxiliary_head.classifier.weight", "classifier.weight"} <= keys
    keys = set(NetworkImageNet(8, 10, 3, True, DARTS_V2).state_dict())
    assert {"stem0.3.weight", "stem1.1.weight", "cells.0.preprocess0.conv_2.weight"} <= keys


@pytest.mark.parametrize("auxiliary", [True, False])
def test_cifar_forward_backward_shapes(auxiliary):
    """Training returns (B, classes) logits and aux logits iff auxiliary; eval never returns aux."""
    torch.manual_seed(0)
    model = NetworkCIFAR(8, 10, 5, auxiliary, DARTS_V2)
    model.drop_path_prob = 0.2
    x = torch.randn(2, 3, 32, 32)
    logits, logits_aux = model(x)
    assert logits.shape == (2, 10)
    assert (logits_aux is not None) == auxiliary
    loss = logits.sum() + (logits_aux.sum() if auxiliary else 0.0)
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "auxiliary" not in n)
    if auxiliary:
        assert logits_aux.shape == (2, 10)
        assert all(p.grad is not None for p in model.auxiliary_head.parameters())
    model.eval()
    with torch.no_grad():
        assert model(x)[1] is None


def test_eval_mode_ignores_drop_path():
    """In eval mode drop_path_prob has no effect on the output."""
    model = NetworkCIFAR(8, 10, 5, False, DARTS_V2).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model.drop_path_prob = 0.0
        ref = model(x)[0]
        model.drop_path_prob = 0.5
        torch.testing.assert_close(model(x)[0], ref)


def test_drop_path_zeroes_or_rescales_whole_samples():
    """drop_path keeps each sample whole (scaled by 1/keep_prob) or zeroes it; p=0 is the identity."""
    torch.manual_seed(0)
    x = torch.ones(4000, 3, 2, 2)
    y = drop_path(x, 0.25)
    per_sample = y.flatten(1)
    assert torch.all((per_sample == 0).all(1) | torch.isclose(per_sample, torch.tensor(1 / 0.75)).all(1))
    assert abs(y.mean().item() - 1.0) < 0.05  # unbiased in expectation
    assert drop_path(x, 0.0) is x
    with pytest.raises(ValueError, match="drop_prob"):
        drop_path(x, 1.0)


def test_drop_path_skips_identity_ops():
    """In training, a cell of Identity ops is unaffected by drop path; a conv cell is affected."""
    skip = G([("skip_connect", 0), ("skip_connect", 1)] * 2, [2, 3], [("max_pool_3x3", 0)] * 4, [2, 3])
    conv = G([("sep_conv_3x3", 0), ("sep_conv_3x3", 1)] * 2, [2, 3], skip.reduce, [2, 3])
    s0, s1 = torch.randn(8, 4, 8, 8), torch.randn(8, 4, 8, 8)
    for genotype, affected in [(skip, False), (conv, True)]:
        cell = Cell(genotype, 4, 4, 4, reduction=False, reduction_prev=False).train()
        torch.manual_seed(0)
        ref = cell(s0, s1, 0.0)
        dropped = cell(s0, s1, 0.7)
        assert torch.allclose(dropped, ref) != affected


def test_reduction_cell_halves_resolution():
    """A reduction cell after a reduction maps (B, ., 16, 16), (B, ., 8, 8) to (B, 4C, 4, 4)."""
    cell = Cell(DARTS_V2, 6, 10, 4, reduction=True, reduction_prev=True)
    y = cell(torch.randn(2, 6, 16, 16), torch.randn(2, 10, 8, 8), 0.0)
    assert y.shape == (2, 4 * 4, 4, 4)


@pytest.mark.parametrize("auxiliary", [True, False])
def test_imagenet_forward_224(auxiliary):
    """NetworkImageNet at 224x224 (needed by its AvgPool2d(7)) returns (B, classes) logits and aux."""
    torch.manual_seed(0)
    model = NetworkImageNet(8, 5, 3, auxiliary, DARTS_V2)
    model.drop_path_prob = 0.1
    logits, logits_aux = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 5)
    assert (logits_aux is not None) == auxiliary
    (logits.sum() + (logits_aux.sum() if auxiliary else 0.0)).backward()
    assert model.stem0[0].weight.grad is not None


def test_unknown_op_raises_value_error():
    """A genotype op missing from OPS raises ValueError naming the op, the cell type and valid ops."""
    bad = G(DARTS_V2.normal, DARTS_V2.normal_concat,
            [("conv_9x9", 0)] + list(DARTS_V2.reduce[1:]), DARTS_V2.reduce_concat)
    with pytest.raises(ValueError, match=r"'conv_9x9'.*reduce.*sep_conv_3x3"):
        NetworkCIFAR(8, 10, 5, False, bad)


def test_bad_input_index_raises_value_error():
    """An op reading a state that does not exist yet raises ValueError."""
    bad = G([("sep_conv_3x3", 2)] + list(DARTS_V2.normal[1:]), DARTS_V2.normal_concat,
            DARTS_V2.reduce, DARTS_V2.reduce_concat)
    with pytest.raises(ValueError, match="normal"):
        Cell(bad, 8, 8, 8, reduction=False, reduction_prev=False)
