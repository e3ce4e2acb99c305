"""Compiled kernels (numba): pure functions over arrays. Importing this package does not import numba."""
