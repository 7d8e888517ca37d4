"""The network registry: every net builds by name, gives the documented shapes, is small where it should be,
and exports to ONNX with a dynamic batch axis that onnxruntime runs like torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from kdviewer.distill.nets import (
    ArchitectureOptionError,
    UnknownArchitectureError,
    count_parameters,
    create_model,
    feature_layers,
    list_models,
    task_of,
)
from kdviewer.errors import KdviewerError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


ALL = [
    "resnet18", "resnet34", "resnet50", "mobilenetv2",
    "unet", "unet_small", "mobileunet",
    "dncnn", "redcnn", "denoise_small",
    "srresnet", "espcn", "fsrcnn", "srgan_discriminator",
]  # fmt: skip

# Smallest convenient input side per task: U-Nets need multiples of 2**depth (32 for mobileunet),
# RED-CNN's unpadded 5x5 convs need more than 20 px.
SIDE = {"classify": 32, "segment": 32, "denoise": 24, "super_resolve": 12}


def _forward(name: str, x: torch.Tensor, **kw) -> torch.Tensor:
    model = create_model(name, in_channels=x.shape[1], num_classes=3, **kw).eval()
    with torch.no_grad():
        return model(x)


def test_registry_lists_every_architecture():
    assert sorted([*ALL, "ensemble"]) == list_models()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", ALL)
def test_forward_shapes(name: str, channels: int):
    side = SIDE[task_of(name)]
    x = torch.randn(2, channels, side, side)
    y = _forward(name, x)
    expected = {
        "classify": (2, 3),
        "segment": (2, 3, side, side),
        "denoise": (2, channels, side, side),
        "super_resolve": (2, channels, 2 * side, 2 * side),
    }[task_of(name)]
    if name == "srgan_discriminator":
        expected = (2, 1)
    assert tuple(y.shape) == expected
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["srresnet", "espcn", "fsrcnn"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_super_resolution_scales(name: str, scale: int):
    y = _forward(name, torch.randn(1, 1, 10, 14), scale=scale)
    assert tuple(y.shape) == (1, 1, 10 * scale, 14 * scale)


def test_segmentation_nets_keep_non_square_sizes():
    assert tuple(_forward("unet", torch.randn(1, 1, 32, 48), depth=3, base=4).shape) == (1, 3, 32, 48)
    assert tuple(_forward("mobileunet", torch.randn(1, 1, 64, 32), width=0.35).shape) == (1, 3, 64, 32)


def test_classifier_stem_choice():
    def stride_of(model) -> int:
        return model.conv1.stride[0] if hasattr(model, "conv1") else model.features[0][0].stride[0]

    assert create_model("resnet18", small_input=True).conv1.kernel_size == (3, 3)
    assert isinstance(create_model("resnet18", small_input=True).maxpool, torch.nn.Identity)
    assert create_model("resnet18").conv1.kernel_size == (7, 7)  # no size given: ImageNet stem
    assert stride_of(create_model("resnet50", input_size=(28, 28))) == 1  # auto: ≤ 64 px
    assert stride_of(create_model("resnet50", input_size=224)) == 2
    assert stride_of(create_model("mobilenetv2", input_size=(64, 64))) == 1
    assert stride_of(create_model("mobilenetv2", input_size=(128, 128))) == 2
    assert stride_of(create_model("mobilenetv2", input_size=28, stem="imagenet")) == 2
    # input_size is accepted (and ignored) by nets that do not use it, so a trainer can always pass it
    assert create_model("unet_small", input_size=(32, 32)) is not None


def test_feature_layers_exist():
    for name in ALL:
        model = create_model(name)
        for layer in feature_layers(name):
            model.get_submodule(layer)
    assert feature_layers("resnet50") == ["layer1", "layer2", "layer3", "layer4"]
    assert feature_layers("mobilenetv2") == ["features.3", "features.6", "features.13", "features.18"]
    assert feature_layers("unet", depth=2) == ["encoders.0", "encoders.1", "bottleneck"]


def _hook_sizes(name: str, side: int = 64) -> list[tuple[int, int]]:
    model, seen = create_model(name).eval(), []
    hooks = [
        model.get_submodule(n).register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
        for n in feature_layers(name)
    ]
    with torch.no_grad():
        model(torch.randn(1, 1, side, side))
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize(
    ("teacher", "student"),
    [
        ("resnet50", "mobilenetv2"),
        ("resnet18", "mobilenetv2"),
        ("unet", "unet_small"),
        ("unet", "mobileunet"),
    ],
)
def test_suggested_hook_points_pair_by_resolution(teacher: str, student: str):
    """The last k teacher and student layers (k = the shorter list) see maps of the same size."""
    t_sizes, s_sizes = _hook_sizes(teacher), _hook_sizes(student)
    k = min(len(t_sizes), len(s_sizes))
    assert k >= 4
    assert t_sizes[-k:] == s_sizes[-k:]


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(UnknownArchitectureError, match="resnet18") as info:
        create_model("resnet181")
    assert isinstance(info.value, KdviewerError)
    assert "'resnet181'" in str(info.value) and "mobilenetv2" in str(info.value)
    with pytest.raises(UnknownArchitectureError):
        task_of("vgg16")


def test_unknown_option_is_named():
    with pytest.raises(ArchitectureOptionError, match="'widht'") as info:
        create_model("mobilenetv2", widht=0.5)
    assert "width" in str(info.value)


def test_restoration_nets_learn_a_residual():
    """With the noise branch silenced, a denoiser returns its input unchanged."""
    model = create_model("dncnn", depth=5, channels=8).eval()
    torch.nn.init.zeros_(model.tail.weight)
    torch.nn.init.zeros_(model.tail.bias)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), x)


def _logits_and_conv_widths(model: torch.nn.Module) -> tuple[torch.Tensor, list[int]]:
    """The model's output on a (1, 1, 64, 48) input and the widths of every Conv2d output on the way."""
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 1, 64, 48))
    for h in hooks:
        h.remove()
    return out, sizes


