#!/bin/sh
# Create a self-contained venv next to run.sh (run this before packaging the image).
# BACKEND_PYTHON picks the interpreter the venv is made from (default python3).
set -eu
DIR=$(cd "$(dirname "$0")" && pwd)
"${BACKEND_PYTHON:-python3}" -m venv "$DIR/venv"
"$DIR/venv/bin/python" -m pip install --upgrade pip
"$DIR/venv/bin/python" -m pip install -r "$DIR/requirements.txt"
