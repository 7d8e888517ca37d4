"""Classic image maths on plain arrays (numpy, scipy, scikit-image only; nothing else of kdviewer).

Import the module you need; the package imports nothing itself, so `window` and `orient` stay
light for the viewer while `resample`, `metrics` and `components` pull in scikit-image.

- `window`: CT presets, DICOM linear windowing to uint8, automatic windows, "C,W" parsing.
- `orient`: LPS-aligned display of any volume by axis swaps and flips; orientation letters.
- `resample`: exact-size resizing and resampling to a voxel spacing (images and labels).
- `normalize`: min-max, z-score and window normalisation to float32.
- `metrics`: Dice, Jaccard, HD95, PSNR, SSIM, ROC AUC and classification metrics.
- `components`: largest component, hole filling, label volumes in ml, largest lesion.
- `degrade`, `preprocess`: simulated degradations and the model-input pipeline.
"""