def test_half_resolution_unet_gives_full_resolution_logits_and_fewer_full_size_maps():
    """entry_stride=2: logits at the input's size; every inner map at half resolution or below."""
    out, sizes = _logits_and_conv_widths(create_model("unet_small", depth=3, base=8, entry_stride=2))
    assert out.shape == (1, 2, 64, 48)
    assert max(sizes) == 24 and len(sizes) > 10  # widths: 48 / 2 at most
    with pytest.raises(ValueError, match="entry_stride"):
        create_model("unet_small", entry_stride=4)


def test_shuffle_entry_unet_is_half_resolution_inside_with_a_prior_at_every_output_pixel():
    """entry="shuffle": pixel unshuffle in, pixel shuffle out; the RetinaNet prior holds at all 4 sub-pixels."""
    out, sizes = _logits_and_conv_widths(create_model("unet_small", depth=3, base=8, entry_stride=2, entry="shuffle"))
    assert out.shape == (1, 2, 64, 48) and max(sizes) == 24
    background = torch.softmax(out, dim=1)[0, 0]
    assert float(background.min()) > 0.95  # not only on one pixel of each 2x2 block
    with pytest.raises(ValueError, match="entry"):
        create_model("unet_small", entry_stride=2, entry="pool")
    with pytest.raises(ValueError, match="entry_stride 2"):
        create_model("unet_small", entry="shuffle")


