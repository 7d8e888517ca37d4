"""The viewer (PySide6 + pyqtgraph): thin widgets over `viewer_state.ViewerState` and the study layer.

Qt-free pieces a test or a script can use alone: `viewer_state`, `planes`, `geometry`, `render`,
`overlay`, `measure`. Widgets: `main_window`, `slice_view`, `view_grid`, `series_browser`, `tags_panel`.
"""
