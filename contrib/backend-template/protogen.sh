#!/bin/sh
# Regenerate backend_pb2.py / backend_pb2_grpc.py next to this script from LocalAI's backend.proto.
# PROTO overrides the proto path; PYTHON picks the interpreter (it needs grpcio-tools).
set -eu
DIR=$(cd "$(dirname "$0")" && pwd)
PROTO=${PROTO:-$DIR/../../protos/backend.proto}
PY=${PYTHON:-python3}
PROTO_DIR=$(cd "$(dirname "$PROTO")" && pwd)
cd "$DIR"
"$PY" -m grpc_tools.protoc -I"$PROTO_DIR" --python_out=. --grpc_python_out=. "$(basename "$PROTO")"
echo "generated $DIR/backend_pb2.py and $DIR/backend_pb2_grpc.py from $PROTO_DIR/$(basename "$PROTO")"
