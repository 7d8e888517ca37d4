"""The Distil tab with an ONNX teacher (a zoo teacher, by its card): the registry lists the shipped teachers
that have no run folder as ONNX ones, the recipe takes the card's preprocessing (and the engine accepts it),
feature methods and teachers of another task are refused, and the form labels them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kdviewer.gui import distil_logic as logic
from kdviewer.runtime.registry import SHIPPED_DIR

LIVER = SHIPPED_DIR / "liver-ct-teacher.json"            # segment, window [60, 400], 1 x 256 x 256
LUNG = SHIPPED_DIR / "lung-nodule-ct-teacher.json"       # segment, window [-600, 1500], 3 slices, 512 x 512
PNEUMONIA = SHIPPED_DIR / "pneumonia-cxr-teacher.json"   # classify, minmax, 64 x 64
CT_DENOISE = SHIPPED_DIR / "ct-denoise-teacher.json"     # denoise, window [0, 2000]


def write_card(folder: Path, source: Path, model_id: str, **changes) -> Path:
    """A user card copied from a shipped one, with a stand-in model file whose sha256 and size it gives
    (the registry checks those only), and `changes` set by dotted key."""
    card = json.loads(source.read_text(encoding="utf-8"))
    blob = f"stand-in model {model_id}".encode()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model_id}.onnx").write_bytes(blob)
    card["id"] = model_id
    card["file"].update(name=f"{model_id}.onnx", sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob))
    for key, value in changes.items():
        *tables, last = key.split(".")
        section = card
        for part in tables:
            section = section[part]
        section[last] = value
    path = folder / f"{model_id}.json"
    path.write_text(json.dumps(card, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def user_models(tmp_path: Path) -> Path:
    """A user model folder with a segment teacher that has a run folder (best.pt) and one that has not."""
    folder = tmp_path / "home" / "models"
    run_dir = tmp_path / "runs" / "my-liver" / "teacher"
    run_dir.mkdir(parents=True)
    (run_dir / "best.pt").write_bytes(b"checkpoint")
    write_card(folder, LIVER, "my-liver-teacher", **{"training.run_dir": str(run_dir)})
    write_card(folder, LIVER, "my-onnx-teacher")
    return folder


def segment_form(tmp_path: Path, teacher: Path | str, method: str = "cwd",
                 task: str = "segment") -> logic.DistilForm:
    form = logic.form_defaults(task, str(tmp_path / "data"), tmp_path / "runs", now=0)
    return logic.form_with(form, teacher=logic.TeacherChoice(logic.TEACHER_RUN, str(teacher), "a teacher"),
                           method=method)


def test_registry_lists_zoo_teachers_as_onnx_after_those_with_runs(tmp_path: Path, user_models: Path) -> None:
    teachers = logic.registry_teachers("segment", user_dir=user_models)
    ids = [t.id for t in teachers]
    assert ids[0] == "my-liver-teacher"     # a run folder first: any KD method works with it
    first = teachers[0]
    assert not first.onnx and first.path == str(tmp_path / "runs" / "my-liver" / "teacher")
    liver = next(t for t in teachers if t.id == "liver-ct-teacher")
    assert liver.onnx and liver.path == str(LIVER) and liver.origin == "shipped"
    assert liver.architecture == "unet" and liver.metrics["dice"] > 0.9
    mine = next(t for t in teachers if t.id == "my-onnx-teacher")
    assert mine.onnx and mine.origin == "user" and mine.path == str(user_models / "my-onnx-teacher.json")
    assert {"lung-nodule-ct-teacher", "retina-vessels-teacher"} <= set(ids)
    assert all(t.task == "segment" for t in teachers) and "pneumonia-cxr-teacher" not in ids
    classify = [t.id for t in logic.registry_teachers("classify", user_dir=user_models)]
    assert "pneumonia-cxr-teacher" in classify and "liver-ct-teacher" not in classify


def test_recipe_takes_the_onnx_teachers_preprocessing(tmp_path: Path) -> None:
    shipped = logic.shipped_recipe("segment")["data"]
    assert shipped["normalize"] == "zscore" and "window" not in shipped   # retina-vessels: all will change
    raw = logic.recipe_dict(segment_form(tmp_path, LIVER))
    assert raw["teacher"] == str(LIVER)
    data = raw["data"]
    assert data["normalize"] == "window" and data["window"] == [60.0, 400.0]
    assert data["input_size"] == [256, 256] and data["channels"] == 1 and "slices" not in data
    assert data["patch_size"] == shipped["patch_size"]     # the rest of the shipped recipe stays

    lung = logic.recipe_dict(segment_form(tmp_path, LUNG.with_suffix(".onnx")))["data"]   # by its .onnx
    assert (lung["window"], lung["input_size"]) == ([-600.0, 1500.0], [512, 512])
    assert (lung["channels"], lung["slices"]) == (1, 3)    # 3 input channels: 1 channel x 3 slices

    # An extra setting still wins over the card (and the engine then refuses the run, naming the teacher).
    overridden = logic.form_with(segment_form(tmp_path, LIVER), overrides=("data.input_size=[128, 128]",))
    kept = logic.recipe_dict(overridden)
    assert kept["data"]["input_size"] == [128, 128]


def test_a_stale_window_is_removed(tmp_path: Path) -> None:
    assert logic.shipped_recipe("denoise")["data"]["window"] == [0.0, 2000.0]
    card = write_card(tmp_path / "cards", CT_DENOISE, "zscore-denoiser",
                      **{"input.preprocess.normalize": "zscore", "input.preprocess.window": None})
    data = logic.recipe_dict(segment_form(tmp_path, card, method="restoration", task="denoise"))["data"]
    assert data["normalize"] == "zscore" and "window" not in data


def test_a_stale_green_channel_and_clahe_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shipped recipe with the green channel and CLAHE, and a teacher whose card has neither: both go."""
    original = logic.shipped_recipe

    def green_recipe(task: str) -> dict:
        raw = original(task)
        raw["data"].update(grey="green", clahe=0.01)
        return raw

    monkeypatch.setattr(logic, "shipped_recipe", green_recipe)
    assert logic.shipped_recipe("segment")["data"]["grey"] == "green"
    data = logic.recipe_dict(segment_form(tmp_path, LIVER))["data"]
    assert "grey" not in data and "clahe" not in data and data["normalize"] == "window"


