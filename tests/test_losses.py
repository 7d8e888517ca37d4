"""KD losses against values worked out by hand (or with numpy, independently of torch), and the behaviour
DESIGN.md promises: zero when student = teacher, T² keeps gradients comparable across temperatures,
no gradient ever reaches the teacher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from kdviewer.distill.losses import (
    FeatureHooks,
    FitNetsAdapter,
    TemperatureError,
    UnknownLayerError,
    attention_transfer_loss,
    cwd_loss,
    dice_ce_loss,
    dice_loss,
    dkd_loss,
    fitnets_loss,
    hinton_kd_loss,
    kd_kl_div,
    pixel_kd_loss,
    restoration_kd_loss,
)
from kdviewer.errors import KdviewerError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


S = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
T = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, -0.5]])
Y = torch.tensor([1, 2])
LN3 = math.log(3.0)


def _value(x: torch.Tensor) -> float:
    return float(x.detach())


# --- Hinton KD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("temperature", "expected"),
    # T²·mean_n Σ_c p_t (log p_t − log p_s), computed with numpy
    [(1.0, 0.5447325847210592), (2.0, 0.5720162573717185), (4.0, 0.5747814032481539)],
)
def test_kd_kl_div_values(temperature: float, expected: float):
    assert _value(kd_kl_div(S, T, temperature)) == pytest.approx(expected, rel=1e-6)


def test_kd_kl_div_two_classes_by_hand():
    # p_t = (3/4, 1/4), p_s = (1/2, 1/2) at T = 1: KL = 3/4·ln(3/2) + 1/4·ln(1/2)
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]])
    assert _value(kd_kl_div(s, t, 1.0)) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))


def test_hinton_kd_loss_value():
    # CE = mean(−log softmax(S)[n, Y_n]) = 0.43598737427616263 (numpy); 0.3·CE + 0.7·kd_kl_div(T=2)
    loss = hinton_kd_loss(S, T, Y, temperature=2.0, alpha=0.3)
    assert _value(loss) == pytest.approx(0.5312075924430517, rel=1e-6)
    assert _value(hinton_kd_loss(S, T, Y, temperature=2.0, alpha=1.0)) == pytest.approx(0.43598737427616263)


def test_kd_part_is_zero_when_student_equals_teacher():
    assert _value(kd_kl_div(S, S.clone(), 4.0)) == pytest.approx(0.0, abs=1e-7)
    ce = torch.nn.functional.cross_entropy(S, Y)
    assert _value(hinton_kd_loss(S, S.clone(), Y, alpha=0.5)) == pytest.approx(0.5 * _value(ce), abs=1e-7)


def test_t_squared_keeps_the_gradient_scale_independent_of_temperature():
    """d(T²·KL)/ds = T·(p_s − p_t)/N ≈ (s − t)/(C·N) for large T: the norm barely changes from T = 4 to 8,
    while the plain KL's gradient falls as 1/T² (ratio ≈ 1/4)."""
    gen = torch.Generator().manual_seed(0)
    s0, t = 0.5 * torch.randn(4, 5, generator=gen), 0.5 * torch.randn(4, 5, generator=gen)

    def grad_norm(temperature: float, with_t_squared: bool) -> float:
        s = s0.clone().requires_grad_(True)
        loss = kd_kl_div(s, t, temperature)
        if not with_t_squared:
            loss = loss / temperature**2
        loss.backward()
        return float(s.grad.norm())

    assert grad_norm(8.0, True) / grad_norm(4.0, True) == pytest.approx(1.0, abs=0.05)
    assert grad_norm(8.0, False) / grad_norm(4.0, False) == pytest.approx(0.25, abs=0.0125)


def test_sharpening_temperature_needs_to_be_asked_for():
    with pytest.raises(TemperatureError, match="sharpens") as info:
        hinton_kd_loss(S, T, Y, temperature=0.5)
    assert isinstance(info.value, ValueError) and isinstance(info.value, KdviewerError)
    with pytest.raises(ValueError):
        kd_kl_div(S, T, 0.0, allow_sharpening=True)
    # allowed on request: T = 0.5 gives (0.5)²·KL at doubled logits
    sharp = kd_kl_div(S, T, 0.5, allow_sharpening=True)
    assert _value(sharp) == pytest.approx(0.25 * _value(kd_kl_div(2 * S, 2 * T, 1.0)), rel=1e-6)


def test_teacher_gets_no_gradient():
    s, t = S.clone().requires_grad_(True), T.clone().requires_grad_(True)
    (hinton_kd_loss(s, t, Y) + dkd_loss(s, t, Y)).backward()
    assert s.grad is not None and t.grad is None


# --- DKD -----------------------------------------------------------------------------------------------


