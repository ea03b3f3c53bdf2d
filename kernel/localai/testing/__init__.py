"""Test helpers for LocalAI backends: a deterministic echo backend (``python -m localai.testing.echo_backend``)."""
