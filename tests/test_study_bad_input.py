"""Bad input never crashes and never loses the rest: each bad file is skipped or warned about, by name."""

from __future__ import annotations

import copy
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from kdviewer.study import (
    CorruptFileError,
    NoSeriesFoundError,
    PathNotFoundError,
    VolumeTooLargeError,
    load_series,
    load_volume,
    open_path,
    read_slice,
)


def _testfile(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} not installed (pydicom-data)"
    return Path(path)


def _reasons(result) -> dict[str, str]:
    return {p.name: reason for p, reason in result.skipped}


def test_bad_files_are_skipped_with_reasons_and_the_good_series_still_loads(tmp_path: Path) -> None:
    shutil.copy(_testfile("CT_small.dcm"), tmp_path / "good")
    (tmp_path / "empty.dcm").write_bytes(b"")
    shutil.copy(_testfile("MR_truncated.dcm"), tmp_path / "truncated_by_pydicom.dcm")
    whole = _testfile("MR_small.dcm").read_bytes()
    (tmp_path / "cut_in_pixels").write_bytes(whole[: len(whole) - 3000])
    (tmp_path / "notes").write_text("patient notes, not an image\n" * 20)
    (tmp_path / "meta.json").write_text('{"a": 1}')
    for name in ("rtstruct.dcm", "test-SR.dcm", "rtplan.dcm"):
        shutil.copy(_testfile(name), tmp_path / name)

    result = open_path(tmp_path)
    assert [s.files[0].name for s in result.series] == ["good"]
    reasons = _reasons(result)
    assert reasons["empty.dcm"] == "empty file (0 bytes)"
    assert reasons["truncated_by_pydicom.dcm"].startswith("truncated")
    assert reasons["cut_in_pixels"].startswith("truncated")
    assert reasons["notes"].startswith("not a DICOM file")
    assert reasons["meta.json"].startswith("not an image file")
    assert reasons["rtstruct.dcm"] == "no pixel data (RTSTRUCT)"
    assert reasons["test-SR.dcm"] == "no pixel data (SR)"
    assert reasons["rtplan.dcm"] == "no pixel data (RTPLAN)"
    assert load_series(result.series[0]).shape == (1, 128, 128)


def test_a_folder_of_mixed_series_gives_one_ref_per_series(tmp_path: Path) -> None:
    for name in ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "SC_rgb.dcm", "RG1_UNCI.dcm"):
        shutil.copy(_testfile(name), tmp_path / name)
    shutil.copy(_testfile("CT_small.dcm"), tmp_path / "CT_small_copy.dcm")
    result = open_path(tmp_path)
    assert sorted(s.modality for s in result.series) == ["CR", "CT", "MR", "MR", "OT"]
    assert _reasons(result) == {"CT_small_copy.dcm": "duplicate of CT_small.dcm (same SOPInstanceUID)"}
    for ref in result.series:
        assert load_series(ref).shape == ref.shape


def _rle_series(folder: Path, n: int) -> list[Path]:
    """n copies of MR_small_RLE.dcm as one series, 1 mm apart."""
    template = pydicom.dcmread(_testfile("MR_small_RLE.dcm"))
    uid = pydicom.uid.generate_uid()
    paths = []
    for k in range(n):
        ds = copy.deepcopy(template)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        paths.append(folder / f"slice{k}.dcm")
        ds.save_as(paths[-1])
    return paths


def test_an_undecodable_compressed_frame_warns_and_the_series_loads(tmp_path: Path) -> None:
    paths = _rle_series(tmp_path, 3)
    bad = pydicom.dcmread(paths[1])
    bad.PixelData = encapsulate([b"\x01\x00\x00\x00" + b"\xee" * 60 + b"\x07" * 200])  # RLE header nonsense
    bad.save_as(paths[1])

    ref = open_path(tmp_path).series[0]
    assert ref.shape == (3, 64, 64)
    volume = load_series(ref)
    good = load_volume(_testfile("MR_small.dcm")).array[0]
    assert np.array_equal(volume.array[0], good) and np.array_equal(volume.array[2], good)
    assert np.all(volume.array[1] == good.min())  # filled with the minimum
    assert any("slice1.dcm" in w and "could not be decoded" in w for w in volume.info.warnings)
    with pytest.raises(CorruptFileError, match="slice1.dcm"):
        read_slice(ref, 1)


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_a_series_where_nothing_decodes_is_a_corrupt_file_error() -> None:
    ref = open_path(_testfile("emri_small_jpeg_2k_lossless_too_short.dcm")).series[0]
    with pytest.raises(CorruptFileError, match="no slice of the series could be decoded"):
        load_series(ref)


def test_a_missing_path_is_a_path_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(PathNotFoundError, match="no such file or folder") as info:
        open_path(tmp_path / "nowhere")
    assert info.value.path == tmp_path / "nowhere"


def test_a_folder_without_images_names_what_was_skipped(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "zero").write_bytes(b"")
    with pytest.raises(NoSeriesFoundError, match=r"readme\.txt: not an image file.*zero: empty file"):
        open_path(tmp_path)


def test_a_volume_too_large_is_refused_before_allocating(datasets_dir: Path) -> None:
    ref = open_path(datasets_dir / "ircadb-liver17" / "dicom").series[0]
    tracemalloc.start()
    try:
        with pytest.raises(VolumeTooLargeError, match=r"needs 60 MiB \(119×512×512 int16\)"):
            load_series(ref, max_bytes=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < ref.nbytes / 100  # nothing of the volume's size was allocated
