"""``tilewise:stacsearch``: a STAC catalogue search whose output is a list of layers (one VRT per item).

The search runs in the engine process (``stacsearch`` operation, :mod:`tilewise.core.operations.stac.search`),
like every other Tilewise algorithm: QGIS only passes the parameters and turns the
footprints the engine wrote (GeoJSON) into the vector output.
"""

import os

from qgis.core import (QgsCoordinateReferenceSystem, QgsFeature, QgsFeatureSink, QgsProcessingException,
                       QgsProcessingOutputMultipleLayers, QgsProcessingOutputNumber, QgsProcessingParameterBoolean,
                       QgsProcessingParameterEnum, QgsProcessingParameterExtent, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterString, QgsVectorLayer)

from ..core.vocabulary import STAC_GROUPINGS, STAC_RESAMPLINGS
from .base import TilewiseAlgorithm, tr
from .parameters import with_decimals
from .compat import NUMBER_DOUBLE, NUMBER_INTEGER, TYPE_VECTOR_POLYGON, WKB_MULTIPOLYGON, advanced

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
GROUPINGS = list(STAC_GROUPINGS)

HELP = (
    "<p>Searches a <b>STAC catalogue</b> and gives one layer per item (a VRT whose bands are the assets you "
    "ask for, read remotely through HTTP range requests: nothing is downloaded whole), in date order, so that "
    "<i>Temporal composite</i>, <i>Spectral index</i> or any QGIS algorithm can take them in a model.</p>"
    "<p><b>Catalogue</b>: a STAC API (e.g. Earth Search <code>{earth_search}</code>, the Planetary Computer "
    "<code>https://planetarycomputer.microsoft.com/api/stac/v1</code> with the signing hook below), or the "
    "path or URL of a static catalogue or an ItemCollection JSON.</p>"
    "<p><b>Collections</b>: comma-separated ids. <b>Extent</b>: in any CRS, sent as an EPSG:4326 bbox. "
    "<b>Datetime</b>: an RFC 3339 interval such as <code>2024-05-01/2024-09-30</code> (dates are whole days; "
    "<code>..</code> leaves an end open).</p>"
    "<p><b>Maximum cloud cover</b> (<code>eo:cloud_cover</code>): sent with the query or filter extension "
    "when the API declares one, and applied to the results in any case, so every server gives the same "
    "answer. <b>Limit</b>: at most this many items (0: all); the pages of the search are followed.</p>"
    "<p><b>Assets</b>: comma-separated, in band order: keys (<code>B04,B08,SCL</code>) or common names "
    "(<code>red,nir,scl</code>), which work across catalogues. The layer is on the grid of the first asset; "
    "assets at another resolution (SCL at 20&nbsp;m) are resampled inside the VRT (nearest by default, which "
    "keeps classes intact). With <code>red,nir,scl</code>, mask a composite with <i>Mask band</i> 3 and "
    "<i>Mask values</i> <code>0,1,3,8,9,10</code>.</p>"
    "<p><b>Group by solar day</b>: the items of one day and orbit (neighbouring tiles of one pass) make one "
    "layer. <b>Harmonize</b>: Sentinel-2 processing baseline 04.00 and later (from January 2022) adds 1000 to "
    "the reflectances; this subtracts it where the item says so, so older and newer scenes compare. Otherwise "
    "the items' <code>raster:bands</code> scale and offset are written into the VRT.</p>"
    "<p><b>Authentication</b>: extra HTTP headers (one <code>Name: value</code> a line) go to the catalogue's "
    "own host only (scheme, host and port), and to the <b>hosts for the headers</b> you name (e.g. the asset "
    "host); a redirect to another host never gets them. Or a URL signing hook <code>module:function</code> "
    "run in the engine's Python, e.g. <code>planetary_computer:sign</code> (<code>pip install "
    "planetary-computer</code> there). Signed URLs expire: search again for a later run.</p>"
    "<p>A catalogue read over HTTP may only point at remote addresses (http, https, s3, gs, az...): items "
    "whose assets are local files are left out with a warning. A catalogue may stay silent "
    "<code>TILEWISE_HTTP_TIMEOUT</code> seconds (default 30), a request take twice that, retries "
    "included.</p>"
    "<p>Files in the output folder that no Tilewise search wrote are not replaced unless <b>Replace files</b> "
    "is checked. The output folder also gets <code>search.json</code> (the search and the item ids, also "
    "recorded by a composite of these layers), <code>items.json</code> (the items, itself a valid catalogue "
    "to search) and the footprints (one polygon per item with id, datetime, cloud cover and asset hrefs).</p>"
)


