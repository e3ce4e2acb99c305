"""Names that moved between QGIS 3.22 and QGIS 3.36+/4 (Qt6), in one place.

The plugin spells QGIS enums only through these: the fully scoped name (``Qgis.LayerType.Raster``)
wherever this QGIS has it, which is the only spelling a Qt6 build (QGIS 4) keeps, and the 3.22 name
otherwise.
"""

from qgis.core import (Qgis, QgsMapLayer, QgsProcessing, QgsProcessingParameterDefinition, QgsProcessingParameterFile,
                       QgsProcessingParameterNumber, QgsWkbTypes)


def _pick(new_owner, new_name, old_owner, old_name):
    owner = getattr(Qgis, new_owner, None)
    if owner is not None and hasattr(owner, new_name):
        return getattr(owner, new_name)
    return getattr(old_owner, old_name)


LAYER_RASTER = _pick("LayerType", "Raster", QgsMapLayer, "RasterLayer")
TYPE_RASTER = _pick("ProcessingSourceType", "Raster", QgsProcessing, "TypeRaster")
TYPE_FILE = _pick("ProcessingSourceType", "File", QgsProcessing, "TypeFile")
FLAG_OPTIONAL = _pick("ProcessingParameterFlag", "Optional", QgsProcessingParameterDefinition, "FlagOptional")
TYPE_VECTOR_POLYGON = _pick("ProcessingSourceType", "VectorPolygon", QgsProcessing, "TypeVectorPolygon")
WKB_MULTIPOLYGON = _pick("WkbType", "MultiPolygon", QgsWkbTypes, "MultiPolygon")
FLAG_ADVANCED = _pick("ProcessingParameterFlag", "Advanced", QgsProcessingParameterDefinition, "FlagAdvanced")
NUMBER_INTEGER = _pick("ProcessingNumberParameterType", "Integer", QgsProcessingParameterNumber, "Integer")
NUMBER_DOUBLE = _pick("ProcessingNumberParameterType", "Double", QgsProcessingParameterNumber, "Double")
FILE_FOLDER = _pick("ProcessingFileParameterBehavior", "Folder", QgsProcessingParameterFile, "Folder")


def advanced(param):
    """Mark a parameter as advanced and return it."""
    param.setFlags(param.flags() | FLAG_ADVANCED)
    return param
