"""Tiny ONNX models with real cards, made by the tests themselves (torch → ONNX), for runtime tests.

Use the session fixture in a test module with ``from runtime_models import runtime_models  # noqa: F401``
or call `build_models(folder)` directly. Models (all fully convolutional except the classifier, all
with a dynamic batch axis and, for the image-to-image ones, dynamic height and width):

- ``tiny-cls``: 1×64×64 → 2 logits ("normal", "pneumonia"), modalities CR/DX/OT.
- ``tiny-seg``: 1×32×32 → 2 logits per pixel ("background", "bright"), no resize (tiles), minmax.
- ``tiny-denoise``: 1×32×32 residual denoiser, CT window [-1000, 1000] HU (center 0, width 2000).
- ``tiny-sr2``: 1×16×16 → 1×32×32 pixel-shuffle ×2, minmax.
- ``tiny-denoise-fp16``: ``tiny-denoise`` with float16 weights (float32 inputs and outputs).

For teacher-student comparisons: `make_pair` copies two models as a teacher and its student, and the
session fixture ``compare_pairs`` (`build_compare_pairs`) holds pairs that differ in a known way.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from kdviewer.modelcard import sha256_file


def _torch():
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return torch


def _nets() -> dict:
    torch = _torch()
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

        def forward(self, x):
            return x + 0.1 * self.body(x)

    seg = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with torch.no_grad():  # class 1 ("bright") wins where the normalised intensity is above 0.5
        seg[0].weight.zero_()
        seg[0].weight[0, 0, 1, 1] = 1.0
        seg[0].bias.zero_()
        seg[0].bias[1:] = -10.0
        seg[2].weight.zero_()
        seg[2].weight[1, 0] = 20.0
        seg[2].bias[:] = torch.tensor([0.0, -10.0])
    return {
        "cls": nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(4, 2)),
        "seg": seg,
        "den": Residual(),
        "sr": nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.PixelShuffle(2)),
    }


def export_onnx(net, path: Path, shape: tuple[int, int, int, int], spatial_dynamic: bool) -> Path:
    """Export a torch module to ONNX (opset 17) with a dynamic batch axis (and H, W when asked)."""
    torch = _torch()
    axes = {0: "n", 2: "h", 3: "w"} if spatial_dynamic else {0: "n"}
    out_axes = axes if spatial_dynamic else {0: "n"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(shape),), str(path), input_names=["image"],
                          output_names=["output"], dynamic_axes={"image": axes, "output": out_axes},
                          opset_version=17, dynamo=False)
    return path


def write_card(onnx_path: Path, model_id: str, task: str, *, input_shape: list, labels: list | None = None,
               preprocess: dict | None = None, modalities: list | None = None, kind: str = "logits",
               postprocess: dict | None = None, weights: str = "float32", spacing_mm: list | None = None,
               slices: int = 1) -> Path:
    """Write the "kdviewer.model/1" card of `onnx_path` beside it (sha256 and bytes of the file as it is)."""
    card = {
        "schema": "kdviewer.model/1", "id": model_id, "task": task, "role": "student",
        "teacher": None, "architecture": {"name": "tiny", "parameters": 0},
        "file": {"name": onnx_path.name, "sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size,
                 "weights": weights},
        "input": {"shape": input_shape, "modalities": modalities or [], "spacing_mm": spacing_mm,
                  "preprocess": preprocess or {"window": None, "normalize": "minmax", "resize": "bilinear"},
                  "slices": slices},
        "output": {"kind": kind, "labels": labels} if labels is not None else {"kind": kind},
        "postprocess": postprocess or {},
        "training": {"dataset": "none (test model)", "licence": "CC0"},
        "metrics": {}, "export": {"opset": 17}, "intended_use": "Research use only. Not for diagnosis.",
        "limits": ["made by the tests"],
    }
    path = onnx_path.with_suffix(".json")
    path.write_text(json.dumps(card, indent=2), encoding="utf-8")
    return path


def to_float16_weights(src: Path, dst: Path) -> Path:
    """A copy of `src` whose initializers are float16, cast back to float32 before use (I/O float32)."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(src))
    g = proto.graph
    casts = []
    for init in g.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init).astype(np.float16)
        name = init.name
        init.CopyFrom(numpy_helper.from_array(arr, name + "_fp16"))
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=onnx.TensorProto.FLOAT))
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    onnx.save(proto, str(dst))
    return dst


def build_models(folder: Path) -> dict[str, Path]:
    """Export the tiny models with their cards into `folder`; returns id -> card path."""
    folder.mkdir(parents=True, exist_ok=True)
    nets = _nets()
    cards = {}
    p = export_onnx(nets["cls"], folder / "tiny-cls.onnx", (1, 1, 64, 64), spatial_dynamic=False)
    cards["tiny-cls"] = write_card(p, "tiny-cls", "classify", input_shape=[None, 1, 64, 64],
                                   labels=["normal", "pneumonia"], modalities=["CR", "DX", "OT"])
    p = export_onnx(nets["seg"], folder / "tiny-seg.onnx", (1, 1, 32, 32), spatial_dynamic=True)
    cards["tiny-seg"] = write_card(p, "tiny-seg", "segment", input_shape=[None, 1, 32, 32],
                                   labels=["background", "bright"], modalities=["MR", "CT"],
                                   preprocess={"window": None, "normalize": "minmax", "resize": None})
    p = export_onnx(nets["den"], folder / "tiny-denoise.onnx", (1, 1, 32, 32), spatial_dynamic=True)
    cards["tiny-denoise"] = write_card(p, "tiny-denoise", "denoise", input_shape=[None, 1, 32, 32],
                                       modalities=["CT"], kind="image",
                                       preprocess={"window": [0, 2000], "normalize": "window", "resize": None})
    p16 = to_float16_weights(p, folder / "tiny-denoise-fp16.onnx")
    cards["tiny-denoise-fp16"] = write_card(p16, "tiny-denoise-fp16", "denoise", input_shape=[None, 1, 32, 32],
                                            modalities=["CT"], kind="image", weights="float16",
                                            preprocess={"window": [0, 2000], "normalize": "window",
                                                        "resize": None})
    p = export_onnx(nets["sr"], folder / "tiny-sr2.onnx", (1, 1, 16, 16), spatial_dynamic=True)
    cards["tiny-sr2"] = write_card(p, "tiny-sr2", "super_resolve", input_shape=[None, 1, 16, 16],
                                   modalities=["MR", "CT"], kind="image",
                                   preprocess={"window": None, "normalize": "minmax", "resize": None})
    return cards


