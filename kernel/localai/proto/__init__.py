"""Generated gRPC stubs for protos/backend.proto (do not edit; see tests/test_protos.py)."""
