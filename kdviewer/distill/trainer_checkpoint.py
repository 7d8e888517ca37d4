"""Checkpoints and run folders: atomic writes, RNG states, safe loading, the code revision.

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
`torch.load(..., weights_only=True)`: a checkpoint from someone else cannot run code.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdviewer.errors import KdviewerError


class CheckpointError(KdviewerError):
    """A checkpoint that is missing or cannot be read; the message names the file."""


def save_checkpoint(payload: dict[str, Any], path: Path) -> Path:
    """Write a checkpoint to a temporary file, then rename it over `path` (never half written)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` (on the CPU); raises `CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise CheckpointError(f"{path}: cannot read the checkpoint: {exc}") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(f"{path}: not a kdviewer checkpoint (no 'model' entry)")
    return payload


def rng_state() -> dict[str, Any]:
    """The torch, numpy and python RNG states, as plain lists and tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": list(_to_lists(random.getstate())),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_revision() -> str:
    """`git rev-parse HEAD` of the kdviewer source, "+dirty" when the package has uncommitted changes.

    Outside a git checkout (an installed copy, an exported snapshot) the env var KDVIEWER_REVISION is used
    when set, else "unknown".
    """
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=False)
        if out.returncode != 0 or not out.stdout.strip():
            return os.environ.get("KDVIEWER_REVISION", "unknown")
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(here.parent)], cwd=here,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("KDVIEWER_REVISION", "unknown")
    return out.stdout.strip() + ("+dirty" if dirty else "")
