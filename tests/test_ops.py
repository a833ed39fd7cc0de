"""Tests for darts/ops.py: shapes, parameter counts and layer layout of the DARTS primitives."""

import pytest
import torch
import torch.nn as nn

from darts.ops import FactorizedReduce, Identity, SepConv, Zero
from search_spaces.darts.ops import OPS

DARTS_OP_NAMES = {
    "none", "avg_pool_3x3", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
    "sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5", "conv_7x1_1x7",
}
ROBUST_DARTS_OP_NAMES = {"noise"}  # RobustDARTS src/operations.py adds `noise` (S4) to DARTS's table


def _n_params(m: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in m.parameters())


def test_ops_table_has_the_reference_names():
    """OPS holds exactly the ten op names of DARTS cnn/operations.py and RobustDARTS's `noise`."""
    assert set(OPS) == DARTS_OP_NAMES | ROBUST_DARTS_OP_NAMES


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", sorted(DARTS_OP_NAMES | ROBUST_DARTS_OP_NAMES))
def test_op_output_shape(name, stride, affine):
    """Every op maps (B, C, 16, 16) to (B, C, 16/stride, 16/stride), keeping C."""
    op = OPS[name](8, stride, affine)
    x = torch.randn(2, 8, 16, 16)
    y = op(x)
    assert y.shape == (2, 8, 16 // stride, 16 // stride)


@pytest.mark.parametrize("name", sorted(DARTS_OP_NAMES - {"none"}))
def test_op_backward_reaches_input(name):
    """Every op except `none` passes a nonzero gradient to its input at stride 2."""
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    OPS[name](8, 2, True)(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("stride", [1, 2])
def test_none_returns_zeros(stride):
    """`none` returns an all-zero tensor of the strided shape."""
    y = OPS["none"](8, stride, True)(torch.randn(2, 8, 16, 16) + 1.0)
    assert isinstance(OPS["none"](8, stride, True), Zero)
    assert y.shape == (2, 8, 16 // stride, 16 // stride)
    assert torch.count_nonzero(y) == 0


def test_skip_connect_is_identity_or_factorized_reduce():
    """skip_connect is Identity at stride 1 and FactorizedReduce at stride 2."""
    assert isinstance(OPS["skip_connect"](8, 1, True), Identity)
    assert isinstance(OPS["skip_connect"](8, 2, True), FactorizedReduce)
    x = torch.randn(2, 8, 16, 16)
    assert torch.equal(OPS["skip_connect"](8, 1, True)(x), x)


def test_factorized_reduce_halves_and_shifts():
    """FactorizedReduce halves H and W; its second conv reads the input shifted by one pixel."""
    fr = FactorizedReduce(2, 2, affine=False).eval()  # fresh BN stats: y = x / sqrt(1 + eps)
    with torch.no_grad():
        fr.conv_1.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
        fr.conv_2.weight.copy_(torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))
    x = torch.randn(3, 2, 10, 10)
    y = fr(x) * (1 + fr.bn.eps) ** 0.5
    assert y.shape == (3, 2, 5, 5)
    torch.testing.assert_close(y[:, 0], x[:, 0, 0::2, 0::2].relu())
    torch.testing.assert_close(y[:, 1], x[:, 1, 1::2, 1::2].relu())


@pytest.mark.parametrize(
    "name, C, stride, affine, expected",
    [
        # SepConv k: twice (depthwise C*k*k + pointwise C*C + BN 2C if affine).
        ("sep_conv_3x3", 16, 1, False, 2 * (16 * 9 + 16 * 16)),
        ("sep_conv_3x3", 16, 2, True, 2 * (16 * 9 + 16 * 16 + 2 * 16)),
        ("sep_conv_7x7", 8, 1, True, 2 * (8 * 49 + 8 * 8 + 2 * 8)),
        # DilConv k: once (depthwise C*k*k + pointwise C*C + BN).
        ("dil_conv_3x3", 16, 1, True, 16 * 9 + 16 * 16 + 2 * 16),
        ("dil_conv_5x5", 16, 2, False, 16 * 25 + 16 * 16),
        # FactorizedReduce(C, C): two 1x1 convs C -> C/2, then BN over C.
        ("skip_connect", 16, 2, True, 2 * 16 * 8 + 2 * 16),
        ("skip_connect", 16, 1, True, 0),
        # (1,7) and (7,1) full convs, then BN.
        ("conv_7x1_1x7", 16, 1, False, 2 * 7 * 16 * 16),
        ("conv_7x1_1x7", 16, 2, True, 2 * 7 * 16 * 16 + 2 * 16),
        ("max_pool_3x3", 16, 2, True, 0),
        ("avg_pool_3x3", 16, 1, True, 0),
        ("none", 16, 2, True, 0),
    ],
)
def test_op_parameter_count(name, C, stride, affine, expected):
    """Op parameter counts equal the hand-computed counts of the reference layers."""
    assert _n_params(OPS[name](C, stride, affine)) == expected


def test_sep_conv_layout_matches_reference():
    """SepConv is one `op` Sequential with reference keys; only its first depthwise conv strides."""
    op = SepConv(8, 8, 5, 2, 2, affine=True)
    keys = set(op.state_dict())
    assert {"op.1.weight", "op.2.weight", "op.3.weight", "op.3.running_mean",
            "op.5.weight", "op.6.weight", "op.7.bias"} <= keys
    assert op.op[1].stride == (2, 2) and op.op[1].groups == 8
    assert op.op[5].stride == (1, 1) and op.op[5].groups == 8
    assert all(m.bias is None for m in op.modules() if isinstance(m, nn.Conv2d))


def test_dilated_and_pool_settings():
    """dil_conv uses dilation 2; avg_pool excludes padding from the average."""
    dil = OPS["dil_conv_5x5"](8, 1, True)
    assert dil.op[1].dilation == (2, 2) and dil.op[1].padding == (4, 4)
    pool = OPS["avg_pool_3x3"](8, 1, True)
    y = pool(torch.ones(1, 8, 4, 4))
    torch.testing.assert_close(y, torch.ones(1, 8, 4, 4))


def test_affine_false_has_no_bn_parameters():
    """With affine=False no BatchNorm holds learnable parameters."""
    for name in sorted(DARTS_OP_NAMES):
        op = OPS[name](8, 2, False)
        for m in op.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.weight is None and m.bias is None


def test_factorized_reduce_rejects_odd_channels():
    """FactorizedReduce with an odd C_out raises ValueError."""
    with pytest.raises(ValueError, match="even"):
        FactorizedReduce(8, 7)
