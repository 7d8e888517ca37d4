"""Exports: DICOM SEG referencing the source series, enhanced DICOM series, NIfTI, classification JSON."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
from runtime_models import runtime_models  # noqa: F401

from kdviewer.runtime import classify_image, enhance_volume, load_model, segment_volume
from kdviewer.runtime.export import (
    ExportError,
    save_classification_json,
    save_dicom_seg,
    save_enhanced_dicom,
    save_nifti,
)
from kdviewer.study import Volume, load_volume


@pytest.fixture(scope="module")
def phantom(repo_dir) -> Volume:
    return load_volume(repo_dir / "resources/samples/pacsman-mr/dicomseries")


@pytest.fixture(scope="module")
def phantom_seg(runtime_models, phantom):  # noqa: F811
    return segment_volume(load_model(runtime_models["tiny-seg"]), phantom, threads=1)


def test_dicom_seg_reads_back_and_references_the_source_series(phantom, phantom_seg, tmp_path):
    path = save_dicom_seg(phantom_seg.labels, phantom, tmp_path / "seg.dcm", phantom_seg.label_names, "tiny-seg")
    ds = pydicom.dcmread(path)
    assert ds.Modality == "SEG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == phantom.info.uid
    assert ds.StudyInstanceUID == phantom.info.study_uid
    assert ds.FrameOfReferenceUID == phantom.info.frame_of_reference_uid
    assert ds.SeriesInstanceUID != phantom.info.uid
    seg = hd.seg.segread(path)
    assert seg.get_segment_description(1).segment_label == "bright"
    mask = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(phantom.info.sop_instance_uids), combine_segments=True,
        ignore_spatial_locations=True)
    np.testing.assert_array_equal(mask, phantom_seg.labels.array)
    assert not list(tmp_path.glob(".part-*"))


def test_dicom_seg_needs_a_dicom_source(phantom_seg, tmp_path):
    with pytest.raises(ExportError, match="not a DICOM series"):
        save_dicom_seg(phantom_seg.labels, phantom_seg.labels, tmp_path / "x.dcm", phantom_seg.label_names)
    assert not (tmp_path / "x.dcm").exists()


def test_mask_as_nifti_keeps_the_grid(phantom, phantom_seg, tmp_path):
    back = load_volume(save_nifti(phantom_seg.labels, tmp_path / "mask.nii.gz"))
    assert back.same_grid(phantom)
    np.testing.assert_array_equal(back.array, phantom_seg.labels.array)


def test_enhanced_series_as_dicom_is_a_new_derived_series(runtime_models, repo_dir, tmp_path):  # noqa: F811
    ct = load_volume(repo_dir / "resources/samples/chest-ct-lidc/dicom")
    sr = enhance_volume(load_model(runtime_models["tiny-sr2"]), ct, threads=1).volume
    files = save_enhanced_dicom(sr, ct, tmp_path / "sr", "tiny-sr2")
    assert len(files) == 17
    back = load_volume(tmp_path / "sr")
    assert back.same_grid(sr) and back.info.uid != ct.info.uid
    np.testing.assert_array_equal(back.array, sr.array)
    ds = pydicom.dcmread(files[0])
    assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID in ct.info.sop_instance_uids
    assert ds.StudyInstanceUID == ct.info.study_uid


def test_classification_as_json(runtime_models, repo_dir, tmp_path):  # noqa: F811
    vol = load_volume(repo_dir / "resources/samples/chest-xray/clinical_sample_01.png")
    result = classify_image(load_model(runtime_models["tiny-cls"]), vol, threads=1)
    data = json.loads(save_classification_json(result, tmp_path / "r.json", vol, 0).read_text())
    assert data["model"] == "tiny-cls" and data["label"] in ("normal", "pneumonia")
    assert sum(data["probabilities"].values()) == pytest.approx(1)
    assert data["source"]["path"].endswith("clinical_sample_01.png")
