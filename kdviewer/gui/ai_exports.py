"""The AI panel's export buttons: ask for a path (QFileDialog, patchable in tests), write via `AiPanelLogic`.

Every failure becomes an error dialog with the file and the reason; the viewer keeps running.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QFileDialog, QWidget

from kdviewer.errors import KdviewerError
from kdviewer.gui.ai_logic import AiPanelLogic, AiRun

NIFTI_FILTER = "NIfTI (*.nii.gz *.nii);;NRRD (*.nrrd)"


class ResultExports:
    """Mask → NIfTI / DICOM SEG, enhanced → NIfTI / DICOM, classification → JSON.

    parent: the dialogs' parent; show_error(parent, title, message); report(text): a status line.
    Each method returns True when a file was written, False when the user cancelled or it failed.
    """

    def __init__(self, logic: AiPanelLogic, parent: QWidget, show_error: Callable[[QWidget, str, str], object],
                 report: Callable[[str], object]) -> None:
        self.logic, self.parent = logic, parent
        self.show_error, self.report = show_error, report

    def _save_path(self, title: str, name: str, filters: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self.parent, title, name, filters)
        return path

    def _write(self, what: str, write: Callable[[str], object], path: str) -> bool:
        if not path:
            return False
        try:
            write(path)
        except (KdviewerError, OSError, ValueError) as exc:
            self.show_error(self.parent.window(), f"Could not export the {what}", str(exc))
            return False
        self.report(f"Saved the {what} to {path}")
        return True

    @staticmethod
    def _name(run: AiRun | None, suffix: str) -> str:
        return f"{run.model.id if run is not None else 'result'}-{suffix}"

    def mask_nifti(self) -> bool:
        """Mask → NIfTI (file dialog)."""
        path = self._save_path("Export the mask as NIfTI", self._name(self.logic.segmentation, "mask.nii.gz"),
                               NIFTI_FILTER)
        return self._write("mask", self.logic.export_mask_nifti, path)

    def mask_dicom_seg(self) -> bool:
        """Mask → DICOM SEG referencing the source series (file dialog)."""
        path = self._save_path("Export the mask as DICOM SEG", self._name(self.logic.segmentation, "seg.dcm"),
                               "DICOM (*.dcm)")
        return self._write("DICOM SEG", self.logic.export_mask_dicom_seg, path)

    def enhanced_nifti(self) -> bool:
        """Enhanced series → NIfTI (file dialog)."""
        path = self._save_path("Export the enhanced series as NIfTI",
                               self._name(self.logic.enhancement, "enhanced.nii.gz"), NIFTI_FILTER)
        return self._write("enhanced series", self.logic.export_enhanced_nifti, path)

    def enhanced_dicom(self) -> bool:
        """Enhanced series → a new DICOM series in a folder (folder dialog)."""
        path = QFileDialog.getExistingDirectory(self.parent, "Export the enhanced series as DICOM (choose a folder)")
        return self._write("enhanced DICOM series", self.logic.export_enhanced_dicom, path)

    def classification_json(self) -> bool:
        """Classification → JSON (file dialog)."""
        path = self._save_path("Export the classification as JSON",
                               self._name(self.logic.classification, "classification.json"), "JSON (*.json)")
        return self._write("classification", self.logic.export_classification_json, path)
