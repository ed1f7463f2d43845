"""The embedded miniature model pair: task generator, tokenizer, training, evaluation.

See ``harness/mini/README.md`` (the model card).
"""
