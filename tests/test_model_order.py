"""The AI panel lists the likeliest models first: a fundus photograph gets the vessel models at the top, not
the brain classifiers that also accept picture files (modality OT)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_gui_ai_panel import CHEST_XRAY, FUNDUS, PACSMAN_MR

from kdviewer.gui.ai_logic import fit_rank, model_entries
from kdviewer.runtime import scan_models
from kdviewer.study import load_volume


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The shipped models only (an empty user folder)."""
    scan = scan_models(user_dir=tmp_path_factory.mktemp("empty-home") / "models")
    assert {"retina-vessels-student", "brain-tumor-mri-student", "pneumonia-cxr-student"} <= {m.id for m in scan.models}
    return scan


def fitting_ids(scan, path: Path) -> list[str]:
    volume = load_volume(path)
    return [e.id for e in model_entries(scan, volume) if e.fits]


def test_a_colour_photograph_lists_the_models_made_for_photographs_first(zoo):
    volume = load_volume(FUNDUS)
    assert volume.is_color and volume.info.modality == "OT"
    ids = fitting_ids(zoo, FUNDUS)
    # the grey-image classifiers (brain MR, breast US, chest X-ray) accept picture files too, so they are listed,
    # but after the vessel models; the student before its teacher
    assert ids[:2] == ["retina-vessels-student", "retina-vessels-teacher"]
    assert "brain-tumor-mri-student" in ids[2:] and "pneumonia-cxr-student" in ids[2:]


def test_a_grey_picture_lists_the_photograph_models_last(zoo):
    volume = load_volume(CHEST_XRAY)
    assert not volume.is_color and volume.info.modality == "OT"
    ids = fitting_ids(zoo, CHEST_XRAY)
    assert ids[-2:] == ["retina-vessels-student", "retina-vessels-teacher"]
    roles = [next(m for m in zoo.models if m.id == i).card.role for i in ids[:-2]]
    first_teacher = roles.index("teacher")  # among the grey-image models, every student before any teacher
    assert "teacher" not in roles[:first_teacher] and set(roles[first_teacher:]) == {"teacher"}


def test_the_series_own_modality_comes_first(zoo):
    ids = fitting_ids(zoo, PACSMAN_MR)  # an MR series: only models that list MR (or no modality) fit
    assert ids[:3] == ["brain-tumor-mri-student", "brain-tumor-mri-student-int8", "brain-tumor-mri-teacher"]
    brain = next(m for m in zoo.models if m.id == "brain-tumor-mri-student")
    retina = next(m for m in zoo.models if m.id == "retina-vessels-student")
    mr = load_volume(PACSMAN_MR)
    assert fit_rank(brain, mr)[0] == 0 and fit_rank(retina, mr)[0] == 2  # MR named; a photograph model for grey
    assert fit_rank(brain, None)[0] == fit_rank(retina, None)[0] == 1  # no series: no evidence either way