@pytest.fixture(scope="session")
def runtime_models(tmp_path_factory) -> dict[str, Path]:
    """id -> card path of the tiny models, exported once per test session into a temporary folder."""
    return build_models(tmp_path_factory.mktemp("runtime-models"))


def make_pair(teacher_card: Path, student_card: Path, folder: Path, teacher_id: str = "pair-teacher",
              student_id: str = "pair-student") -> tuple[Path, Path]:
    """Copy two models into `folder` as a teacher and its student (roles and the student's ``teacher`` set).

    Pass the same card twice for a student identical to its teacher. Returns (teacher card, student card).
    """
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src, new_id, role, teacher in ((teacher_card, teacher_id, "teacher", None),
                                       (student_card, student_id, "student", teacher_id)):
        card = json.loads(Path(src).read_text(encoding="utf-8"))
        onnx_path = folder / f"{new_id}.onnx"
        shutil.copyfile(Path(src).parent / card["file"]["name"], onnx_path)
        card.update(id=new_id, role=role, teacher=teacher)
        card["file"]["name"] = onnx_path.name
        path = folder / f"{new_id}.json"
        path.write_text(json.dumps(card, indent=2), encoding="utf-8")
        out.append(path)
    return out[0], out[1]


def quadrant_images(levels) -> np.ndarray:
    """28×28 uint8 images: upper-left quadrant at level v, lower-right at 1 - v (×255), an anchor pixel at 255."""
    imgs = np.zeros((len(levels), 28, 28), np.uint8)
    for i, v in enumerate(levels):
        imgs[i, :14, :14] = round(255 * v)
        imgs[i, 14:, 14:] = round(255 * (1 - v))
        imgs[i, 0, 27] = 255
    return imgs


def build_compare_pairs(folder: Path, models: dict[str, Path]) -> dict[str, tuple[Path, Path]]:
    """Teacher/student pairs that differ in a known way, for the comparison tests; name -> (teacher, student) cards.

    - ``cls``: on `quadrant_images`, with s = mean(upper-left) - mean(lower-right) of the normalised image
      (≈ 2v - 1): the teacher says class 1 ("ul") when s > 0, the student when s > 0.15.
    - ``seg``: ``tiny-seg`` (foreground: minmax-normalised intensity > 0.5) and the same network with
      z-score normalisation (foreground: z > 0.5).
    - ``den``: ``tiny-denoise`` and its float16-weights copy (outputs equal to about 1e-3).
    """
    torch = _torch()

    class Quadrants(torch.nn.Module):
        def __init__(self, scale: float, shift: float) -> None:
            super().__init__()
            self.scale, self.shift = scale, shift

        def forward(self, x):
            s = x[:, :, :32, :32].mean(dim=(1, 2, 3)) - x[:, :, 32:, 32:].mean(dim=(1, 2, 3))
            return torch.stack([-s + self.shift, s], dim=1) * self.scale

    folder.mkdir(parents=True, exist_ok=True)
    pairs: dict[str, tuple[Path, Path]] = {}
    src = []
    for name, scale, shift in (("quad-t", 4.0, 0.0), ("quad-s", 2.0, 0.3)):
        path = export_onnx(Quadrants(scale, shift), folder / f"{name}.onnx", (1, 1, 64, 64), spatial_dynamic=False)
        src.append(write_card(path, name, "classify", input_shape=[None, 1, 64, 64], labels=["br", "ul"]))
    pairs["cls"] = make_pair(src[0], src[1], folder / "cls", "cls-teacher", "cls-student")
    seg_t, seg_s = make_pair(models["tiny-seg"], models["tiny-seg"], folder / "seg", "seg-teacher", "seg-student")
    card = json.loads(seg_s.read_text(encoding="utf-8"))
    card["input"]["preprocess"]["normalize"] = "zscore"
    seg_s.write_text(json.dumps(card, indent=2), encoding="utf-8")
    pairs["seg"] = (seg_t, seg_s)
    pairs["den"] = make_pair(models["tiny-denoise"], models["tiny-denoise-fp16"], folder / "den", "den-teacher",
                             "den-student")
    return pairs


@pytest.fixture(scope="session")
def compare_pairs(runtime_models, tmp_path_factory) -> dict[str, tuple[Path, Path]]:  # noqa: F811
    """name -> (teacher card, student card) of `build_compare_pairs`, made once per test session."""
    return build_compare_pairs(tmp_path_factory.mktemp("compare-pairs"), runtime_models)
