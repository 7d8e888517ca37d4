"""`kdviewer.imaging.preprocess`: colour to grey by luminance or by the green channel, and CLAHE."""

from __future__ import annotations

import numpy as np
import pytest

from kdviewer.imaging.preprocess import clahe, optional_steps, preprocess_image, to_channels


def _rgb(h: int = 64, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)


def test_grey_is_luminance_by_default_and_the_green_channel_when_asked():
    img = _rgb()
    luma = to_channels(img, 1)
    green = to_channels(img, 1, grey="green")
    assert luma.shape == green.shape == (1, 64, 64)
    np.testing.assert_allclose(luma[0], img.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]), rtol=1e-6)
    np.testing.assert_array_equal(green[0], img[..., 1].astype(np.float32))
    # three channels keep the colour whatever `grey` says; a grey image is itself
    np.testing.assert_array_equal(to_channels(img, 3, grey="green"), np.moveaxis(img, -1, 0).astype(np.float32))
    np.testing.assert_array_equal(to_channels(img[..., 0], 1, grey="green")[0], img[..., 0].astype(np.float32))
    with pytest.raises(ValueError, match="grey mode"):
        to_channels(img, 1, grey="red")


def test_clahe_raises_the_contrast_of_a_faint_line_in_a_dark_region():
    """A faint dark line on a dim, noisy left half beside a bright right half: min-max scaling leaves the line's
    contrast at ~4 % of the range; CLAHE equalises each tile locally and makes it several times larger (more
    so with a higher clip limit)."""
    x = np.full((128, 128), 40.0, dtype=np.float32)
    x[:, 64:] = 200.0
    x += np.random.default_rng(1).normal(0, 2.0, x.shape).astype(np.float32)
    x[60:63, 8:56] -= 6.0   # the line, in the dim half
    plain = (x - x.min()) / (x.max() - x.min())
    eq = clahe(x[None], 0.05)[0]
    assert eq.dtype == np.float32 and eq.shape == x.shape and 0 <= eq.min() and eq.max() <= 1

    def contrast(img: np.ndarray) -> float:
        return float(img[20:40, 8:56].mean() - img[60:63, 8:56].mean())

    assert contrast(eq) > 3 * contrast(plain) > 0
    assert contrast(eq) > contrast(clahe(x[None], 0.01)[0]) > contrast(plain)
    np.testing.assert_array_equal(clahe(np.zeros((1, 16, 16), np.float32), 0.01), 0.0)   # a constant channel
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="clip limit"):
            clahe(x[None], bad)


def test_preprocess_image_runs_grey_clahe_resize_normalise_in_that_order():
    img = _rgb(96, 80)
    pre = {"normalize": "zscore", "channels": 1, "grey": "green", "clahe": 0.02}
    got = preprocess_image(img, pre, (48, 40))
    from kdviewer.imaging.normalize import zscore
    from kdviewer.imaging.preprocess import resize_channels

    want = zscore(resize_channels(clahe(img[..., 1][None].astype(np.float32), 0.02), (48, 40)))
    np.testing.assert_array_equal(got, want)
    # an older card without the keys is unchanged: luminance, no equalisation
    old = {"normalize": "zscore", "channels": 1}
    np.testing.assert_array_equal(preprocess_image(img, old, (48, 40)),
                                  zscore(resize_channels(to_channels(img, 1), (48, 40))))


def test_optional_steps_keep_only_what_differs_from_the_defaults_typed_as_a_card_writes_them():
    # an older card (no keys), explicit defaults and None all mean "not set": nothing for a card to carry
    assert optional_steps({}) == {}
    assert optional_steps({"grey": "luma", "clahe": 0, "normalize": "zscore"}) == {}
    assert optional_steps({"grey": None, "clahe": None}) == {}
    # set steps come back typed (a clip read from TOML or JSON as a string or int is a float)
    assert optional_steps({"grey": "green", "clahe": "0.01"}) == {"grey": "green", "clahe": 0.01}
    assert optional_steps({"clahe": 1}) == {"clahe": 1.0}
