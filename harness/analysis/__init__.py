"""The torch-free analysis half: result files, metrics, statistics, tables, validation, the
metric audit, figures, the paper artifact, the claim table and the snapshot tolerance.

Nothing here imports torch or transformers (``tests/test_layout.py`` checks it), so the
paper's artifact can be analysed, and ``pytest claims --source paper`` run, without them.
"""
