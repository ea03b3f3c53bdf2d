#!/bin/sh
# LocalAI starts a backend as: run.sh --addr HOST:PORT
DIR=$(cd "$(dirname "$0")" && pwd)
if [ -x "$DIR/venv/bin/python" ]; then
    PY="$DIR/venv/bin/python"
else
    PY="${BACKEND_PYTHON:-python3}"
fi
exec "$PY" "$DIR/backend.py" "$@"