def _np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_dkd(s, t, y, alpha, beta, temperature):
    """mdistiller's dkd_loss, transcribed line by line to numpy."""
    gt_mask = np.zeros_like(s)
    gt_mask[np.arange(len(y)), y] = 1.0
    other_mask = 1.0 - gt_mask
    pred_s, pred_t = _np_softmax(s / temperature), _np_softmax(t / temperature)
    pred_s = np.stack([(pred_s * gt_mask).sum(1), (pred_s * other_mask).sum(1)], 1)
    pred_t = np.stack([(pred_t * gt_mask).sum(1), (pred_t * other_mask).sum(1)], 1)
    tckd = (pred_t * (np.log(pred_t) - np.log(pred_s))).sum() * temperature**2 / len(y)
    pred_t2 = _np_softmax(t / temperature - 1000.0 * gt_mask)
    # F.kl_div(input, target, reduction="sum") = Σ target·(log target − input), with 0·log 0 = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pred_s2 = np.log(_np_softmax(s / temperature - 1000.0 * gt_mask))
        nckd_terms = np.where(pred_t2 > 0, pred_t2 * (np.log(pred_t2) - log_pred_s2), 0.0)
    nckd = nckd_terms.sum() * temperature**2 / len(y)
    return alpha * tckd + beta * nckd


def test_dkd_matches_the_reference_transcription():
    s = np.array([[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 1.0, 2.0], [0.3, 0.1, -0.2, 0.0]])
    t = np.array([[2.0, 1.0, 0.0, 0.5], [0.5, 0.5, -0.5, 3.0], [-1.0, 2.0, 0.0, 1.0]])
    y = np.array([1, 3, 0])
    for alpha, beta, temperature in [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)]:
        got = dkd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), alpha, beta, temperature)
        assert _value(got) == pytest.approx(_np_dkd(s, t, y, alpha, beta, temperature), rel=1e-6)


def test_dkd_is_zero_when_student_equals_teacher():
    assert _value(dkd_loss(S, S.clone(), Y)) == pytest.approx(0.0, abs=1e-5)


def test_dkd_with_two_classes_is_alpha_times_hinton():
    """One non-target class: NCKD vanishes and TCKD is exactly the binary KD term."""
    s, t, y = (
        torch.tensor([[0.0, 0.0], [1.0, -1.0]]),
        torch.tensor([[LN3, 0.0], [0.0, 0.5]]),
        torch.tensor([0, 1]),
    )
    assert _value(dkd_loss(s, t, y, alpha=2.0, beta=8.0, temperature=2.0)) == pytest.approx(
        2.0 * _value(kd_kl_div(s, t, 2.0)), rel=1e-5
    )


# --- features ------------------------------------------------------------------------------------------


def _tiny_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1))
    )


def test_feature_hooks_record_and_go_away():
    net = _tiny_net()
    x = torch.randn(2, 1, 8, 8)
    with FeatureHooks(net, ["0", "2.0"]) as hooks:
        out = net(x)
        assert torch.equal(hooks.outputs["2.0"], out)
        assert torch.equal(hooks.outputs["0"], net[0](x))
        assert tuple(hooks.outputs["0"].shape) == (2, 4, 8, 8)
    assert all(not m._forward_hooks for m in net.modules())


def test_feature_hooks_name_an_unknown_layer():
    with pytest.raises(UnknownLayerError, match="'layer9'") as info:
        FeatureHooks(_tiny_net(), ["0", "layer9"])
    assert isinstance(info.value, KdviewerError)


def test_fitnets_adapter_maps_channels():
    adapter = FitNetsAdapter(4, 16)
    assert tuple(adapter(torch.randn(2, 4, 5, 5)).shape) == (2, 16, 5, 5)
    assert isinstance(adapter[0], nn.Conv2d) and adapter[0].kernel_size == (1, 1)


def test_fitnets_loss_by_hand():
    s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
    t = torch.zeros(1, 1, 2, 2)
    # MSE = (1 + 4 + 9 + 16) / 4; two pairs sum
    assert _value(fitnets_loss([s, s], [t, t], [nn.Identity(), nn.Identity()])) == pytest.approx(15.0)
    # a 4x4 student map is average-pooled to the teacher's 2x2: blocks of constant 1, 2, 3, 4
    big = s.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert _value(fitnets_loss([big], [t], [nn.Identity()])) == pytest.approx(7.5)


def test_fitnets_loss_trains_the_adapter_not_the_teacher():
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 6, 4, 4, requires_grad=True)
    adapter = FitNetsAdapter(3, 6)
    fitnets_loss([s], [t], [adapter]).backward()
    assert s.grad is not None and adapter[0].weight.grad is not None and t.grad is None


