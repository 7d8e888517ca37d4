"""Write results: masks as NIfTI or DICOM SEG (highdicom), enhanced series as NIfTI or DICOM, labels as JSON.

DICOM outputs reference the source series, so they need its datasets: they are read again with
pydicom from the source folder (``info.source``), matched by ``info.sop_instance_uids``. Every file is
written to a temporary name and renamed, so a failed or cancelled export leaves no half file.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from kdviewer import __version__
from kdviewer.runtime.classify import ClassificationResult
from kdviewer.runtime.errors import RuntimeLayerError
from kdviewer.study import Volume, save_volume


class ExportError(RuntimeLayerError):
    """A result could not be written in the format asked for (e.g. DICOM SEG without a DICOM source)."""


def _atomic(path: Path) -> Path:
    """A temporary name beside `path`, keeping its extension (writers choose the format by it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".part-{path.name}")


def save_nifti(volume: Volume, path: str | Path) -> Path:
    """A label or enhanced `Volume` as NIfTI/NRRD/MHA (by extension) with its geometry."""
    path = Path(path)
    tmp = _atomic(path)
    save_volume(volume, tmp)
    os.replace(tmp, path)
    return path


def _candidate_files(source: Volume, files: Iterable[Path] | None) -> list[Path]:
    if files is not None:
        return [Path(f) for f in files]
    root = Path(source.info.source) if source.info.source else None
    if root is None or not root.exists():
        raise ExportError(root, "the source series' files are needed for a DICOM export and were not found")
    return [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())


def source_datasets(source: Volume, files: Iterable[Path] | None = None) -> list:
    """The source series' pydicom datasets in the volume's slice order (matched by SOPInstanceUID)."""
    import pydicom

    wanted = list(source.info.sop_instance_uids)
    if not wanted:
        raise ExportError(source.info.source or None, "the source is not a DICOM series (no SOP instance UIDs)")
    found: dict[str, object] = {}
    for f in _candidate_files(source, files):
        try:
            ds = pydicom.dcmread(f)
        except Exception:  # noqa: BLE001 - not every file of a folder is DICOM
            continue
        uid = str(getattr(ds, "SOPInstanceUID", ""))
        if uid in wanted:
            found[uid] = ds
    missing = [u for u in wanted if u not in found]
    if missing:
        raise ExportError(source.info.source or None, f"{len(missing)} of the series' {len(wanted)} DICOM files "
                          f"were not found (first missing SOPInstanceUID {missing[0]})")
    return [found[u] for u in wanted]


# Type 2 attributes (may be empty, must be present) that highdicom copies from the source images.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _with_type2_attributes(ds, slice_thickness_mm: float):
    """The dataset with the attributes highdicom reads filled in when the file lacks them."""
    for kw in _TYPE2:
        if kw not in ds:
            setattr(ds, kw, "")
    if "SliceThickness" not in ds:
        ds.SliceThickness = f"{slice_thickness_mm:.6g}"  # the slice spacing stands in for it
    return ds