def test_detail_branch_starts_as_the_shuffle_unet_and_sees_single_pixels():
    """detail=D: a full-resolution branch added to the shuffle U-Net's logits; zero at the start (the same
    outputs as without it), and after training it moves the logits of one pixel of a 2x2 block alone."""
    plain = create_model("unet_small", depth=3, base=8, entry_stride=2, entry="shuffle")
    with_detail = create_model("unet_small", depth=3, base=8, entry_stride=2, entry="shuffle", detail=4)
    missing = with_detail.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("detail.") for k in missing)
    out, sizes = _logits_and_conv_widths(with_detail)
    assert out.shape == (1, 2, 64, 48) and sizes.count(48) == 2   # the branch's two convs, nothing else
    x = torch.randn(1, 1, 64, 48)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), with_detail.eval()(x))
        torch.nn.init.normal_(with_detail.detail[-1].weight)
        y = x.clone()
        y[0, 0, 30, 20] += 5.0                                     # one pixel of one 2x2 block
        branch = (with_detail.detail(y) - with_detail.detail(x)).abs().amax(dim=(0, 1))
        total = with_detail(y) - with_detail(x)
        assert torch.allclose(total, plain.eval()(y) - plain(x) + with_detail.detail(y) - with_detail.detail(x),
                              atol=1e-5)
    changed = branch.nonzero()
    assert branch[30, 20] > 0 and changed[:, 0].min() >= 28 and changed[:, 0].max() <= 32
    assert changed[:, 1].min() >= 18 and changed[:, 1].max() <= 22   # a 5x5 full-resolution view
    for bad in ({"detail": 4}, {"detail": 4, "entry_stride": 2}, {"detail": -1, "entry_stride": 2, "entry": "shuffle"}):
        with pytest.raises(ValueError, match="detail"):
            create_model("unet_small", **bad)


def test_dncnn_without_batchnorm_has_none():
    plain = create_model("dncnn", depth=5, channels=8, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in create_model("dncnn", depth=5, channels=8).modules()) == 3


@pytest.mark.parametrize("name, kw", [("unet_small", {"base": 4}), ("unet", {"base": 8}), ("mobileunet", {})])
def test_fresh_segmenters_start_at_a_small_foreground_prior(name: str, kw: dict):
    """RetinaNet's prior init of the head: ~1 % foreground everywhere, whatever the seed (a He-initialised
    1x1 head gave ~50 % on average and left thin students stuck at all-background on some seeds)."""
    for seed in range(3):
        torch.manual_seed(seed)
        model = create_model(name, **kw).eval()
        with torch.no_grad():
            fg = model(torch.randn(2, 1, 64, 64)).softmax(1)[:, 1]
        assert 0.002 < float(fg.mean()) < 0.05 and float(fg.max()) < 0.5


def test_head_split_starts_half_the_last_channels_as_foreground_voters_and_keeps_the_prior():
    """unet_small(head_split=s): the foreground row of the head is +s on the first half of the last stage's
    channels and -s on the rest (background the opposite), so not every channel starts against the foreground
    (the stall of session 21); the ~1 % prior still holds. Without it the head is the plain prior init."""
    for seed in range(3):
        torch.manual_seed(seed)
        model = create_model("unet_small", in_channels=3, base=4, head_split=0.25).train()
        w = model.head.weight.detach().view(2, -1)
        assert (w[1, :2] > 0.2).all() and (w[1, 2:] < -0.2).all()
        assert (w[0, :2] < -0.2).all() and (w[0, 2:] > 0.2).all()
        with torch.no_grad():  # as training starts: BatchNorm on the batch's statistics
            fg = model(torch.randn(4, 3, 64, 64)).softmax(1)[:, 1]
        assert 0.002 < float(fg.mean()) < 0.05
    assert float(create_model("unet_small", base=4).head.weight.detach().abs().max()) < 0.1
    shuffled = create_model("unet_small", base=4, entry_stride=2, entry="shuffle", head_split=0.25)
    w = shuffled.head.weight.detach().view(8, -1)  # 2 classes x 4 sub-pixels; background rows first
    assert (w[4:, :2] > 0.2).all() and (w[:4, :2] < -0.2).all()
    with pytest.raises(ValueError, match="head_split"):
        create_model("unet_small", base=4, head_split=-0.25)


