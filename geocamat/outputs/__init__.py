"""Outputs a GIS user expects: COG rasters with palette and category names, QGIS styles, GeoPackages, reports."""
