"""Backend processes: specs, launching, gRPC clients and the model manager."""
