"""`--json` outputs are strict JSON: no bare NaN or Infinity."""

import json

import numpy as np

from kdviewer.strict_json import dumps_strict


def test_non_finite_values_become_standard_json():
    text = dumps_strict({"auc": float("nan"), "psnr": np.float32(np.inf), "m": np.array([1.0, -np.inf]),
                         "n": np.int64(3), "ok": 0.5})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"auc": None, "psnr": "inf", "m": [1.0, "-inf"], "n": 3, "ok": 0.5}
