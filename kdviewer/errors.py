"""The root of kdviewer's typed errors: anything a user can cause derives from `KdviewerError`.

The CLI prints such an error as one line and exits non-zero; the gui shows it in a dialog.
"""


class KdviewerError(Exception):
    """A problem the user can act on (bad file, bad recipe, bad model); its message is one line."""
