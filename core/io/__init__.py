"""Reading and writing files: rasters (windowed and warped reads, tiles, VRTs, COGs), output names, tables."""