def test_a_cards_green_channel_and_clahe_reach_the_recipe_and_the_note(tmp_path: Path) -> None:
    card = write_card(tmp_path / "cards", LIVER, "green-teacher",
                      **{"input.preprocess.grey": "green", "input.preprocess.clahe": 0.02})
    data = logic.recipe_dict(segment_form(tmp_path, card))["data"]
    assert (data["grey"], data["clahe"]) == ("green", 0.02)
    note = logic.onnx_teacher_note(str(card))
    assert "green channel as grey" in note and "CLAHE clip 0.02" in note


def test_the_recipe_passes_the_engines_check(tmp_path: Path) -> None:
    from kdviewer.distill.onnx_teacher import check_compatible, find_onnx_teacher
    from kdviewer.distill.recipe import load_recipe

    form = segment_form(tmp_path, LIVER)
    path = tmp_path / "recipe.toml"
    path.write_text(logic.recipe_text(form), encoding="utf-8")
    recipe = load_recipe(path)
    model = find_onnx_teacher(recipe)
    assert model is not None and model.id == "liver-ct-teacher"
    check_compatible(model, recipe)   # raises RecipeError when the form's recipe does not fit the card


@pytest.mark.parametrize("method", ["fitnets", "attention"])
def test_a_feature_method_with_an_onnx_teacher_is_refused(tmp_path: Path, method: str) -> None:
    form = segment_form(tmp_path, LIVER, method=method)
    with pytest.raises(logic.DistilFormError) as info:
        logic.check_form(form)
    message = str(info.value)
    assert message.startswith(f"teacher: {method} ") and "only its outputs" in message and "\n" not in message
    with pytest.raises(logic.DistilFormError, match="^teacher: "):
        logic.recipe_dict(form)
    logic.check_form(logic.form_with(form, method="pixel"))   # an output method is fine


def test_a_teacher_of_another_task_is_refused(tmp_path: Path) -> None:
    with pytest.raises(logic.DistilFormError) as info:
        logic.check_form(segment_form(tmp_path, PNEUMONIA))
    assert str(info.value).startswith("teacher: pneumonia-cxr-teacher is a classify model")
    assert "segment" in str(info.value)


def test_an_unreadable_card_is_refused_on_the_teacher_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    for teacher in (bad, tmp_path / "missing.onnx"):
        with pytest.raises(logic.DistilFormError) as info:
            logic.recipe_dict(segment_form(tmp_path, teacher))
        assert str(info.value).startswith("teacher: cannot read the ONNX model's card")
        assert "\n" not in str(info.value)


def test_no_kd_baseline_ignores_the_teacher(tmp_path: Path) -> None:
    raw = logic.recipe_dict(segment_form(tmp_path, PNEUMONIA, method="none"))   # wrong task: not used
    assert raw["teacher"] == "" and raw["data"]["normalize"] == "zscore"


def test_the_form_labels_zoo_onnx_teachers(qtbot, tmp_path: Path, user_models: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from kdviewer.gui.research_distill import DistilTab
    from kdviewer.gui.settings import file_settings

    home = user_models.parent
    monkeypatch.setenv("KDVIEWER_HOME", str(home))
    tab = DistilTab(settings=file_settings(tmp_path / "settings.ini"), data_dir=home,
                    user_models_dir=user_models)
    qtbot.addWidget(tab)
    tab._set_task("segment")
    items = [tab.teacher_combo.itemText(i) for i in range(tab.teacher_combo.count())]
    assert items[0] == "train one first" and items[1] == "my-liver-teacher (registry, unet)"
    assert "liver-ct-teacher (zoo ONNX, unet)" in items and "my-onnx-teacher (ONNX, unet)" in items
    assert items[-1] == "run folder or checkpoint…"
    tab.select_teacher(logic.TEACHER_RUN, str(LIVER))
    assert tab.teacher_combo.currentText() == "liver-ct-teacher (zoo ONNX, unet)"
    tab.data_edit.setText(str(tmp_path / "data"))
    tab.method_combo.setCurrentIndex(tab.method_combo.findData("pixel"))
    data = logic.recipe_dict(tab.form_values())["data"]
    assert (data["normalize"], data["window"], data["input_size"]) == ("window", [60.0, 400.0], [256, 256])


def test_the_note_under_an_onnx_teacher_says_what_its_card_fixes(tmp_path: Path) -> None:
    note = logic.onnx_teacher_note(str(LIVER))
    assert "window 60/400" in note and "256×256" in note and "FitNets" in note
    assert logic.onnx_teacher_note(str(tmp_path / "run")) == ""
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert logic.onnx_teacher_note(str(tmp_path / "bad.json")).startswith("This ONNX model's card cannot be read")
