"""Connected components: clean-up of masks, label volumes, and finding the largest lesion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from kdviewer.imaging.components import (
    fill_holes,
    label_volumes_ml,
    largest_component,
    largest_component_centroid,
    largest_lesion_slice,
    remove_small_components,
    voxel_volume_ml,
)


def test_largest_component_keeps_only_the_biggest_blob():
    m = np.zeros((10, 10), dtype=bool)
    m[1:3, 1:3] = True  # 4 voxels
    m[5:9, 5:9] = True  # 16 voxels
    out = largest_component(m)
    assert out.sum() == 16 and out[6, 6] and not out[1, 1]
    assert not largest_component(np.zeros((3, 3))).any()


def test_connectivity_decides_whether_diagonals_join():
    m = np.eye(4, dtype=bool)
    m[0, 3] = True
    assert largest_component(m, connectivity=1).sum() == 1
    assert largest_component(m, connectivity=2).sum() == 4


def test_fill_holes_in_3d_and_per_slice():
    m = np.zeros((3, 7, 7), dtype=bool)
    m[:, 1:6, 1:6] = True
    m[:, 3, 3] = False  # a tube through every slice: open in 3-D, closed in each slice
    assert not fill_holes(m)[1, 3, 3]
    assert fill_holes(m, per_slice=True)[:, 3, 3].all()
    ring = np.ones((5, 5), dtype=bool)
    ring[2, 2] = False
    assert fill_holes(ring).all()


def test_label_volumes_in_ml():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[:5] = 1  # 500 voxels
    labels[9, 9, 9] = 3
    vols = label_volumes_ml(labels, (0.5, 0.5, 2.0))  # 0.5 mm³ per voxel
    assert vols == {1: pytest.approx(0.25), 3: pytest.approx(0.0005)}
    assert voxel_volume_ml((1, 1, 1)) == 0.001
    with pytest.raises(ValueError):
        label_volumes_ml(labels.astype(float), (1, 1, 1))


def test_largest_lesion_slice_and_centroid():
    labels = np.zeros((6, 20, 20), dtype=np.uint8)
    labels[1, 2:4, 2:4] = 2  # small lesion
    labels[3:5, 10:16, 10:16] = 2
    labels[4, 10:18, 10:18] = 2  # the largest cross-section
    assert largest_lesion_slice(labels, 2) == 4
    assert largest_lesion_slice(labels, 2, axis=1) in range(10, 16)
    assert largest_lesion_slice(labels, 5) is None
    z, y, x = largest_component_centroid(labels, 2)
    assert 3 < z < 5 and 12 < y < 15 and 12 < x < 15
    assert largest_component_centroid(labels, 5) is None


def test_liver_mask_volume_is_plausible(datasets_dir):
    sitk = pytest.importorskip("SimpleITK")
    img = sitk.ReadImage(str(datasets_dir / "ircadb-liver17" / "liver_mask.nii.gz"))
    labels = sitk.GetArrayFromImage(img)
    mask = labels > 0
    vols = label_volumes_ml(mask.astype(np.uint8), img.GetSpacing())
    assert 800 < vols[1] < 3500  # an adult liver is roughly 1-2.5 litres
    box = mask[ndi.find_objects(mask.astype(np.uint8))[0]]
    assert largest_component(box).sum() > 0.95 * mask.sum()
    assert 0 <= largest_lesion_slice(mask, 1) < labels.shape[0]


def test_remove_small_components_in_2d_by_the_area_of_a_disc():
    m = np.zeros((20, 20), dtype=bool)
    m[2:5, 2:5] = True      # 9 px = 9 mm² at 1 mm
    m[10:16, 10:16] = True  # 36 mm²
    out = remove_small_components(m, 4.0)  # disc of 4 mm: 12.6 mm²
    assert out.dtype == bool and not out[2:5, 2:5].any() and out[10:16, 10:16].all() and out.sum() == 36
    assert remove_small_components(m, 3.0).sum() == 45  # disc of 3 mm: 7.1 mm² < 9 mm²
    # anisotropic pixels: 0.5 x 2 mm are 1 mm² each as well; 0.5 x 1 mm halve the areas
    assert remove_small_components(m, 3.0, (0.5, 2.0)).sum() == 45
    assert remove_small_components(m, 3.0, (0.5, 1.0)).sum() == 36  # 4.5 mm² < 7.1 mm²
    assert remove_small_components(m, 3.0, (2.0, 1.0, 7.0)).sum() == 45  # (x, y, z): z unused in 2-D
    for d in (0.0, -1.0):
        same = remove_small_components(m, d)
        assert np.array_equal(same, m) and same is not m


def test_remove_small_components_in_3d_by_the_volume_of_a_sphere():
    m = np.zeros((8, 12, 12), dtype=bool)
    m[1:3, 1:4, 1:4] = True  # 18 voxels (z, y, x)
    m[4:8, 6:12, 6:12] = True
    big = int(m[4:8, 6:12, 6:12].sum())
    # 1 mm voxels: 18 mm³; a sphere of 4 mm is 33.5 mm³, of 3 mm 14.1 mm³
    assert remove_small_components(m, 4.0).sum() == big
    assert remove_small_components(m, 3.0).sum() == big + 18
    # spacing (x, y, z) = (0.5, 0.5, 2): 0.5 mm³ voxels, the blob is 9 mm³ (sphere of 2.5 mm: 8.2 mm³)
    assert remove_small_components(m, 2.5, (0.5, 0.5, 2.0)).sum() == big + 18
    assert remove_small_components(m, 3.0, (0.5, 0.5, 2.0)).sum() == big
    # thick slices make the same voxels count for more
    assert remove_small_components(m, 4.0, (1.0, 1.0, 2.0)).sum() == big + 18  # 36 mm³ >= 33.5 mm³
    with pytest.raises(ValueError, match="3-D mask needs a spacing of 3 values"):
        remove_small_components(m, 3.0, (1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        remove_small_components(m, 3.0, (1.0, 0.0, 1.0))


def test_remove_small_components_follows_the_connectivity():
    m = np.zeros((10, 10), dtype=bool)
    m[[1, 2, 3, 4], [1, 2, 3, 4]] = True  # a diagonal: 4 single pixels, or one 4-px component
    assert not remove_small_components(m, 2.0).any()                # disc of 2 mm: 3.1 px
    assert remove_small_components(m, 2.0, connectivity=2).sum() == 4
    assert not remove_small_components(np.zeros((4, 4)), 2.0).any()
