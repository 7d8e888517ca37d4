"""`kdviewer infer MODEL PATH --out OUT`: run a model on a study; write a mask, an enhanced series or JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

_NIFTI = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")


def register(subparsers: Any) -> None:
    """Add `kdviewer infer`."""
    parser = subparsers.add_parser(
        "infer", help="run a model on a study and write the result",
        description="classify: OUT is a .json file. segment: OUT .nii.gz/.nrrd/.mha writes the label volume, "
                    "OUT .dcm a DICOM SEG referencing the source series (DICOM sources only). denoise / "
                    "super_resolve: OUT .nii.gz/.nrrd/.mha writes the volume, any other OUT is a folder for a "
                    "new DICOM series (DICOM sources only). Research use only, not for diagnosis.")
    parser.add_argument("model", metavar="MODEL", help="a registry id, or an .onnx with its card beside it")
    parser.add_argument("path", metavar="PATH", help="a study: DICOM folder or file, NIfTI/NRRD/MHA, PNG/JPEG")
    parser.add_argument("--out", required=True, metavar="OUT", help="where to write the result")
    parser.add_argument("--series", type=int, default=0, help="which series of PATH (default 0, see `info`)")
    parser.add_argument("--slice", type=int, dest="slice_index", help="classify: the slice (default: middle)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: physical cores)")
    parser.add_argument("--models-dir", metavar="DIR", help="user model folder to search for MODEL")
    parser.set_defaults(func=run)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in _NIFTI if name.endswith(s)), path.suffix.lower())


def _progress(what: str):
    def show(done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{what}: {done}/{total}")
            if done == total:
                sys.stderr.write("\n")
    return show


def run(args: argparse.Namespace) -> int:
    """Load the study, run the model's task, write OUT, print a one-line summary."""
    from kdviewer.runtime import classify_image, enhance_volume, resolve_model, segment_volume
    from kdviewer.runtime import export as ex
    from kdviewer.runtime.segment import extent_text
    from kdviewer.study import load_volume

    model = resolve_model(args.model, user_dir=args.models_dir)
    volume = load_volume(args.path, series=args.series)
    out = Path(args.out)
    modality = volume.info.modality
    if not model.fits(modality):
        print(f"kdviewer infer: warning: {model.id} is made for {', '.join(model.modalities)}, "
              f"the study is {modality}", file=sys.stderr)
    kind = _suffix(out)
    if model.task == "classify":
        result = classify_image(model, volume, args.slice_index, threads=args.threads)
        ex.save_classification_json(result, out, volume, args.slice_index)
        print(f"{result.top_label} {result.top_probability:.3f} ({result.latency_ms:.1f} ms) -> {out}")
    elif model.task == "segment":
        seg = segment_volume(model, volume, _progress("segment"), threads=args.threads)
        if kind == ".dcm":
            ex.save_dicom_seg(seg.labels, volume, out, seg.label_names, model.id)
        else:
            ex.save_nifti(seg.labels, out)
        sizes = ", ".join(f"{k} {extent_text(v, volume)}" for k, v in seg.volumes_ml.items())
        print(f"{sizes} ({seg.latency_ms:.0f} ms) -> {out}")
    else:
        res = enhance_volume(model, volume, _progress(model.task), threads=args.threads)
        if kind in _NIFTI:
            ex.save_nifti(res.volume, out)
        else:
            ex.save_enhanced_dicom(res.volume, volume, out, model.id)
        z, y, x = res.volume.shape
        print(f"{model.task} {x}x{y}x{z} ({res.latency_ms:.0f} ms) -> {out}")
    return 0
