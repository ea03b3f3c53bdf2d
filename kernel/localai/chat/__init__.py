"""The chat core: the one place a chat turn lives, below every dialect.

- :mod:`.request`: the neutral request (what every dialect's wire is parsed into);
- :mod:`.options`: neutral request + model config -> ``PredictOptions`` (the tools plan, once);
- :mod:`.models`: model resolution shared by every inference route (``name:latest`` included);
- :mod:`.capabilities`: which request features a model can honour;
- :mod:`.turn`: start a turn (hooks, model, admission, ``PredictStream``) and its one reply loop;
- :mod:`.upstream`: the same events from an HTTP (OpenAI-compatible) upstream;
- :mod:`.calls`: the other backend calls dialects share (embeddings fan-out, tokenizing).

Nothing here imports a dialect or a route module; functions get the app state passed in.
"""
