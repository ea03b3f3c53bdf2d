"""Client dialects on the kernel's one chat core, each a built-in plugin registering its routes
through ``localai_register_routes``: Anthropic Messages (:mod:`.anthropic`), Ollama's API
(:mod:`.ollama`) and OpenAI Responses (:mod:`.responses`); :mod:`.core` is what they share."""
