"""Enable the Tilewise plugin in a QGIS profile's settings file (QGIS and qgis_process read it)."""

import sys

from qgis.PyQt.QtCore import QSettings


def enable(ini_path: str) -> None:
    settings = QSettings(ini_path, QSettings.IniFormat)
    settings.setValue("PythonPlugins/tilewise", True)
    settings.sync()
    if settings.status() != QSettings.NoError:
        sys.exit(f"could not write {ini_path}")


if __name__ == "__main__":
    enable(sys.argv[1])
