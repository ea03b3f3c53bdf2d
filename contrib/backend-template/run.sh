#!/bin/sh
# LocalAI starts a backend as: run.sh --addr HOST:PORT
#
# The interpreter: LOCALAI_BACKEND_PYTHON (LocalAI sets it to its own Python), else
# BACKEND_PYTHON, else python3. With ./deps (made by install.sh) the backend runs on the
# standard library plus deps/ only (python -S: no site-packages of the host), after checking
# that deps/ was built for this interpreter's ABI; without it, on the interpreter's own packages.
DIR=$(cd "$(dirname "$0")" && pwd)
PY=${LOCALAI_BACKEND_PYTHON:-${BACKEND_PYTHON:-python3}}
if [ -d "$DIR/deps" ]; then
    WANT=$(cat "$DIR/deps/ABI" 2>/dev/null)
    HAVE=$("$PY" -S -c 'import sysconfig; print(sysconfig.get_config_var("SOABI"))') || exit 1
    if [ "$WANT" != "$HAVE" ]; then
        echo "run.sh: deps/ was built for ${WANT:-an unknown Python (no deps/ABI)}, but $PY is $HAVE;" \
             "rebuild it with that Python: PYTHON=$PY ./install.sh" >&2
        exit 1
    fi
    export PYTHONPATH="$DIR/deps${PYTHONPATH:+:$PYTHONPATH}"
    exec "$PY" -S "$DIR/backend.py" "$@"
fi
exec "$PY" "$DIR/backend.py" "$@"
