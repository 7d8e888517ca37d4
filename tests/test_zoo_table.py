"""benchmarks/zoo_table.py: the same metrics as evaluate_model, the KD gap by hand, one-line errors (exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from runtime_models import _nets, export_onnx, quadrant_images, write_card

from kdviewer.runtime import load_model
from kdviewer.runtime.evaluate import evaluate_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zoo_table  # noqa: E402

LEVELS = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]
LABELS = [1, 1, 0, 0, 0, 1]  # scored by s (upper-left minus lower-right): AUC 6/9; by -s: 3/9


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, Path]:
    """Two quadrant classifiers (AUC 6/9 and 3/9 on the data), a teacher and a student card, and the data."""
    import torch

    torch.set_num_threads(1)

    class Quadrants(torch.nn.Module):
        def __init__(self, sign: float) -> None:
            super().__init__()
            self.sign = sign

        def forward(self, x):
            s = x[:, :, :32, :32].mean(dim=(1, 2, 3)) - x[:, :, 32:, 32:].mean(dim=(1, 2, 3))
            return torch.stack([-s, s], dim=1) * 4 * self.sign

    folder = tmp_path_factory.mktemp("zoo")
    out = {}
    for name, sign, params, teacher in (("good", 1.0, 1000, None), ("bad", -1.0, 100, "good")):
        path = export_onnx(Quadrants(sign), folder / f"{name}.onnx", (1, 1, 64, 64), spatial_dynamic=False)
        card_path = write_card(path, name, "classify", input_shape=[None, 1, 64, 64], labels=["br", "ul"])
        card = json.loads(card_path.read_text(encoding="utf-8"))
        card["architecture"]["parameters"], card["teacher"] = params, teacher
        card_path.write_text(json.dumps(card), encoding="utf-8")
        out[name] = path
    np.savez(folder / "quad.npz", val_images=quadrant_images(LEVELS), val_labels=np.array(LABELS)[:, None],
             train_images=quadrant_images(LEVELS[:2]), train_labels=np.array([[1], [0]]))
    out["data"] = folder / "quad.npz"
    return out


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = zoo_table.main([*args, "--rounds", "1", "--threads", "1", "--markdown"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _rows(out: str) -> dict[str, dict[str, str]]:
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(head, cells, strict=True))
            for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}


def test_table_has_evaluate_metrics_and_the_gap_by_hand(zoo, capsys):
    code, out, _ = _run(capsys, "--data", str(zoo["data"]), "--split", "val", f"teacher={zoo['good']}",
                        f"kd={zoo['good']}", f"nokd={zoo['bad']}", f"int8={zoo['bad']}")
    assert code == 0
    rows = _rows(out)
    assert list(rows) == ["teacher", "kd", "nokd", "int8"]
    for label, name in (("teacher", "good"), ("nokd", "bad")):
        m = evaluate_model(load_model(zoo[name]), zoo["data"], "val", threads=1)
        for key, title in zoo_table.METRICS["classify"]:
            assert rows[label][title] == f"{m[key]:.4f}", (label, key)
    assert rows["teacher"]["AUC"] == f"{6 / 9:.4f}" and rows["nokd"]["AUC"] == f"{3 / 9:.4f}"
    gap = "KD gap closed (AUC)"
    assert (rows["teacher"][gap], rows["kd"][gap], rows["nokd"][gap], rows["int8"][gap]) == ("—", "100%", "—", "0%")
    assert rows["nokd"]["teacher/model params"] == "10.0×" and rows["teacher"]["speed-up"] == "1.0×"
    assert float(rows["kd"]["latency (ms)"]) > 0 and "6 items" in out


def test_the_footnote_names_models_run_without_the_blocked_layout(zoo, capsys, monkeypatch):
    """The runtime may run a thin model without onnxruntime's NCHWc rewrite (faster on this machine); the
    table's footnote says for which rows, so a speed-up is read with the plan that produced it."""
    from kdviewer.runtime import session as runtime_session

    runtime_session.clear_sessions()
    monkeypatch.setattr(runtime_session, "plain_is_faster", lambda blocked, plain, feed: True)
    code, out, _ = _run(capsys, "--data", str(zoo["data"]), "--split", "val", f"teacher={zoo['good']}",
                        f"kd={zoo['bad']}")
    runtime_session.clear_sessions()
    assert code == 0 and "NCHWc rewrite for teacher, kd (faster here)" in out
    assert zoo_table.layouts_note([zoo_table.Row("a", None, conv_plan="blocked")]) == ""


