"""The Tilewise icon (resources/icon.svg), for the provider and every algorithm."""

import os

from qgis.PyQt.QtGui import QIcon

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icon.svg")


def icon() -> QIcon:
    return QIcon(ICON)
