"""Reorienting to LPS: the same patient shows the same way whatever the file's axis order."""

from __future__ import annotations

import numpy as np
import pytest

from kdviewer.imaging.orient import (
    VIEW_LABELS,
    axis_code,
    display_slice,
    display_spacing,
    obliquity_deg,
    orientation_labels,
    reorient_to_lps,
)

IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1)
RAS = (-1, 0, 0, 0, -1, 0, 0, 0, 1)
DICOM_ROTATED = (0, 1, 0, -1, 0, 0, 0, 0, 1)  # pacsman-synthetic DICOM series
NIFTI_ROTATED = (0, -1, 0, -1, 0, 0, 0, 0, 1)  # the same series through dcm2niix


def _world_lps(shape_kji, origin, spacing_xyz, direction):
    """LPS mm of every voxel centre, (z, y, x, 3)."""
    k, j, i = np.indices(shape_kji)
    idx_xyz = np.stack([i, j, k], axis=-1).astype(float)
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    return np.asarray(origin) + (idx_xyz * spacing_xyz) @ d.T


def _oblique(deg):
    t = np.radians(deg)
    return (np.cos(t), -np.sin(t), 0, np.sin(t), np.cos(t), 0, 0, 0, 1)


@pytest.mark.parametrize(
    ("direction", "code"),
    [(IDENTITY, "LPS"), (RAS, "RAS"), (DICOM_ROTATED, "ALS"), (NIFTI_ROTATED, "ARS"), (_oblique(20), "LPS")],
)
def test_reoriented_axes_grow_toward_left_posterior_superior(direction, code):
    shape = (4, 5, 6)
    spacing = (0.5, 0.8, 2.0)
    origin = (10.0, -20.0, 30.0)
    world = _world_lps(shape, origin, spacing, direction)
    world_lps, t = reorient_to_lps(world, direction)
    assert axis_code(direction) == code
    assert np.shares_memory(world_lps, world)
    # along each numpy axis of the LPS array, the matching LPS coordinate must increase
    assert np.all(np.diff(world_lps[..., 0], axis=2) > 0)  # i -> Left
    assert np.all(np.diff(world_lps[..., 1], axis=1) > 0)  # j -> Posterior
    assert np.all(np.diff(world_lps[..., 2], axis=0) > 0)  # k -> Superior
    # spacing follows the axes: one step along i, j, k moves spacing_lps x, y, z mm
    sx, sy, sz = t.spacing_lps(spacing)
    origin_mm = world_lps[0, 0, 0]
    for step, expected in ((world_lps[0, 0, 1], sx), (world_lps[0, 1, 0], sy), (world_lps[1, 0, 0], sz)):
        assert np.linalg.norm(step - origin_mm) == pytest.approx(expected)
    # the geometry of the LPS array reproduces the same world positions
    o2, s2, d2 = t.geometry_lps(origin, spacing, direction)
    np.testing.assert_allclose(_world_lps(world_lps.shape[:3], o2, s2, d2), world_lps, atol=1e-9)


def test_indices_map_both_ways():
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    vol_lps, t = reorient_to_lps(vol, DICOM_ROTATED)
    src = np.array([[0, 0, 0], [3, 4, 5], [1, 2, 3]])
    lps = t.to_lps_index(src)
    for s, p in zip(src, lps, strict=True):
        assert vol[tuple(s)] == vol_lps[tuple(p)]
    np.testing.assert_array_equal(t.from_lps_index(lps), src)
    np.testing.assert_array_equal(t.invert(vol_lps), vol)
    assert t.out_shape == vol_lps.shape


def test_colour_channels_stay_last():
    rgb = np.zeros((2, 3, 4, 3), dtype=np.uint8)
    out, t = reorient_to_lps(rgb, RAS)
    assert out.shape == (2, 3, 4, 3)
    assert t.perm == (0, 1, 2) and t.flips == (False, True, True)


def test_identity_is_untouched():
    vol = np.random.default_rng(0).normal(size=(3, 4, 5))
    out, t = reorient_to_lps(vol, IDENTITY)
    assert t.is_identity
    np.testing.assert_array_equal(out, vol)


def test_obliquity_and_labels():
    assert obliquity_deg(IDENTITY) == 0.0
    assert obliquity_deg(DICOM_ROTATED) == 0.0
    assert obliquity_deg(_oblique(20)) == pytest.approx(20.0)
    assert orientation_labels(IDENTITY) == {"x": ("R", "L"), "y": ("A", "P"), "z": ("I", "S")}
    assert orientation_labels(DICOM_ROTATED)["x"] == ("P", "A")
    assert orientation_labels(_oblique(30))["x"] == ("RA", "LP")


def test_display_slices_follow_radiological_convention():
    vol = np.zeros((3, 4, 5))
    assert display_slice(vol, "axial", 0).shape == (4, 5)
    assert display_slice(vol, "coronal", 0).shape == (3, 5)
    assert display_slice(vol, "sagittal", 0).shape == (3, 4)
    vol[2, 0, 0] = 1  # most superior slice
    assert display_slice(vol, "coronal", 0)[0, 0] == 1  # superior is the top row
    assert display_spacing((0.5, 0.6, 2.0), "sagittal") == (2.0, 0.6)
    assert VIEW_LABELS["axial"]["left"] == "R"
    with pytest.raises(ValueError):
        display_slice(vol, "oblique", 0)


def test_pacsman_dicom_and_nifti_reorient_to_the_same_array(datasets_dir):
    sitk = pytest.importorskip("SimpleITK")
    base = datasets_dir / "pacsman-synthetic"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(base / "dicomseries")))
    dcm = reader.Execute()
    nii = sitk.ReadImage(str(base / "bids" / "sub-000001_T1w.nii.gz"))
    out = []
    for img in (dcm, nii):
        assert axis_code(img.GetDirection()) == sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
            img.GetDirection())
        arr_lps, t = reorient_to_lps(sitk.GetArrayFromImage(img), img.GetDirection())
        origin, _, direction = t.geometry_lps(img.GetOrigin(), img.GetSpacing(), img.GetDirection())
        np.testing.assert_allclose(direction, IDENTITY, atol=1e-6)
        out.append((arr_lps, origin))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_allclose(out[0][1], out[1][1], atol=1e-3)