def test_gap_is_na_when_the_teacher_is_not_above_nokd(zoo, capsys):
    code, out, _ = _run(capsys, "--data", str(zoo["data"]), "--split", "val", f"teacher={zoo['bad']}",
                        f"kd={zoo['good']}", f"nokd={zoo['good']}")
    assert code == 0
    assert _rows(out)["kd"]["KD gap closed (AUC)"] == "n/a"


def test_teacher_found_by_the_students_card(zoo, capsys):
    code, out, _ = _run(capsys, "--data", str(zoo["data"]), "--split", "val", f"kd={zoo['bad']}",
                        f"big={zoo['good']}")
    assert code == 0 and "against big (good)" in out
    rows = _rows(out)  # no kd/nokd pair: no gap column
    assert rows["kd"]["teacher/model params"] == "10.0×" and "KD gap closed (AUC)" not in rows["kd"]


@pytest.mark.parametrize(("case", "says"), [("missing", "no such file"), ("tampered", "bytes, its card says"),
                                           ("split", "no split 'test'"), ("pair", "expected LABEL=MODEL"),
                                           ("task", "different tasks")])
def test_errors_are_one_line_and_exit_2(zoo, tmp_path, capsys, case, says):
    args = ["--data", str(zoo["data"]), "--split", "val", f"teacher={zoo['good']}"]
    if case == "missing":
        args[-1] = f"teacher={tmp_path / 'nope.onnx'}"
    elif case == "tampered":
        for suffix in (".onnx", ".json"):
            (tmp_path / f"good{suffix}").write_bytes(zoo["good"].with_suffix(suffix).read_bytes())
        with open(tmp_path / "good.onnx", "ab") as f:
            f.write(b"\0")
        args[-1] = f"teacher={tmp_path / 'good.onnx'}"
    elif case == "split":
        args[3] = "test"
    elif case == "pair":
        args.append("just-a-path.onnx")
    else:
        card = tmp_path / "seg.json"
        data = json.loads(zoo["good"].with_suffix(".json").read_text(encoding="utf-8"))
        data.update(task="segment", output={"kind": "logits", "labels": ["background", "x"]})
        (tmp_path / "good.onnx").write_bytes(zoo["good"].read_bytes())
        card.write_text(json.dumps({**data, "file": {**data["file"], "name": "good.onnx"}}), encoding="utf-8")
        args.append(f"seg={card}")
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("zoo_table: error: ") and says in err


# -- classic baselines (--classic nlm | bicubic | frangi) --------------------------------------------


def _card_with_recipe(card_path: Path, recipe: str | None) -> Path:
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if recipe is not None:
        card["training"]["recipe"] = recipe
    card["architecture"]["parameters"] = 1000
    card_path.write_text(json.dumps(card), encoding="utf-8")
    return card_path


def _restore_model(folder: Path, task: str, recipe: str | None) -> Path:
    """An identity denoiser (output = input) or the tiny x2 pixel-shuffle net, minmax, with an optional recipe."""
    import torch

    class Same(torch.nn.Module):
        def forward(self, x):
            return x * 1.0

    net, shape = (Same(), (1, 1, 32, 32)) if task == "denoise" else (_nets()["sr"], (1, 1, 16, 16))
    path = export_onnx(net, folder / f"{task}.onnx", shape, spatial_dynamic=True)
    write_card(path, task, task, input_shape=[None, *shape[1:]], kind="image",
               preprocess={"window": None, "normalize": "minmax", "resize": None})
    return _card_with_recipe(path.with_suffix(".json"), recipe).with_suffix(".onnx")