def test_attention_transfer_by_hand():
    # student: 2 channels, both (1, 0) -> attention (1, 0); teacher: 1 channel (1, 1) -> (1/√2, 1/√2)
    s = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])  # (1, 2, 1, 2)
    t = torch.tensor([[[[1.0, 1.0]]]])  # (1, 1, 1, 2)
    # mean(((1 − 1/√2)², (1/√2)²)) = 1 − 1/√2; summed over two pairs
    expected = 1.0 - 1.0 / math.sqrt(2.0)
    assert _value(attention_transfer_loss([s], [t])) == pytest.approx(expected)
    assert _value(attention_transfer_loss([s, s], [t, t])) == pytest.approx(2 * expected)
    assert _value(attention_transfer_loss([s], [s.clone()])) == pytest.approx(0.0)


# --- segmentation ----------------------------------------------------------------------------------------


def _two_pixels(a: list[float], b: list[float]) -> torch.Tensor:
    """(1, 2, 1, 2) logits: class scores ``a`` at pixel 0 and ``b`` at pixel 1."""
    return torch.tensor([[a, b]]).permute(0, 2, 1).reshape(1, 2, 1, 2).contiguous()


def test_pixel_kd_by_hand():
    s = _two_pixels([0.0, 0.0], [1.0, 2.0])
    t = _two_pixels([LN3, 0.0], [1.0, 2.0])
    kl0 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # pixel 0 at T = 1; pixel 1 agrees
    assert _value(pixel_kd_loss(s, t, 1.0)) == pytest.approx(kl0 / 2)
    # T = 2: p_t = (√3, 1)/(√3 + 1), p_s = (1/2, 1/2); times T² = 4, over 2 pixels (numpy: 0.0726815657)
    assert _value(pixel_kd_loss(s, t, 2.0)) == pytest.approx(0.07268156574094728, rel=1e-6)
    assert _value(pixel_kd_loss(t, t.clone(), 4.0)) == pytest.approx(0.0, abs=1e-7)


def test_cwd_by_hand():
    # channel 0 over the 2 positions: t = (ln 3, 0), s = (0, 0); channel 1 agrees -> KL0 / (N·C = 2)
    s = torch.tensor([[[[0.0, 0.0]], [[1.0, -1.0]]]])
    t = torch.tensor([[[[LN3, 0.0]], [[1.0, -1.0]]]])
    kl0 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert _value(cwd_loss(s, t, 1.0)) == pytest.approx(kl0 / 2)
    # T = 2: the same KL as the pixel example at T = 2, summed (not averaged) over the 2 positions
    assert _value(cwd_loss(s, t, 2.0)) == pytest.approx(0.07268156574094728, rel=1e-6)
    assert _value(cwd_loss(t, t.clone(), 4.0)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="same"):
        cwd_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, 2))


def test_dice_and_ce_by_hand():
    # foreground probabilities (3/4, 1/4), target (1, 0): Σp·g = 3/4, Σp = 1, Σg = 1 -> Dice 3/4
    logits = _two_pixels([0.0, LN3], [0.0, -LN3])
    target = torch.tensor([[[1, 0]]])
    assert _value(dice_loss(logits, target, eps=0.0)) == pytest.approx(0.25)
    # CE: −ln(3/4) at both pixels
    assert _value(dice_ce_loss(logits, target)) == pytest.approx(0.25 + math.log(4 / 3), rel=1e-4)
    # pixel 1 outside the field of view: Σp = 3/4 -> Dice = 1.5 / 1.75
    valid = torch.tensor([[[True, False]]])
    assert _value(dice_loss(logits, target, eps=0.0, valid=valid)) == pytest.approx(1 - 1.5 / 1.75)
    # a perfect, confident prediction
    perfect = _two_pixels([-20.0, 20.0], [20.0, -20.0])
    assert _value(dice_ce_loss(perfect, target)) == pytest.approx(0.0, abs=1e-6)


# --- restoration ------------------------------------------------------------------------------------------


def test_restoration_kd_by_hand():
    s = torch.tensor([[[[1.0, 2.0]]]], requires_grad=True)
    t = torch.tensor([[[[1.0, 4.0]]]], requires_grad=True)
    target = torch.zeros(1, 1, 1, 2)
    loss = restoration_kd_loss(s, t, target, alpha=0.5)  # 0.5·(1 + 2)/2 + 0.5·(0 + 2)/2
    assert _value(loss) == pytest.approx(1.25)
    loss.backward()
    assert t.grad is None
    assert _value(restoration_kd_loss(s, t, target, alpha=1.0)) == pytest.approx(1.5)
    # squared errors: 0.5·(1 + 4)/2 + 0.5·(0 + 4)/2
    assert _value(restoration_kd_loss(s, t, target, alpha=0.5, loss="mse")) == pytest.approx(2.25)
    with pytest.raises(ValueError, match="loss must be"):
        restoration_kd_loss(s, t, target, loss="huber")
