"""Model configs (LocalAI-style YAML) and prompt templates."""