def _smooth_pngs(folder: Path, n: int) -> Path:
    """n smooth 48x40 grey images (a ramp and a disc): NLM removes Gaussian noise from them well."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:48, :40]
    for i in range(n):
        img = 40 + 2 * xx + 60 * (((yy - 20 - i) ** 2 + (xx - 20) ** 2) < 100)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_classic_nlm_denoises_the_same_degraded_inputs_with_h_chosen_on_training_items(tmp_path, capsys):
    from skimage.restoration import denoise_nl_means

    from kdviewer.imaging.metrics import psnr
    from kdviewer.runtime.evaluate import dataset_items
    from kdviewer.runtime.evaluate_restore import degraded_pair

    data = _smooth_pngs(tmp_path / "plain", 6)
    recipe = f'[data]\npath = "{data.as_posix()}"\nlayout = "plain_images"\nval_fraction = 0.5\n'
    model = _restore_model(tmp_path, "denoise", recipe)
    code, out, _ = _run(capsys, "--data", str(data), "--split", "val", f"teacher={model}", "--classic", "nlm",
                        "--tune-items", "2")
    assert code == 0
    rows = _rows(out)
    nlm_row, teacher = rows["NLM (classic)"], rows["teacher"]
    assert (nlm_row["parameters"], nlm_row["file (MB)"], nlm_row["speed-up"]) == ("—", "—", "—")
    assert float(nlm_row["latency (ms)"]) > 0
    assert nlm_row["input PSNR (dB)"] == teacher["input PSNR (dB)"]  # the very degraded inputs evaluate made
    assert teacher["PSNR (dB)"] == teacher["input PSNR (dB)"]  # the identity model
    assert float(nlm_row["PSNR (dB)"]) > float(teacher["input PSNR (dB)"]) + 2
    note = out[out.index("nlm: skimage"):]
    assert "patch_size 5, patch_distance 6, fast_mode=True" in note and "on 2 training items" in note
    factor = float(note.split("h = ")[1].split(" sigma")[0])
    assert factor in zoo_table.NLM_H_FACTORS
    # by hand: the val items, degraded as evaluate_restore does (one generator seeded 0), NLM with that h
    m = load_model(model)
    items = dataset_items(data, "denoise", "val", model=m).items
    rng, scores = np.random.default_rng(0), []
    for item in items:
        x, target = degraded_pair(m, item.load().image, None, rng)
        sigma = zoo_table.noise_sigma(x)
        out_img = denoise_nl_means(x, h=factor * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)
        scores.append(psnr(out_img, target, float(target.max() - target.min())))
    assert nlm_row["PSNR (dB)"] == f"{np.mean(scores):.2f}"


def test_classic_nlm_without_a_training_split_uses_the_fixed_factor_and_says_so(tmp_path, capsys):
    data = _smooth_pngs(tmp_path / "plain", 2)
    model = _restore_model(tmp_path, "denoise", None)
    code, out, _ = _run(capsys, "--data", str(data), f"teacher={model}", "--classic", "nlm")
    assert code == 0 and "h = 0.8 sigma fixed (no training split to choose on" in out


def test_classic_bicubic_is_the_input_psnr_evaluate_reports(tmp_path, capsys):
    from PIL import Image

    from kdviewer.imaging.degrade import downsample
    from kdviewer.imaging.metrics import psnr
    from kdviewer.imaging.resample import resize_2d

    data = _smooth_pngs(tmp_path / "plain", 2)
    model = _restore_model(tmp_path, "super_resolve", None)
    code, out, _ = _run(capsys, "--data", str(data), f"teacher={model}", "--classic", "bicubic")
    assert code == 0
    rows = _rows(out)
    bic = rows["bicubic (classic)"]
    assert bic["PSNR (dB)"] == bic["input PSNR (dB)"] == rows["teacher"]["input PSNR (dB)"]
    assert bic["SSIM"] != "nan" and "the very upsampling evaluate_restore scores as the input PSNR" in out
    by_hand = []
    for i in range(2):
        clean = np.asarray(Image.open(data / f"img{i}.png"), np.float32)
        lo, span = clean.min(), clean.max() - clean.min()
        up = resize_2d((downsample(clean, 2) - lo) / span, clean.shape, order=3)
        by_hand.append(psnr(up, (clean - lo) / span, 1.0))
    assert bic["PSNR (dB)"] == f"{np.mean(by_hand):.2f}"


def _vessel_drive(folder: Path, n: int) -> Path:
    """A DRIVE-like training/ folder: n 64x64 RGB fundus stand-ins with dark 3-px lines, manuals, round FOVs."""
    from PIL import Image

    part = folder / "training"
    for sub in ("images", "1st_manual", "mask"):
        (part / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :64]
    fov = ((yy - 32) ** 2 + (xx - 32) ** 2) < 30 ** 2
    for k in range(n):
        vessel = np.zeros((64, 64), bool)
        vessel[:, 20 + k: 23 + k] = True
        vessel[40 - k: 43 - k, :] = True
        vessel &= fov
        grey = np.where(vessel, 90.0, 170.0) + rng.normal(0, 6, (64, 64))
        grey = np.where(fov, grey, 0.0)
        rgb = np.clip(np.stack([grey * 1.1, grey, grey * 0.5], -1), 0, 255).astype(np.uint8)
        n_ = 21 + k
        Image.fromarray(rgb).save(part / "images" / f"{n_}_training.png")
        Image.fromarray((vessel * 255).astype(np.uint8)).save(part / "1st_manual" / f"{n_}_manual1.png")
        Image.fromarray((fov * 255).astype(np.uint8)).save(part / "mask" / f"{n_}_training_mask.png")
    return part


def test_classic_frangi_threshold_from_training_items_scored_by_evaluates_code(tmp_path, capsys):
    from kdviewer.imaging.metrics import dice, roc_auc
    from kdviewer.runtime.evaluate import dataset_items

    data = _vessel_drive(tmp_path, 5)
    path = export_onnx(_nets()["seg"], tmp_path / "seg.onnx", (1, 1, 32, 32), spatial_dynamic=True)
    write_card(path, "seg", "segment", input_shape=[None, 1, 32, 32], labels=["background", "vessel"],
               preprocess={"window": None, "normalize": "minmax", "resize": None})
    _card_with_recipe(path.with_suffix(".json"), f'[data]\npath = "{data.as_posix()}"\nval_fraction = 0.4\n')
    code, out, _ = _run(capsys, "--data", str(data), "--split", "val", f"teacher={path}", "--classic", "frangi")
    assert code == 0
    fr = _rows(out)["Frangi (classic)"]
    assert (fr["parameters"], fr["file (MB)"]) == ("—", "—")
    assert "black_ridges=True" in out and "on 3 training items" in out
    m = load_model(path)
    train = dataset_items(data, "segment", "train", model=m).items
    val = dataset_items(data, "segment", "val", model=m).items
    assert len(train) == 3 and len(val) == 2
    level, _ = zoo_table.choose_frangi_threshold(m, train, "")
    dices, scores, truths = [], [], []
    for item in val:
        sample = item.load()
        r, fov = zoo_table.vesselness(m, sample)
        truth = np.asarray(sample.mask) > 0
        dices.append(dice((r >= level) & fov, truth & fov))
        scores.append(r[fov])
        truths.append(truth[fov])
    assert fr["Dice"] == f"{np.mean(dices):.4f}" and np.mean(dices) > 0.6
    assert fr["pixel AUC"] == f"{roc_auc(np.concatenate(truths), np.concatenate(scores)):.4f}"


def test_classic_of_another_task_is_a_one_line_error(zoo, capsys):
    code, out, err = _run(capsys, "--data", str(zoo["data"]), "--split", "val", f"teacher={zoo['good']}",
                          "--classic", "frangi")
    assert code == 2 and out == "" and "is a baseline for segment models" in err
