"""Knowledge-distillation losses, as the literature defines them (see DESIGN.md, "Knowledge distillation, done right").

Shapes: classification logits (N, C) with labels (N,) int64; segmentation logits (N, C, H, W) with label maps
(N, H, W) int64; features (N, C, H, W). Every KD loss detaches the teacher's tensors itself, so the
teacher never receives gradients. All losses return a scalar tensor.

Temperature: T > 1 softens both distributions (usual range 2–8). T < 1 *sharpens* them; the KD losses
refuse it with `TemperatureError` unless ``allow_sharpening=True`` is passed explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from types import TracebackType

import torch
import torch.nn.functional as F
from torch import nn

from kdviewer.errors import KdviewerError


class TemperatureError(KdviewerError, ValueError):
    """A KD temperature that is not positive, or below 1 without ``allow_sharpening=True``."""


class UnknownLayerError(KdviewerError, KeyError):
    """A layer name that the model does not have (for forward hooks)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def check_temperature(temperature: float, allow_sharpening: bool = False) -> float:
    """Return ``temperature`` if usable; raise `TemperatureError` if ≤ 0, or < 1 unless sharpening is allowed."""
    if not temperature > 0:
        raise TemperatureError(f"KD temperature must be positive, not {temperature}")
    if temperature < 1 and not allow_sharpening:
        raise TemperatureError(
            f"KD temperature {temperature} < 1 sharpens the teacher instead of softening it "
            "(usual range 2-8); pass allow_sharpening=True if that is really meant"
        )
    return float(temperature)


# --- logits (classification) -------------------------------------------------------------------------


Mix = tuple[float, torch.Tensor]  # mixup: (lambda, permutation) -- image = lam * x + (1 - lam) * x[perm]


def mixed_cross_entropy(s: torch.Tensor, y: torch.Tensor, mix: Mix | None = None) -> torch.Tensor:
    """CE(y, s), or under mixup (Zhang et al., ICLR 2018) lam·CE(y, s) + (1 − lam)·CE(y[perm], s).

    s: logits (N, C); y: labels (N,) int64; mix: the batch's (lam, perm), None without mixup.
    """
    if mix is None:
        return F.cross_entropy(s, y)
    lam, perm = mix
    return lam * F.cross_entropy(s, y) + (1.0 - lam) * F.cross_entropy(s, y[perm])


