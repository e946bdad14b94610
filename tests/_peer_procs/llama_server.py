"""Run llama.cpp's HTTP server (from the ``xllamacpp`` wheel) in this process, for the tests.

Started by ``tests/peers.py`` as a child process in its own session / process group::

    python llama_server.py --model M.gguf --alias smollm2-135m --ready-file R [options]

The server binds 127.0.0.1 on port 0 (the kernel picks a free port, so there is no
find-a-port-then-bind race). Once the model is loaded and the socket listens, this script
writes ``{"base_url": ..., "pid": ...}`` to ``--ready-file`` (atomically: write a temp file,
then rename), then serves until either

* it gets SIGTERM / SIGKILL (how the fixture stops it), or
* its stdin reaches EOF, which happens when the parent (pytest) dies without cleaning up,
  so a crashed test run does not leave a server behind.

Everything llama.cpp logs goes to stderr, which the parent points at a log file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="path to the .gguf file")
    ap.add_argument("--alias", required=True, help="model id the server reports and accepts")
    ap.add_argument("--ready-file", required=True, help="where to write the address once listening")
    ap.add_argument("--n-ctx", type=int, default=4096, help="total context, split over the slots")
    ap.add_argument("--n-parallel", type=int, default=2, help="parallel slots")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chat-template-file", default=None, help="jinja chat template replacing the model's")
    ap.add_argument("--embedding", action="store_true", help="also serve /v1/embeddings (mean pooling)")
    args = ap.parse_args()

    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = args.model
    p.model_alias = {args.alias}
    p.n_ctx = args.n_ctx
    p.n_parallel = args.n_parallel
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    # No busy-waiting between work items (llama.cpp's default polls at level 50): the suite runs several
    # of these servers beside its other processes on a small machine, where spinning threads take the
    # cores the others need.
    p.cpuparams.poll = p.cpuparams_batch.poll = 0
    p.hostnames = ["127.0.0.1"]
    p.port = 0  # ephemeral: the kernel picks it, listening_address reports it
    p.use_jinja = True
    if args.chat_template_file:
        p.chat_template = Path(args.chat_template_file).read_text(encoding="utf-8")
    if args.embedding:
        p.embedding = True
        p.pooling_type = 1  # LLAMA_POOLING_TYPE_MEAN: one vector per input
        # An embedding input must fit one physical batch (default 512 tokens: longer inputs
        # get a 500 "input is too large"); let it be as long as a slot's context instead.
        p.n_batch = p.n_ubatch = max(512, args.n_ctx // args.n_parallel)

    # Returns once the model is loaded and the socket listens; the server runs in
    # background threads for as long as this object (and this process) lives, so it is
    # kept in a local of this never-returning function.
    server = xlc.Server(p)
    base_url = str(server.listening_address).rstrip("/")

    ready = Path(args.ready_file)
    tmp = ready.with_name(ready.name + ".tmp")
    tmp.write_text(json.dumps({"base_url": base_url, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, ready)
    print(f"llama_server.py: listening on {base_url}", file=sys.stderr, flush=True)

    # Parent-death watchdog: block until stdin closes, then leave at once. os._exit skips
    # the server's destructor, which would otherwise wait for in-flight requests.
    try:
        while sys.stdin.buffer.read(65536):
            pass
    finally:
        print("llama_server.py: stdin closed, exiting", file=sys.stderr, flush=True)
        os._exit(0)


if __name__ == "__main__":
    main()
