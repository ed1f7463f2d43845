"""The runner: a protocol's grid of conditions turned into result files, with its caches
(activations, translators, result files) and its command line."""
