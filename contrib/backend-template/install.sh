#!/bin/sh
# Bundle the dependencies (requirements.txt) into ./deps before packaging: plain files from
# `pip install --target`, no venv and no symlinks, so the artifact installs anywhere.
#
# run.sh starts backend.py with the Python that LocalAI runs on (LOCALAI_BACKEND_PYTHON), so
# build deps/ with the same Python version, OS and architecture as the LocalAI host: PYTHON
# picks the interpreter (default python3). deps/ABI records which one; run.sh checks it.
set -eu
DIR=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
rm -rf "$DIR/deps"
"$PY" -m pip install --disable-pip-version-check --target "$DIR/deps" -r "$DIR/requirements.txt"
"$PY" -c 'import sysconfig; print(sysconfig.get_config_var("SOABI"))' > "$DIR/deps/ABI"
echo "bundled requirements.txt into $DIR/deps for $(cat "$DIR/deps/ABI")"