def save_dicom_seg(labels: Volume, source: Volume, path: str | Path, label_names: Sequence[str],
                   model_id: str = "kdviewer", files: Iterable[Path] | None = None) -> Path:
    """A (z, y, x) label volume on `source`'s grid as one DICOM SEG instance referencing the source series.

    label_names[k] names label value k (0 = background, not written). Raises `ExportError` when the
    source is not DICOM or the grids differ.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    path = Path(path)
    if not labels.same_grid(source):
        raise ExportError(path, "the mask is not on the source series' grid")
    datasets = [_with_type2_attributes(ds, source.spacing[2]) for ds in source_datasets(source, files)]
    present = [k for k in range(1, len(label_names)) if (labels.array == k).any()]
    if not present:
        raise ExportError(path, "the mask is empty: DICOM SEG needs at least one segmented voxel")
    mask = np.zeros(labels.array.shape, np.uint8)
    descriptions = []
    algorithm = hd.AlgorithmIdentificationSequence(name=model_id, version=__version__,
                                                   family=codes.DCM.ArtificialIntelligence)
    for number, k in enumerate(present, start=1):  # segment numbers must run 1, 2, 3...
        mask[labels.array == k] = number
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=str(label_names[k]),
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=hd.sr.CodedConcept(f"KDV{k}", "99KDV", str(label_names[k])),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm))
    with warnings.catch_warnings():  # highdicom's advice on single-component patient names of the source
        warnings.filterwarnings("ignore", message=".*person name.*", category=UserWarning)
        seg = _segmentation(hd, datasets, mask, descriptions, model_id)
    tmp = _atomic(path)
    seg.save_as(tmp)
    os.replace(tmp, path)
    return path


def _segmentation(hd, datasets: list, mask: np.ndarray, descriptions: list, model_id: str):
    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9001,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="kdviewer",
        manufacturer_model_name=model_id, software_versions=__version__, device_serial_number="0",
        series_description=f"{model_id} segmentation (research use, not for diagnosis)"[:64])


def _derived(ds, new_series_uid: str, description: str, model_id: str):
    """A copy of `ds` marked as a derived image of a new series (pixels set by the caller)."""
    import copy

    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    out = copy.deepcopy(ds)
    for kw in ("LargestImagePixelValue", "SmallestImagePixelValue", "PixelPaddingValue", "WindowCenterWidthExplanation"):
        if kw in out:
            delattr(out, kw)
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    out.SourceImageSequence = [ref]
    out.SOPInstanceUID = generate_uid()
    out.SeriesInstanceUID = new_series_uid
    image_type = list(ds.get("ImageType", ["ORIGINAL", "PRIMARY"]))
    out.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    out.SeriesDescription = description[:64]
    out.DerivationDescription = f"{description} by {model_id} (kdviewer {__version__}); research use only"[:1024]
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return out


def save_enhanced_dicom(volume: Volume, source: Volume, out_dir: str | Path, model_id: str = "kdviewer",
                        files: Iterable[Path] | None = None) -> list[Path]:
    """An enhanced volume (same slices as `source`; any in-plane size) as a new DICOM series in `out_dir`.

    New SeriesInstanceUID and SOPInstanceUIDs, ImageType DERIVED\\SECONDARY, each slice referencing its
    source image; pixels stored as int16 with slope 1 / intercept 0 (the volume's units, HU for CT).
    """
    from pydicom.uid import generate_uid

    out_dir = Path(out_dir)
    if volume.shape[0] != source.shape[0]:
        raise ExportError(out_dir, f"the enhanced volume has {volume.shape[0]} slices, the source "
                          f"{source.shape[0]}: cannot pair them")
    datasets = source_datasets(source, files)
    series_uid = generate_uid()
    description = volume.info.description or "enhanced"
    pixels = np.clip(np.rint(volume.array), -32768, 32767).astype(np.int16)
    tmp_dir = _atomic(out_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for z, ds in enumerate(datasets):
        out = _derived(ds, series_uid, description, model_id)
        out.Rows, out.Columns = int(pixels.shape[1]), int(pixels.shape[2])
        out.PixelSpacing = [f"{volume.spacing[1]:.6g}", f"{volume.spacing[0]:.6g}"]  # row, column spacing
        out.ImagePositionPatient = [f"{v:.6f}" for v in volume.index_to_lps([0.0, 0.0, float(z)])]
        out.BitsAllocated, out.BitsStored, out.HighBit, out.PixelRepresentation = 16, 16, 15, 1
        out.SamplesPerPixel, out.PhotometricInterpretation = 1, "MONOCHROME2"
        out.RescaleSlope, out.RescaleIntercept = 1, 0
        out.PixelData = np.ascontiguousarray(pixels[z]).tobytes()
        out["PixelData"].VR = "OW"
        name = f"slice{z:04d}.dcm"
        out.save_as(tmp_dir / name, enforce_file_format=True)
        written.append(out_dir / name)
    if out_dir.exists():
        for p in tmp_dir.iterdir():
            os.replace(p, out_dir / p.name)
        tmp_dir.rmdir()
    else:
        os.replace(tmp_dir, out_dir)
    return written


def save_classification_json(result: ClassificationResult, path: str | Path, source: Volume | None = None,
                             slice_index: int | None = None) -> Path:
    """The result (label, probabilities, latency, model) and where it came from, as indented JSON."""
    path = Path(path)
    data = result.to_dict()
    if source is not None:
        data["source"] = {"path": source.info.source, "series_uid": source.info.uid,
                          "modality": source.info.modality, "slice_index": slice_index}
    data["intended_use"] = "Research use only. Not for diagnosis."
    tmp = _atomic(path)
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
