"""``scaling serve``: a web page and a JSON API for a trained adapter.

    scaling serve --checkpoint RUN [--host 127.0.0.1 --port 7860] [--max-batch-size 8 --max-wait-ms 20]

Open http://127.0.0.1:7860/ to upload an image (or audio, or video: the adapter's modality) and optionally
ask a question; scripts POST the same to /v1/generate (multipart field ``file``, or JSON with base64
``media``; ``question``, ``num_beams``, ``max_new_tokens`` optional) and get ``{"prediction": ...}``.
Concurrent requests with the same settings run as one batched ``generate`` (up to --max-batch-size,
collected for at most --max-wait-ms); each call is logged on stderr. It binds to loopback unless --host says
otherwise, refuses uploads over --max-upload-mb, and runs no code from the checkpoint
(``--trust-remote-code`` only by flag). Needs the ``[serve]`` extra (Starlette, uvicorn, python-multipart).
"""

from __future__ import annotations

import argparse
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub) -> None:
    p = sub.add_parser("serve", help="a web page and JSON API that caption / answer questions with a trained adapter",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a run directory, a checkpoint directory, or an adapter .safetensors")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    p.add_argument("--max-batch-size", type=int, default=8, help="requests per generate call at most (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=20.0,
                   help="how long a request waits for others to share its generate call (default 20 ms)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted request body (default 10 MiB)")
    p.add_argument("--max-num-beams", type=int, default=8, help="largest num_beams a request may ask for (default 8)")
    p.add_argument("--max-new-tokens-limit", type=int, default=256, help="largest max_new_tokens a request may ask for")
    p.add_argument("--llm", help="the LLM directory, if it moved since training")
    p.add_argument("--encoder", help="the encoder directory, if it moved since training")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the backbones' own Python code (auto_map); never taken from the checkpoint's stored config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (e.g. eval.num_beams=3)")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging
    import socket

    from scaling.config.base import ConfigError

    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise ConfigError(f"scaling serve needs the [serve] extra ({err.name} is missing): pip install -e '.[serve]'") from None
    problems = []
    if args.max_batch_size < 1:
        problems.append(f"--max-batch-size must be >= 1, got {args.max_batch_size}")
    if args.max_wait_ms < 0:
        problems.append(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    if args.max_upload_mb <= 0:
        problems.append(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    if problems:
        raise ConfigError("; ".join(problems))

    from scaling.evaluation.predict import Predictor
    from scaling.serve.app import create_app
    from scaling.serve.inputs import Limits

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.host not in LOOPBACK:
        print(f"warning: --host {args.host} makes the model reachable from other machines, with no authentication",
              file=sys.stderr)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot bind {args.host}:{args.port} ({err.strerror}): pick another --port") from None
    print(f"loading {args.checkpoint} ...", file=sys.stderr, flush=True)
    predictor = Predictor(args.checkpoint, llm=args.llm, encoder=args.encoder, overrides=args.overrides,
                          trust_remote_code=args.trust_remote_code)
    limits = Limits(int(args.max_upload_mb * 2**20), args.max_num_beams, args.max_new_tokens_limit)
    app = create_app(predictor, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, limits=limits)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {args.checkpoint} ({predictor.modality}, trained for {predictor.task}) on http://{shown}:{port}/ "
          f"· API: POST http://{shown}:{port}/v1/generate · batches of up to {args.max_batch_size}, "
          f"{args.max_wait_ms:g} ms wait · Ctrl-C stops", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=True))
    server.run(sockets=[sock])
    return 0
