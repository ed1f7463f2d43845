"""Tools beside the library: the benchmark (``python -m harness bench``)."""
