"""llama.cpp's own HTTP server (xllamacpp's embedded one) for the benchmarks.

``python bench/xllamacpp_http.py GGUF --port PORT --parallel 4 --threads 2 --ctx 2048`` loads the
model, serves on 127.0.0.1:PORT (``GET /health``) until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import threading

import xllamacpp as xl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=2048, help="context per slot")
    args = parser.parse_args()
    params = xl.CommonParams()
    params.model.path = args.gguf
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx * args.parallel
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = args.threads
    params.verbosity = -1
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_threads_http = 4 * args.parallel  # enough HTTP threads that none waits for another
    server = xl.Server(params)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    del server


if __name__ == "__main__":
    main()