def kd_kl_div(
    s: torch.Tensor, t: torch.Tensor, temperature: float = 4.0, *, allow_sharpening: bool = False
) -> torch.Tensor:
    """Hinton's soft-target term: T²·KL(softmax(t/T) ‖ softmax(s/T)), summed over classes, mean over N.

    s, t: logits (N, C). The T² factor keeps the gradient w.r.t. s about independent of T for large T.
    """
    temp = check_temperature(temperature, allow_sharpening)
    log_p_s = F.log_softmax(s / temp, dim=1)
    log_p_t = F.log_softmax(t.detach() / temp, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temp**2


def hinton_kd_loss(
    s: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.5,
    *,
    allow_sharpening: bool = False,
    mix: Mix | None = None,
) -> torch.Tensor:
    """Hinton et al. 2015: alpha·CE(y, s) + (1 − alpha)·T²·KL(softmax(t/T) ‖ softmax(s/T)).

    s, t: logits (N, C); y: ground-truth labels (N,) int64. ``alpha`` weighs the hard-label loss. ``mix``:
    the batch was mixed up (the teacher saw the same mixed images), so the hard term is mixed too.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], not {alpha}")
    soft = kd_kl_div(s, t, temperature, allow_sharpening=allow_sharpening)
    return alpha * mixed_cross_entropy(s, y, mix) + (1.0 - alpha) * soft


def dkd_loss(
    s: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    *,
    allow_sharpening: bool = False,
) -> torch.Tensor:
    """Decoupled KD (Zhao et al., CVPR 2022): alpha·TCKD + beta·NCKD, as mdistiller's ``dkd_loss``.

    s, t: logits (N, C); y: labels (N,) int64. TCKD is the binary KL of (p_target, 1 − p_target); NCKD the KL
    of the distributions over the non-target classes (the target logit pushed down by 1000 before the
    softmax, as the reference code does). Both carry T² and are divided by N. Returns the KD term only: as
    in mdistiller, add CE(y, s) and warm the DKD weight up over the first epochs (min(epoch / 20, 1)).
    With 2 classes there is a single non-target class, so NCKD is 0 and DKD reduces to alpha·TCKD.
    """
    temp = check_temperature(temperature, allow_sharpening)
    t = t.detach()
    gt_mask = F.one_hot(y.reshape(-1), s.shape[1]).to(s.dtype)
    other_mask = 1.0 - gt_mask
    p_s = F.softmax(s / temp, dim=1)
    p_t = F.softmax(t / temp, dim=1)
    bin_s = torch.stack([(p_s * gt_mask).sum(1), (p_s * other_mask).sum(1)], dim=1)
    bin_t = torch.stack([(p_t * gt_mask).sum(1), (p_t * other_mask).sum(1)], dim=1)
    tckd = F.kl_div(torch.log(bin_s), bin_t, reduction="sum") * temp**2 / y.shape[0]
    p_t_part2 = F.softmax(t / temp - 1000.0 * gt_mask, dim=1)
    log_p_s_part2 = F.log_softmax(s / temp - 1000.0 * gt_mask, dim=1)
    nckd = F.kl_div(log_p_s_part2, p_t_part2, reduction="sum") * temp**2 / y.shape[0]
    return alpha * tckd + beta * nckd


# --- features (hints, attention) ---------------------------------------------------------------------


class FeatureHooks:
    """Record the outputs of named submodules during forward passes, without changing the model.

    >>> with FeatureHooks(model, ["layer2", "layer4"]) as hooks:
    ...     logits = model(x)
    ...     feats = [hooks.outputs["layer2"], hooks.outputs["layer4"]]

    Names are those of ``model.named_modules()`` (``model.get_submodule``); a DDP-wrapped model is looked
    into (``module.`` prefix optional). ``.outputs`` keeps the last output of each layer (with its graph);
    the hooks are removed on exit. An unknown name raises `UnknownLayerError` at construction.
    """

    def __init__(self, model: nn.Module, names: Iterable[str]):
        self.names = list(names)
        self.outputs: dict[str, torch.Tensor] = {}
        self._modules = {name: _find_submodule(model, name) for name in self.names}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FeatureHooks:
        for name, module in self._modules.items():
            self._handles.append(module.register_forward_hook(self._recorder(name)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _recorder(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.outputs[name] = output

        return hook


def _find_submodule(model: nn.Module, name: str) -> nn.Module:
    inner = getattr(model, "module", None)
    candidates = [model] + ([inner] if isinstance(inner, nn.Module) else [])
    for candidate in candidates:
        try:
            return candidate.get_submodule(name)
        except AttributeError:
            continue
    known = [n for n, _ in candidates[-1].named_children()]
    raise UnknownLayerError(
        f"{type(candidates[-1]).__name__} has no layer {name!r}; its top-level layers: {', '.join(known)}"
    )


class FitNetsAdapter(nn.Sequential):
    """FitNets regressor: 1×1 conv (+ BatchNorm) from student to teacher channels: (N, Cs, H, W) -> (N, Ct, H, W)."""

    def __init__(self, s_channels: int, t_channels: int, *, batch_norm: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(s_channels, t_channels, 1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(t_channels))
        super().__init__(*layers)


def _align_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool whichever map is larger to the smaller H, W (as RepDistiller's AT does)."""
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    if tuple(a.shape[-2:]) != size:
        a = F.adaptive_avg_pool2d(a, size)
    if tuple(b.shape[-2:]) != size:
        b = F.adaptive_avg_pool2d(b, size)
    return a, b


def _check_pairs(s_feats: Sequence[torch.Tensor], t_feats: Sequence[torch.Tensor]) -> None:
    if len(s_feats) != len(t_feats):
        raise ValueError(f"{len(s_feats)} student features but {len(t_feats)} teacher features")


def fitnets_loss(
    s_feats: Sequence[torch.Tensor], t_feats: Sequence[torch.Tensor], adapters: Sequence[nn.Module]
) -> torch.Tensor:
    """FitNets hints (Romero et al. 2015): Σ_pairs MSE(adapter(s), t), mean over elements of each pair.

    s_feats[i] (N, Cs_i, Hs, Ws), t_feats[i] (N, Ct_i, Ht, Wt); adapters[i] maps Cs_i -> Ct_i (`FitNetsAdapter`).
    When the spatial sizes differ, the larger map is average-pooled to the smaller one.
    """
    _check_pairs(s_feats, t_feats)
    if len(adapters) != len(s_feats):
        raise ValueError(f"{len(adapters)} adapters for {len(s_feats)} feature pairs")
    total = s_feats[0].new_zeros(())
    for s, t, adapter in zip(s_feats, t_feats, adapters, strict=True):
        hint, target = _align_spatial(adapter(s), t.detach())
        total = total + F.mse_loss(hint, target)
    return total


def attention_map(x: torch.Tensor, p: float = 2) -> torch.Tensor:
    """Zagoruyko & Komodakis' spatial attention: L2-normalised mean over channels of x**p: (N, C, H, W) -> (N, H·W)."""
    return F.normalize(x.pow(p).mean(1).reshape(x.shape[0], -1))


def attention_transfer_loss(
    s_feats: Sequence[torch.Tensor], t_feats: Sequence[torch.Tensor], p: float = 2
) -> torch.Tensor:
    """Attention transfer (Zagoruyko & Komodakis 2017): Σ_pairs mean((at(s) − at(t))²).

    The convention of the authors' code (``at_loss``): per pair, the mean over N·H·W of the squared
    difference of the normalised maps, summed over pairs; the paper's β/2 (β = 1000) weight is the
    caller's. Channel counts may differ; when H, W differ the larger feature map is average-pooled to the
    smaller first (as RepDistiller does).
    """
    _check_pairs(s_feats, t_feats)
    total = s_feats[0].new_zeros(())
    for s, t in zip(s_feats, t_feats, strict=True):
        s, t = _align_spatial(s, t.detach())
        total = total + (attention_map(s, p) - attention_map(t, p)).pow(2).mean()
    return total


# --- segmentation --------------------------------------------------------------------------------------


def sigmoid_rampup(epoch: float | None, length: float) -> float:
    """Weight of a term that ramps up over `length` epochs: exp(−5·(1 − t)²), t = clip(epoch / length, 0, 1).

    The ramp-up of Laine & Aila's temporal ensembling and Tarvainen & Valpola's mean teacher (their
    ``sigmoid_rampup``): ~0.007 at the start, 1 from `length` on. 1.0 when `length` ≤ 0 or the epoch is not known.
    """
    if length <= 0 or epoch is None:
        return 1.0
    t = min(max(epoch / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def pixel_kd_loss(
    s: torch.Tensor, t: torch.Tensor, temperature: float = 1.0, *, allow_sharpening: bool = False
) -> torch.Tensor:
    """Per-pixel KD: T²·KL(softmax(t/T) ‖ softmax(s/T)) over classes at each pixel, mean over N·H·W.

    s, t: logits (N, C, H, W).
    """
    temp = check_temperature(temperature, allow_sharpening)
    log_p_s = F.log_softmax(s / temp, dim=1)
    log_p_t = F.log_softmax(t.detach() / temp, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)
    return kl.mean() * temp**2


def cwd_loss(
    s: torch.Tensor, t: torch.Tensor, temperature: float = 4.0, *, allow_sharpening: bool = False
) -> torch.Tensor:
    """Channel-wise distillation (Shu et al., ICCV 2021): per channel, KL of the softmaxes over H·W.

    s, t: (N, C, H, W) logits or features with the same C. Σ over positions of
    softmax(t/T)·(log softmax(t/T) − log softmax(s/T)), times T², summed over channels and divided by N·C
    (as the authors' / mmrazor's ``ChannelWiseDivergence``).
    """
    temp = check_temperature(temperature, allow_sharpening)
    if s.shape[:2] != t.shape[:2]:
        raise ValueError(f"CWD needs the same (N, C): student {tuple(s.shape)}, teacher {tuple(t.shape)}")
    s, t = _align_spatial(s, t.detach())
    n, c = s.shape[:2]
    log_p_s = F.log_softmax(s.reshape(n * c, -1) / temp, dim=1)
    log_p_t = F.log_softmax(t.reshape(n * c, -1) / temp, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum() * temp**2 / (n * c)


def _foreground(logits: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax probabilities, one-hot truth) of the foreground classes c >= 1, zero outside `valid`."""
    probs = F.softmax(logits, dim=1)[:, 1:]
    if target.is_floating_point():  # (N, C, H, W) class shares (soft masks)
        onehot = target[:, 1:].to(probs.dtype)
    else:
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    if valid is not None:
        weight = valid.unsqueeze(1).to(probs.dtype)
        probs, onehot = probs * weight, onehot * weight
    return probs, onehot


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5, *, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft Dice loss over the foreground classes: 1 − mean_{c ≥ 1} (2·Σ p·g + eps) / (Σ p + Σ g + eps).

    logits (N, C, H, W), C ≥ 2, class 0 = background; target (N, H, W) int64, or (N, C, H, W) float class
    shares (soft masks: g is then each pixel's share). p = softmax(logits);
    sums over the whole batch and all pixels (batch Dice). ``valid`` (N, H, W) bool excludes pixels
    (e.g. outside a field of view).
    """
    if logits.shape[1] < 2:
        raise ValueError("dice_loss needs at least 2 classes (background and foreground)")
    probs, onehot = _foreground(logits, target, valid)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return 1.0 - ((2.0 * inter + eps) / (denom + eps)).mean()


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    *,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """dice_weight·`dice_loss` + ce_weight·cross-entropy (mean over the valid pixels; against the class shares
    for a float target). Shapes as `dice_loss`."""
    if target.is_floating_point():
        target = target.to(logits.dtype)
    ce = F.cross_entropy(logits, target, reduction="none")
    if valid is None:
        ce_mean = ce.mean()
    else:
        weight = valid.to(ce.dtype)
        ce_mean = (ce * weight).sum() / weight.sum().clamp_min(1.0)
    return dice_weight * dice_loss(logits, target, valid=valid) + ce_weight * ce_mean


def soft_skeleton(prob: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Soft skeleton of (N, C, H, W) probabilities (Shit et al., "clDice", CVPR 2021, their reference code): soft
    erosion is a min-pool over a 3-px cross, dilation a 3x3 max-pool, and each of `iterations` erosions adds what
    an opening of it removes."""

    def erode(x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(-F.max_pool2d(-x, (3, 1), 1, (1, 0)), -F.max_pool2d(-x, (1, 3), 1, (0, 1)))

    prob = prob.contiguous()
    eroded = erode(prob)
    skel = F.relu(prob - F.max_pool2d(eroded, 3, 1, 1))  # minus its opening
    for _ in range(iterations):
        prob, eroded = eroded, erode(eroded)  # each erosion serves once as the image, once inside its opening
        delta = F.relu(prob - F.max_pool2d(eroded, 3, 1, 1))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def cldice_loss(logits: torch.Tensor, target: torch.Tensor, iterations: int = 3, smooth: float = 1.0, *,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """Soft-clDice loss (Shit et al. 2021) over the foreground classes: 1 − the harmonic mean of topology precision
    (the predicted skeleton's share inside the truth) and topology sensitivity (the true skeleton's share inside
    the prediction), batch-pooled, averaged over classes c ≥ 1. Shapes as `dice_loss`; `valid` masks pixels out."""
    probs, onehot = _foreground(logits, target, valid)
    skel_pred = soft_skeleton(probs, iterations)
    with torch.no_grad():
        skel_true = soft_skeleton(onehot, iterations)
    dims = (0, 2, 3)
    precision = ((skel_pred * onehot).sum(dims) + smooth) / (skel_pred.sum(dims) + smooth)
    sensitivity = ((skel_true * probs).sum(dims) + smooth) / (skel_true.sum(dims) + smooth)
    return 1.0 - (2.0 * precision * sensitivity / (precision + sensitivity)).mean()


# --- restoration -----------------------------------------------------------------------------------------


# Pixel distances of the restoration losses, by recipe name ([train]/[distill] loss).
RESTORE_DISTANCES = {"l1": F.l1_loss, "mse": F.mse_loss}


def restoration_kd_loss(
    s_out: torch.Tensor, t_out: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, loss: str = "l1"
) -> torch.Tensor:
    """alpha·D(s_out, target) + (1 − alpha)·D(s_out, t_out), images (N, C, H, W); t_out is detached;
    D is L1 (``loss="l1"``) or the mean squared error (``"mse"``), the same for both terms.

    Feature distillation for restoration nets is `fitnets_loss` on `FeatureHooks` outputs, added by the caller.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], not {alpha}")
    dist = RESTORE_DISTANCES.get(loss)
    if dist is None:
        raise ValueError(f"loss must be 'l1' or 'mse', not {loss!r}")
    return alpha * dist(s_out, target) + (1.0 - alpha) * dist(s_out, t_out.detach())
