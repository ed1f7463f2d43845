"""The model half: loading models and resolving blocks, capturing activations, fitting
translators (linear and causal), injection hooks, batched generation and the CPU fast path."""
