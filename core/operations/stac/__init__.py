"""STAC catalogues as input: the search (:mod:`.search`), its HTTP client, assets, VRTs and record."""
