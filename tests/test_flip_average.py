"""Test-time flip averaging of segmenters (the card's ``postprocess.flip_average``): the class probabilities of the
flipped views, flipped back and averaged; refused in one line where the value is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from runtime_models import runtime_models  # noqa: F401 - session fixture

from kdviewer.distill.recipe import RecipeError, load_recipe
from kdviewer.modelcard import ModelCardError
from kdviewer.runtime import load_model, scan_models, segment
from kdviewer.runtime.errors import ModelInputError
from kdviewer.runtime.segment import FLIP_VIEWS, SlicePredictor, flip_averaged, segment_volume

RECIPES = Path(__file__).resolve().parents[1] / "resources" / "recipes"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_the_average_is_over_the_flipped_back_views() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 1, 6, 8)).astype(np.float32)
    ramp = (np.linspace(-2, 2, 8)[None, :] + np.linspace(0, 1, 6)[:, None]).astype(np.float32)

    def run(batch):  # not flip-equivariant: class 1's logit grows to the right and downwards
        return np.concatenate([np.zeros_like(batch), batch + ramp], axis=1)

    got = flip_averaged(run, "logits", FLIP_VIEWS["hv"])(x)
    views = [ramp, ramp[:, ::-1], ramp[::-1, :], ramp[::-1, ::-1]]  # each view's ramp, seen from the original
    want = np.mean([_sigmoid(x[:, 0] + r) for r in views], axis=0)
    np.testing.assert_allclose(got[:, 1], want, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    got_h = flip_averaged(run, "logits", FLIP_VIEWS["h"])(x)
    np.testing.assert_allclose(got_h[:, 1], (_sigmoid(x[:, 0] + ramp) + _sigmoid(x[:, 0] + ramp[:, ::-1])) / 2,
                               atol=1e-6)

    def pointwise(batch):  # a flip-equivariant net: averaging changes nothing
        return np.concatenate([np.zeros_like(batch), 3 * batch], axis=1)

    np.testing.assert_allclose(flip_averaged(pointwise, "logits", FLIP_VIEWS["hv"])(x)[:, 1],
                               _sigmoid(3 * x[:, 0]), atol=1e-6)

    def three_classes(batch):  # the softmax path (more than two classes), same ramp on class 1
        return np.concatenate([np.zeros_like(batch), batch + ramp, np.ones_like(batch)], axis=1)

    got3 = flip_averaged(three_classes, "logits", FLIP_VIEWS["hv"])(x)
    e = [np.exp(np.stack([np.zeros_like(x[:, 0]), x[:, 0] + r, np.ones_like(x[:, 0])], 1)) for r in views]
    np.testing.assert_allclose(got3, np.mean([v / v.sum(1, keepdims=True) for v in e], axis=0), atol=1e-6)


def _with_flips(runtime_models, tmp_path: Path, value) -> Path:  # noqa: F811 - fixture
    card = runtime_models["tiny-seg"]
    for suffix in (".json", ".onnx"):
        shutil.copy(card.with_suffix(suffix), tmp_path / card.with_suffix(suffix).name)
    copy = tmp_path / card.name
    data = json.loads(copy.read_text())
    data["postprocess"] = {**data.get("postprocess", {}), "flip_average": value}
    copy.write_text(json.dumps(data))
    return copy


def test_a_card_with_flips_runs_the_network_on_each_view(runtime_models, tmp_path: Path,  # noqa: F811
                                                         monkeypatch) -> None:
    plain = load_model(runtime_models["tiny-seg"])
    flipped = load_model(_with_flips(runtime_models, tmp_path, "hv"))
    img = np.random.default_rng(1).uniform(0, 100, (32, 32)).astype(np.float32)  # one tile: no blending seams
    img[8:20, 5:14] += 150
    base = SlicePredictor(plain, threads=1)
    want = np.mean([np.flip(base.probabilities([np.ascontiguousarray(np.flip(img, axes))], None)[0], axes)
                    if axes else base.probabilities([img], None)[0] for axes in FLIP_VIEWS["hv"]], axis=0)
    seen: list[np.ndarray] = []
    make_runner = segment.make_runner

    def recording(model, threads=None):
        run = make_runner(model, threads)
        return lambda batch: (seen.append(batch.copy()), run(batch))[1]

    monkeypatch.setattr(segment, "make_runner", recording)
    got = SlicePredictor(flipped, threads=1).probabilities([img], None)[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
    (batch,) = seen  # one call: the image and its three flips in one batch
    assert batch.shape[0] == 4
    for view, axes in zip(batch, FLIP_VIEWS["hv"], strict=True):
        np.testing.assert_array_equal(view, np.flip(batch[0], axes) if axes else batch[0])
    monkeypatch.undo()
    np.testing.assert_allclose(SlicePredictor(flipped, threads=1, flips="").probabilities([img], None)[0],
                               base.probabilities([img], None)[0], atol=1e-6)  # flips="" overrides the card


def test_the_viewer_path_uses_the_card(runtime_models, tmp_path: Path) -> None:  # noqa: F811
    flipped = load_model(_with_flips(runtime_models, tmp_path, "h"))
    img = np.random.default_rng(2).uniform(0, 100, (1, 32, 32)).astype(np.float32)
    img[0, 4:12, 20:30] += 150
    labels = segment_volume(flipped, img).labels.array
    probs = SlicePredictor(flipped, threads=1).probabilities([img[0]], None)[0]
    np.testing.assert_array_equal(labels[0], np.argmax(probs, axis=0))


@pytest.mark.parametrize("value", ["x", "vh", True])
def test_a_wrong_card_value_is_refused_at_load_in_one_line(runtime_models, tmp_path: Path, value) -> None:  # noqa: F811
    card = _with_flips(runtime_models, tmp_path, value)
    with pytest.raises(ModelCardError, match="flip_average") as info:
        load_model(card)
    assert len(str(info.value).splitlines()) == 1
    scan = scan_models([(tmp_path, "user")])  # the registry lists it as refused, with the reason
    assert not scan.models and "flip_average" in scan.refused[0][1]
    with pytest.raises(ModelInputError, match="flip_average"):  # and a wrong override is refused where it is given
        SlicePredictor(load_model(runtime_models["tiny-seg"]), threads=1, flips=str(value))


def test_the_recipe_key_is_checked() -> None:
    recipe = load_recipe(RECIPES / "retina-vessels.toml", ['export.postprocess={fov_gate = true, flip_average = "hv"}'])
    assert recipe.export.postprocess["flip_average"] == "hv"
    for bad, says in (('"hvx"', "not one of h, v, hv"), ("true", "should be one of")):
        with pytest.raises(RecipeError, match=says):
            load_recipe(RECIPES / "retina-vessels.toml", [f"export.postprocess={{flip_average = {bad}}}"])


def test_the_card_panel_says_it_in_words(runtime_models, tmp_path: Path) -> None:  # noqa: F811
    from kdviewer.gui.ai_logic import ModelEntry, card_html, postprocess_text

    model = load_model(_with_flips(runtime_models, tmp_path, "hv"))
    html = card_html(ModelEntry(model.id, model.task, model, True, "", model.card_path))
    assert "Post-processing" in html and "the four averaged" in html
    assert postprocess_text({"flip_average": "h", "fov_gate": True, "argmax": True}) == (
        "each image also run flipped left-right, the two averaged; field-of-view gate")
    assert postprocess_text({"lung_gate_mm": 9.0, "lung_gate_min_cm2": 5.0}) == (
        "lung gate (9 mm, none on slices with < 5 cm² of lung)")
    assert postprocess_text({"argmax": True}) == ""
