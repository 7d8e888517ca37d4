"""JSON that strict parsers accept: NaN becomes null and ±infinity the strings "inf" / "-inf".

Python's `json` writes bare `NaN` / `Infinity`, which are not JSON. Metrics can be undefined (an AUC with
one class: NaN) or infinite (PSNR of identical images), so every `--json` output goes through here.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_json_value(value: Any) -> Any:
    """A copy of `value` (dicts, lists, tuples, numbers, numpy scalars) with non-finite floats replaced."""
    if isinstance(value, dict):
        return {str(k): finite_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json_value(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()  # numpy scalar
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return finite_json_value(value.tolist())  # numpy array
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """`json.dumps` of `finite_json_value(value)` with `allow_nan=False` (so nothing non-standard slips out)."""
    return json.dumps(finite_json_value(value), allow_nan=False, **kwargs)
