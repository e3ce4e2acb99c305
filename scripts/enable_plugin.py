"""Enable the Tilewise plugin in a QGIS profile's settings file (QGIS and qgis_process read it)."""

import sys

from qgis.PyQt.QtCore import QSettings


def enable(ini_path: str) -> None:
    ini = getattr(QSettings, "IniFormat", None) or QSettings.Format.IniFormat  # Qt5 / Qt6
    settings = QSettings(ini_path, ini)
    settings.setValue("PythonPlugins/tilewise", True)
    settings.sync()
    no_error = getattr(QSettings, "NoError", None) or QSettings.Status.NoError
    if settings.status() != no_error:
        sys.exit(f"could not write {ini_path}")


if __name__ == "__main__":
    enable(sys.argv[1])
