"""PyQt5 (Krita 5) and PyQt6 (Krita 6) behind one set of names.

The rest of the plugin imports Qt only from here. PyQt6 scopes every enum (``Qt.Orientation.Horizontal``)
and drops ``exec_``; this module resolves the names once so the plugin code reads the same on both.
"""

from __future__ import annotations

import sys

# The PyQt that Krita itself loaded (its ``krita`` module imports it) is the only safe one: a system
# Python may have both, and PyQt6 in Krita 5 would load a second Qt. Without a hint (outside Krita),
# PyQt6 first: Krita 6 refuses PyQt5 imports.
if "PyQt5" in sys.modules and "PyQt6" not in sys.modules:
    from PyQt5 import QtCore, QtGui, QtWidgets

    QT6 = False
else:
    try:
        from PyQt6 import QtCore, QtGui, QtWidgets

        QT6 = True
    except ImportError:
        from PyQt5 import QtCore, QtGui, QtWidgets

        QT6 = False

Qt = QtCore.Qt
QTimer = QtCore.QTimer
QPoint = QtCore.QPoint
QRect = QtCore.QRect
QSize = QtCore.QSize
QSocketNotifier = QtCore.QSocketNotifier
QImage = QtGui.QImage
QPixmap = QtGui.QPixmap
QGuiApplication = QtGui.QGuiApplication

QApplication = QtWidgets.QApplication
QCheckBox = QtWidgets.QCheckBox
QComboBox = QtWidgets.QComboBox
QDialog = QtWidgets.QDialog
QDialogButtonBox = QtWidgets.QDialogButtonBox
QDoubleSpinBox = QtWidgets.QDoubleSpinBox
QFrame = QtWidgets.QFrame
QFormLayout = QtWidgets.QFormLayout
QGridLayout = QtWidgets.QGridLayout
QGroupBox = QtWidgets.QGroupBox
QHBoxLayout = QtWidgets.QHBoxLayout
QLabel = QtWidgets.QLabel
QLineEdit = QtWidgets.QLineEdit
QMessageBox = QtWidgets.QMessageBox
QProgressBar = QtWidgets.QProgressBar
QPushButton = QtWidgets.QPushButton
QScrollArea = QtWidgets.QScrollArea
QSizePolicy = QtWidgets.QSizePolicy
QSlider = QtWidgets.QSlider
QSpinBox = QtWidgets.QSpinBox
QToolButton = QtWidgets.QToolButton
QWidget = QtWidgets.QWidget
QVBoxLayout = QtWidgets.QVBoxLayout


def _enum(owner, scoped: str, name: str):
    """``owner.scoped.name`` on PyQt6, ``owner.name`` on PyQt5."""
    return getattr(getattr(owner, scoped), name) if QT6 else getattr(owner, name)


HORIZONTAL = _enum(Qt, "Orientation", "Horizontal")
KEEP_ASPECT = _enum(Qt, "AspectRatioMode", "KeepAspectRatio")
SMOOTH = _enum(Qt, "TransformationMode", "SmoothTransformation")
ALIGN_CENTER = _enum(Qt, "AlignmentFlag", "AlignCenter")
PLAIN_TEXT = _enum(Qt, "TextFormat", "PlainText")
TEXT_SELECTABLE = _enum(Qt, "TextInteractionFlag", "TextSelectableByMouse")
FORMAT_RGBA8888 = _enum(QImage, "Format", "Format_RGBA8888")
NOTIFIER_READ = _enum(QSocketNotifier, "Type", "Read")
BUTTON_OK = _enum(QDialogButtonBox, "StandardButton", "Ok")
BUTTON_CANCEL = _enum(QDialogButtonBox, "StandardButton", "Cancel")
ROLE_ACCEPT = _enum(QDialogButtonBox, "ButtonRole", "AcceptRole")
ROLE_REJECT = _enum(QDialogButtonBox, "ButtonRole", "RejectRole")
ROLE_RESET = _enum(QDialogButtonBox, "ButtonRole", "ResetRole")
ROLE_ACTION = _enum(QDialogButtonBox, "ButtonRole", "ActionRole")
MSG_YES = _enum(QMessageBox, "StandardButton", "Yes")
MSG_NO = _enum(QMessageBox, "StandardButton", "No")
ALIGN_TOP_LEFT = _enum(Qt, "AlignmentFlag", "AlignTop") | _enum(Qt, "AlignmentFlag", "AlignLeft")
ELIDE_RIGHT = _enum(Qt, "TextElideMode", "ElideRight")
SCROLLBAR_OFF = _enum(Qt, "ScrollBarPolicy", "ScrollBarAlwaysOff")
SCROLLBAR_AS_NEEDED = _enum(Qt, "ScrollBarPolicy", "ScrollBarAsNeeded")
NO_FRAME = _enum(QFrame, "Shape", "NoFrame")
SIZE_FIXED = _enum(QSizePolicy, "Policy", "Fixed")
SIZE_IGNORED = _enum(QSizePolicy, "Policy", "Ignored")
SIZE_PREFERRED = _enum(QSizePolicy, "Policy", "Preferred")
SIZE_EXPANDING = _enum(QSizePolicy, "Policy", "Expanding")
COMBO_MIN_LENGTH = _enum(QComboBox, "SizeAdjustPolicy", "AdjustToMinimumContentsLengthWithIcon")


def exec_dialog(dialog) -> int:
    """Run a modal dialog (a nested event loop: timers and socket notifiers keep firing)."""
    return dialog.exec() if QT6 else dialog.exec_()