class StacSearch(TilewiseAlgorithm):
    OPERATION = "stacsearch"
    UNIT = "asset headers"
    STAC_API = "STAC_API"
    COLLECTIONS = "COLLECTIONS"
    EXTENT = "EXTENT"
    DATETIME = "DATETIME"
    MAX_CLOUD = "MAX_CLOUD"
    LIMIT = "LIMIT"
    ASSETS = "ASSETS"
    GROUP_BY = "GROUP_BY"
    HARMONIZE = "HARMONIZE"
    RESAMPLING = "RESAMPLING"
    HEADERS = "HEADERS"
    HEADER_HOSTS = "HEADER_HOSTS"
    SIGN = "SIGN"
    OVERWRITE = "OVERWRITE"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_LAYERS = "OUTPUT_LAYERS"
    OUTPUT_FOOTPRINTS = "OUTPUT_FOOTPRINTS"
    ITEM_COUNT = "ITEM_COUNT"

    def name(self):
        return "stacsearch"

    def displayName(self):
        return tr("STAC search (catalogue items as layers)")

    def group(self):
        return tr("Catalogues")

    def groupId(self):
        return "catalogues"

    def shortHelpString(self):
        return tr(HELP.format(earth_search=EARTH_SEARCH))

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterString(
            self.STAC_API, tr("STAC API URL, or path / URL of a static catalogue or ItemCollection"),
            defaultValue=EARTH_SEARCH))
        self.addParameter(QgsProcessingParameterString(
            self.COLLECTIONS, tr("Collections (comma-separated)"), defaultValue="sentinel-2-l2a", optional=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, tr("Extent"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.DATETIME, tr("Datetime (RFC 3339 interval, e.g. 2024-05-01/2024-09-30)"), optional=True))
        self.addParameter(with_decimals(QgsProcessingParameterNumber(
            self.MAX_CLOUD, tr("Maximum cloud cover (%)"), NUMBER_DOUBLE, optional=True, minValue=0.0,
            maxValue=100.0), 1))
        self.addParameter(QgsProcessingParameterNumber(
            self.LIMIT, tr("Maximum number of items (0: all)"), NUMBER_INTEGER, defaultValue=100, minValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.ASSETS, tr("Assets, in band order (keys or common names, e.g. red,nir,scl or B04,B08,SCL)"),
            defaultValue="red,nir,scl"))
        self.addParameter(QgsProcessingParameterEnum(
            self.GROUP_BY, tr("Layers"), [tr("One per item"), tr("One per solar day and orbit (a pass, mosaicked)")],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.HARMONIZE, tr("Harmonize Sentinel-2 baseline 04.00+ (subtract the 1000 DN offset)"),
            defaultValue=False))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            self.RESAMPLING, tr("Resampling of assets at another resolution than the first"), list(STAC_RESAMPLINGS),
            defaultValue=0)))
        self.addParameter(advanced(QgsProcessingParameterString(
            self.HEADERS, tr("Extra HTTP headers (one 'Name: value' a line), for the catalogue's host"),
            multiLine=True, optional=True)))
        self.addParameter(advanced(QgsProcessingParameterString(
            self.HEADER_HOSTS,
            tr("More hosts for the headers (comma-separated host or host:port, e.g. the asset host)"),
            optional=True)))
        self.addParameter(advanced(QgsProcessingParameterString(
            self.SIGN, tr("URL signing hook, module:function (e.g. planetary_computer:sign)"), optional=True)))
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            self.OVERWRITE, tr("Replace files in the output folder that Tilewise did not write"), defaultValue=False,
            optional=True)))  # optional: saved models without it stay valid
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, tr("Output folder (one VRT per item)")))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT_FOOTPRINTS, tr("Footprints"), TYPE_VECTOR_POLYGON, optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.OUTPUT_LAYERS, tr("Layers, in date order")))
        self.addOutput(QgsProcessingOutputNumber(self.ITEM_COUNT, tr("Number of items")))

    def engine_params(self, parameters, context, feedback):
        params = self.search_params(parameters, context)
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        if not folder:  # e.g. inside a model where only OUTPUT_LAYERS feeds the next step
            folder = self.parameterDefinition(self.OUTPUT_FOLDER).generateTemporaryDestination()
        params["output"] = os.path.abspath(folder)
        params["overwrite"] = self.parameterAsBoolean(parameters, self.OVERWRITE, context)
        feedback.pushInfo(tr(f"Searching {params['url']}"))
        return params

    def results(self, report, params, parameters, context, feedback):
        layers = report["layers"]
        feedback.pushInfo(tr(f"{len(report['items'])} items in {len(layers)} layers ({report['seconds']:.2f} s): "
                             f"{report['output']}"))
        results = {self.OUTPUT_FOLDER: report["output"], self.OUTPUT_LAYERS: layers,
                   self.ITEM_COUNT: len(report["items"])}
        footprints = self.write_footprints(report["footprints"], parameters, context)
        if footprints is not None:
            results[self.OUTPUT_FOOTPRINTS] = footprints
        return results

    def search_params(self, parameters, context):
        assets = self.parameterAsString(parameters, self.ASSETS, context)
        cloud = parameters.get(self.MAX_CLOUD)
        return {
            "url": (self.parameterAsString(parameters, self.STAC_API, context) or "").strip(),
            "assets": assets,
            "collections": self.parameterAsString(parameters, self.COLLECTIONS, context) or None,
            "bbox": self.bbox(parameters, context),
            "datetime": self.parameterAsString(parameters, self.DATETIME, context) or None,
            "max_cloud": self.parameterAsDouble(parameters, self.MAX_CLOUD, context) if cloud not in (None, "")
            else None,
            "limit": self.parameterAsInt(parameters, self.LIMIT, context),
            "group_by": GROUPINGS[self.parameterAsEnum(parameters, self.GROUP_BY, context)],
            "harmonize": self.parameterAsBoolean(parameters, self.HARMONIZE, context),
            "resampling": STAC_RESAMPLINGS[self.parameterAsEnum(parameters, self.RESAMPLING, context)],
            "headers": self.parameterAsString(parameters, self.HEADERS, context) or None,
            "header_hosts": self.parameterAsString(parameters, self.HEADER_HOSTS, context) or None,
            "sign": (self.parameterAsString(parameters, self.SIGN, context) or "").strip() or None,
        }

    def bbox(self, parameters, context):
        """The extent as west, south, east, north in EPSG:4326 (QGIS transforms it from its CRS)."""
        if not parameters.get(self.EXTENT):
            return None
        rect = self.parameterAsExtent(parameters, self.EXTENT, context, QgsCoordinateReferenceSystem("EPSG:4326"))
        if rect.isNull() or rect.isEmpty():
            return None
        return [max(-180.0, rect.xMinimum()), max(-90.0, rect.yMinimum()), min(180.0, rect.xMaximum()),
                min(90.0, rect.yMaximum())]

    def write_footprints(self, path, parameters, context):
        """Copy the engine's GeoJSON footprints into the footprints output (any format QGIS writes)."""
        source = QgsVectorLayer(path, "footprints", "ogr")
        if not source.isValid():
            raise QgsProcessingException(tr(f"The footprints the search wrote cannot be read: {path}"))
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT_FOOTPRINTS, context, source.fields(),
                                             WKB_MULTIPOLYGON, QgsCoordinateReferenceSystem("EPSG:4326"))
        if sink is None:
            return None
        for feature in source.getFeatures():
            geometry = feature.geometry()
            geometry.convertToMultiType()
            out = QgsFeature(source.fields())
            out.setGeometry(geometry)
            out.setAttributes(feature.attributes())
            sink.addFeature(out, QgsFeatureSink.FastInsert)
        return dest_id
