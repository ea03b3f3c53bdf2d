"""HTTP API blueprints: OpenAI routes, system routes."""
