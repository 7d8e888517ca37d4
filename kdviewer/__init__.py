"""kdviewer: a desktop viewer for CT, MRI and X-ray that runs small distilled models on the CPU."""

__version__ = "0.1.0"