def _receptive_field_width(model: torch.nn.Module, size: int = 64) -> int:
    """Columns of the output that an impulse in the middle of the input changes."""
    x = torch.zeros(1, 1, size, size)
    x[0, 0, size // 2, size // 2] = 1.0
    with torch.no_grad():
        changed = (model.eval()(x) - x).abs().sum(dim=(0, 1, 2)) > 0
    return int(changed.sum())


def test_dilated_student_sees_as_far_as_the_17_layer_teacher_with_the_same_parameters():
    plain = create_model("denoise_small", depth=8, channels=8)
    wide = create_model("denoise_small", depth=8, channels=8, dilations=(1, 2, 3, 4, 3, 2))
    assert count_parameters(wide) == count_parameters(plain)
    assert _receptive_field_width(plain) == 17
    assert _receptive_field_width(wide) == 35 == _receptive_field_width(create_model("dncnn", depth=17, channels=4,
                                                                                      batch_norm=False))
    assert create_model("denoise_small", depth=8, channels=8, dilations=(1, 2, 3, 4, 3, 2))(
        torch.randn(1, 1, 20, 24)).shape == (1, 1, 20, 24)
    with pytest.raises(ValueError, match="6 values"):
        create_model("denoise_small", depth=8, dilations=(1, 2))


def test_ffdnet_sub_images_double_the_view_and_keep_every_pixel():
    """shuffle = 2: the same layers on the 2x2 sub-images see twice as far (17 -> 34 columns for 8 layers),
    and the output keeps the input's size; odd sizes and other factors are refused."""
    net = create_model("denoise_small", depth=8, channels=8, shuffle=2)
    assert _receptive_field_width(net) == 34
    plain = count_parameters(create_model("denoise_small", depth=8, channels=8))
    assert count_parameters(net) == plain + 2 * 3 * 9 * 8 + 3  # head and tail: 3 more channels (and biases)
    x = torch.randn(2, 1, 20, 24)
    with torch.no_grad():
        out = net.eval()(x)
        # the noise of each pixel of a 2x2 block comes from its own output channel: every pixel is restored
        assert out.shape == x.shape and bool(((out - x).abs() > 0).all())
    with pytest.raises(ValueError, match="even height and width"):
        net(torch.randn(1, 1, 21, 24))
    for bad in (3, 0, True):
        with pytest.raises(ValueError, match="shuffle must be"):
            create_model("dncnn", depth=5, channels=8, shuffle=bad)


# Teacher -> student pairs that must differ by at least 10x in parameters (1 channel, 2 classes).
PAIRS = [
    ("resnet50", "mobilenetv2", {}),
    ("resnet18", "mobilenetv2", {"width": 0.5}),
    ("unet", "unet_small", {}),
    ("unet", "mobileunet", {}),
    ("dncnn", "denoise_small", {}),
    ("redcnn", "denoise_small", {}),
    ("srresnet", "espcn", {}),
    ("srresnet", "fsrcnn", {}),
]


@pytest.mark.parametrize(("teacher", "student", "kw"), PAIRS)
def test_students_are_ten_times_smaller(teacher: str, student: str, kw: dict):
    n_teacher = count_parameters(create_model(teacher))
    n_student = count_parameters(create_model(student, **kw))
    assert n_teacher >= 10 * n_student, (teacher, n_teacher, student, n_student)


def test_parameter_counts_match_the_references():
    """torchvision's counts for 1 input channel and 2 classes, and the small students' budgets."""
    assert count_parameters(create_model("resnet18")) == 11_171_266
    assert count_parameters(create_model("resnet34")) == 21_279_426
    assert count_parameters(create_model("resnet50")) == 23_505_858
    assert count_parameters(create_model("mobilenetv2")) == 2_225_858
    assert count_parameters(create_model("unet_small")) == 255_476  # <= 0.3 M
    assert count_parameters(create_model("unet_small", depth=3, base=8)) == 112_922
    assert count_parameters(create_model("mobileunet")) < 1_000_000


# Every student plus one teacher; batch 1 at export, batch 2 in onnxruntime (the dynamic axis).
EXPORTS = [
    ("mobilenetv2", {"width": 0.5}, 32),
    ("unet_small", {}, 32),
    ("unet_small", {"entry_stride": 2, "depth": 3, "base": 8}, 32),
    ("mobileunet", {"width": 0.35}, 32),
    ("denoise_small", {}, 16),
    ("espcn", {"scale": 2}, 12),
    ("fsrcnn", {"scale": 3}, 12),
    ("srresnet", {"scale": 2, "channels": 8, "num_blocks": 2, "skip": "learned", "batch_norm": False}, 12),
    ("srresnet", {"scale": 3, "channels": 8, "num_blocks": 1, "skip": "learned", "subpixel": True}, 12),
    ("resnet18", {"small_input": True}, 16),
]


@pytest.mark.parametrize(("name", "kw", "side"), EXPORTS)
def test_onnx_export_matches_torch(name: str, kw: dict, side: int, tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model(name, **kw).eval()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (torch.randn(1, 1, side, side),),
            str(path),
            input_names=["input"],
            output_names=["output"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    x = torch.randn(2, 1, side, side)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["srresnet", "espcn", "fsrcnn"])
def test_super_resolution_learns_a_residual_over_bicubic(name: str):
    from kdviewer.distill import nets

    x = torch.rand(1, 1, 12, 16)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    with_skip = nets.create_model(name, in_channels=1, scale=2).eval()
    without = nets.create_model(name, in_channels=1, scale=2, skip="none").eval()
    without.load_state_dict(with_skip.state_dict())  # the skip adds no parameters
    with torch.no_grad():
        torch.testing.assert_close(with_skip(x) - without(x), bicubic)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_learned_skip_starts_as_bicubic_away_from_the_borders(scale: int):
    from kdviewer.distill.nets.superres import LinearUpsampler

    x = torch.rand(2, 1, 20, 24)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    with torch.no_grad():
        got = LinearUpsampler(1, scale)(x)
    m = 4 * scale  # bicubic clamps at the edges, the conv replicates: equal inside
    torch.testing.assert_close(got[..., m:-m, m:-m], bicubic[..., m:-m, m:-m], atol=1e-5, rtol=0)
    assert (got - bicubic).abs().max() < 0.2  # and close at the borders too


@pytest.mark.parametrize("name", ["srresnet", "espcn", "fsrcnn"])
def test_learned_skip_is_trained_and_differs_from_bicubic_after_a_step(name: str):
    from kdviewer.distill import nets

    torch.manual_seed(0)
    net = nets.create_model(name, in_channels=1, scale=2, skip="learned")
    fixed = nets.create_model(name, in_channels=1, scale=2)
    assert nets.count_parameters(net) == nets.count_parameters(fixed) + 4 * 49 + 4
    w0 = net.skip.linear.conv.weight.detach().clone()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    x, y = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 24, 24)
    torch.nn.functional.l1_loss(net(x), y).backward()
    opt.step()
    assert not torch.equal(net.skip.linear.conv.weight, w0)


def test_srresnet_without_batch_norm_has_none_and_keeps_the_shapes():
    from kdviewer.distill import nets

    net = nets.create_model("srresnet", in_channels=1, scale=2, channels=16, num_blocks=2, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert net(torch.rand(1, 1, 10, 14)).shape == (1, 1, 20, 28)


def test_unknown_skip_is_refused():
    from kdviewer.distill import nets

    with pytest.raises(ValueError, match="skip must be one of"):
        nets.create_model("espcn", in_channels=1, scale=2, skip="lanczos")


@pytest.mark.parametrize(("channels", "scale"), [(1, 2), (2, 3)])
def test_least_squares_fit_recovers_a_known_linear_upsampler(channels: int, scale: int):
    from kdviewer.distill.nets.superres import LinearUpsampler, fit_linear_upsampler

    torch.manual_seed(0)
    truth = LinearUpsampler(channels, scale, kernel=5)
    with torch.no_grad():
        truth.conv.weight.add_(0.05 * torch.randn_like(truth.conv.weight))
        truth.conv.bias.add_(0.1)
        pairs = [(x, truth(x)) for x in (torch.rand(3, channels, 14, 11) for _ in range(4))]
    fitted = LinearUpsampler(channels, scale, kernel=5)
    assert fit_linear_upsampler(fitted, pairs) == 4 * 3 * 14 * 11
    torch.testing.assert_close(fitted.conv.weight, truth.conv.weight, atol=1e-4, rtol=0)
    torch.testing.assert_close(fitted.conv.bias, truth.conv.bias, atol=1e-4, rtol=0)
    assert fit_linear_upsampler(fitted, []) == 0  # no data: unchanged
    torch.testing.assert_close(fitted.conv.weight, truth.conv.weight, atol=1e-4, rtol=0)


@pytest.mark.parametrize("scale", [2, 4])
def test_srresnet_subpixel_output_stage_starts_as_its_skip(scale: int):
    from kdviewer.distill import nets

    net = nets.create_model("srresnet", in_channels=1, scale=scale, channels=8, num_blocks=2, subpixel=True).eval()
    assert isinstance(net.tail, torch.nn.Identity)
    assert net.upsample[0].out_channels == scale * scale
    x = torch.rand(1, 1, 10, 12)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (1, 1, 10 * scale, 12 * scale)
    assert (out - bicubic).abs().max() < 0.05  # the body starts near zero


def test_widths_set_every_level_and_the_depth():
    """widths=(w0, ..., w_depth): those conv widths, in that order, and the depth (and hook points) they imply."""
    model = create_model("unet_small", widths=[16, 8, 24], base=99, depth=7)
    encoders = [blk[3].out_channels for blk in model.encoders]
    assert model.depth == 2 and encoders == [16, 8] and model.bottleneck[3].out_channels == 24
    assert [d.conv[3].out_channels for d in model.decoders] == [16, 8]
    assert feature_layers("unet_small", widths=[16, 8, 24]) == ["encoders.0", "encoders.1", "bottleneck"]
    out, _ = _logits_and_conv_widths(model)
    assert out.shape == (1, 2, 64, 48)
    for bad in ([16], [16, 0, 8]):
        with pytest.raises(ValueError, match="widths"):
            create_model("unet_small", widths=bad)


def test_refine_detail_sees_the_shuffled_logits_and_starts_as_the_shuffle_unet():
    """detail_mode="refine": the branch's input is the image and the U-Net's full-resolution logits; zero at
    the start; a change of the coarse logits alone moves its output (the logits mode's branch cannot see them)."""
    kw = dict(depth=2, base=4, entry_stride=2, entry="shuffle")
    plain = create_model("unet_small", **kw)
    refine = create_model("unet_small", detail=4, detail_mode="refine", **kw)
    assert refine.detail[0].in_channels == 1 + 2
    refine.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(1, 1, 64, 48)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), refine.eval()(x))
        torch.nn.init.normal_(refine.detail[-1].weight)
        coarse = plain(x)
        assert torch.allclose(refine(x), coarse + refine.detail(torch.cat([x, coarse], dim=1)), atol=1e-6)
        shifted = refine.detail(torch.cat([x, coarse + 1.0], dim=1)) - refine.detail(torch.cat([x, coarse], dim=1))
    assert float(shifted.abs().max()) > 0
    with pytest.raises(ValueError, match="detail_mode"):
        create_model("unet_small", detail=4, detail_mode="sum", **kw)
    with pytest.raises(ValueError, match="needs a detail branch"):
        create_model("unet_small", detail_mode="refine", **kw)


def test_feature_detail_fuses_both_branches_before_a_last_conv_with_the_prior():
    """detail_mode="features": the head gives 4·D channels at half resolution (D per full-resolution pixel),
    summed with the detail branch's D channels, then a 3×3 conv to the classes, which starts at the prior."""
    model = create_model("unet_small", depth=2, base=4, entry_stride=2, entry="shuffle", detail=3,
                         detail_mode="features")
    assert model.head.out_channels == 12 and model.detail[0].out_channels == 3 and model.fuse.in_channels == 3
    out, sizes = _logits_and_conv_widths(model)
    assert out.shape == (1, 2, 64, 48) and sizes[-1] == 48 and sizes.count(48) == 2   # detail conv, fuse conv
    assert float(torch.softmax(out, dim=1)[0, 0].min()) > 0.95
