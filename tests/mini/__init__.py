"""Tests of the embedded mini pair (harness.mini)."""
