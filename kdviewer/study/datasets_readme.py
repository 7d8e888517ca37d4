"""What a data set's README says about its licence, for model cards."""

from __future__ import annotations

import re
from pathlib import Path

_LICENCE = re.compile(
    r"CC[ -]BY(?:[- ](?:NC|ND|SA))*[ -]\d\.\d|CC0|Creative Commons Attribution(?:[- ][A-Za-z]+)*? \d\.\d",
)
# A line that only reports or denies a licence ("is not CC0", "mirrors list it as CC0", "its derivative
# is CC BY 4.0") does not state this data set's licence.
_HEDGES = re.compile(r"\bnot\b|\bno licen|reported|mirrors|derivative|unverified", re.IGNORECASE)


def find_readme(path: Path) -> Path | None:
    """README.md of the data set: in the folder (or the file's folder) or up to two folders above."""
    folder = path.parent if path.is_file() else path
    for d in (folder, folder.parent, folder.parent.parent):
        for name in ("README.md", "README.txt", "README"):
            if (d / name).is_file():
                return d / name
    return None


def dataset_name(path: Path) -> str:
    """The data set's name: the folder of its README, else the folder (or the file's folder) itself."""
    readme = find_readme(path)
    return readme.parent.name if readme is not None else (path.parent if path.is_file() else path).name


def readme_licence(path: Path) -> str:
    """The licence a README states plainly (e.g. "CC BY 4.0"), else "see README"."""
    readme = find_readme(path)
    if readme is None:
        return "unknown (no README)"
    text = readme.read_text(encoding="utf-8", errors="replace")
    section = re.split(r"^#+ .*licen[cs]e.*$", text, maxsplit=1, flags=re.IGNORECASE | re.MULTILINE)
    body = section[1] if len(section) == 2 else text
    for line in body.splitlines():
        if line.startswith("#"):
            break
        if _HEDGES.search(line):
            continue
        hit = _LICENCE.search(line)
        if hit:
            found = hit.group(0)
            return re.sub(r"Creative Commons Attribution (\d\.\d)", r"CC BY \1", found).replace("-BY", " BY")
    return f"see {readme.parent.name}/{readme.name}"
