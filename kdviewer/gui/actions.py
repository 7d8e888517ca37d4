"""The main window's menus, toolbar and overlay controls; each action calls a MainWindow method."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QSlider, QToolBar

from kdviewer.gui.shortcuts import ACTION_KEYS, PRESET_KEYS
from kdviewer.gui.view_box import MODES
from kdviewer.gui.viewer_state import LAYOUTS

if TYPE_CHECKING:
    from kdviewer.gui.main_window import MainWindow

LAYOUT_TITLES = {"1x3": "1 × 3", "2x2": "2 × 2", "single": "Single view"}


def _action(win: MainWindow, name: str, text: str, slot, checkable: bool = False) -> QAction:
    action = QAction(text, win)
    action.setObjectName(name)
    if name in ACTION_KEYS:
        action.setShortcut(QKeySequence(ACTION_KEYS[name]))
    action.setCheckable(checkable)
    action.triggered.connect(slot)
    win.addAction(action)  # shortcuts work even when the menu bar is hidden
    win.actions_by_name[name] = action
    return action


def build_menus(win: MainWindow) -> None:
    """File, View and Help menus."""
    file_menu = win.menuBar().addMenu("&File")
    file_menu.addAction(_action(win, "open_file", "Open file…", win.choose_file))
    file_menu.addAction(_action(win, "open_folder", "Open folder…", win.choose_folder))
    win.recent_menu = file_menu.addMenu("Recent files")
    file_menu.addAction(_action(win, "open_overlay", "Open overlay…", win.choose_overlay))
    file_menu.addSeparator()
    file_menu.addAction(_action(win, "export_view", "Export screenshot of the view…",
                                lambda: win.choose_screenshot("view")))
    file_menu.addAction(_action(win, "export_window", "Export screenshot of the window…",
                                lambda: win.choose_screenshot("window")))
    file_menu.addSeparator()
    file_menu.addAction(_action(win, "quit", "Quit", win.close))

    view_menu = win.menuBar().addMenu("&View")
    group = QActionGroup(win)
    for layout in LAYOUTS:
        action = _action(win, f"layout_{layout}", f"Layout {LAYOUT_TITLES[layout]}",
                         lambda _=False, lay=layout: win.set_layout(lay), checkable=True)
        group.addAction(action)
        view_menu.addAction(action)
    view_menu.addSeparator()
    view_menu.addAction(_action(win, "reset_view", "Reset zoom and pan", win.reset_views))
    view_menu.addAction(_action(win, "toggle_overlay", "Show overlay", win.toggle_overlay, checkable=True))
    presets_menu = view_menu.addMenu("Window preset")
    for name, key in PRESET_KEYS.items():
        action = _action(win, f"preset_{name}", name.capitalize(), lambda _=False, n=name: win.apply_preset(n))
        action.setShortcut(QKeySequence(key))
        presets_menu.addAction(action)
    win.docks_menu = view_menu.addMenu("Panels")
    research = win.research_dock.toggleViewAction()  # "Research panel": teacher vs student, distillation
    view_menu.addAction(research)
    win.actions_by_name["toggle_research"] = research

    help_menu = win.menuBar().addMenu("&Help")
    help_menu.addAction(_action(win, "help", "Shortcuts…", win.show_help))


def build_toolbar(win: MainWindow) -> QToolBar:
    """Open, layout, window preset, mouse mode and overlay opacity."""
    bar = QToolBar("Tools", win)
    bar.setObjectName("tools")
    bar.addAction(win.actions_by_name["open_file"])
    bar.addAction(win.actions_by_name["open_folder"])
    bar.addSeparator()
    win.layout_combo = QComboBox(bar)
    for layout in LAYOUTS:
        win.layout_combo.addItem(LAYOUT_TITLES[layout], layout)
    win.layout_combo.activated.connect(lambda i: win.set_layout(win.layout_combo.itemData(i)))
    bar.addWidget(QLabel(" Layout ", bar))
    bar.addWidget(win.layout_combo)
    win.preset_combo = QComboBox(bar)
    win.preset_combo.setMinimumWidth(150)
    win.preset_combo.activated.connect(lambda i: win.apply_preset(win.preset_combo.itemData(i)))
    bar.addWidget(QLabel(" Window ", bar))
    bar.addWidget(win.preset_combo)
    bar.addSeparator()
    modes = QActionGroup(win)
    for mode in MODES:
        action = _action(win, f"mode_{mode}", mode.capitalize(), lambda _=False, m=mode: win.set_mode(m),
                         checkable=True)
        action.setToolTip(f"Left mouse: {mode} ({ACTION_KEYS[f'mode_{mode}']})")
        modes.addAction(action)
        bar.addAction(action)
    win.actions_by_name["mode_crosshair"].setChecked(True)
    bar.addSeparator()
    win.overlay_check = QCheckBox("Overlay", bar)
    win.overlay_check.setEnabled(False)
    win.overlay_check.toggled.connect(win.state.set_overlay_visible)
    win.opacity_slider = QSlider(Qt.Orientation.Horizontal, bar)
    win.opacity_slider.setRange(0, 100)
    win.opacity_slider.setValue(round(win.state.overlay_opacity * 100))
    win.opacity_slider.setMaximumWidth(120)
    win.opacity_slider.setToolTip("Overlay opacity")
    win.opacity_slider.setEnabled(False)
    win.opacity_slider.valueChanged.connect(lambda v: win.state.set_overlay_opacity(v / 100))
    bar.addWidget(win.overlay_check)
    bar.addWidget(win.opacity_slider)
    win.addToolBar(bar)
    return bar
