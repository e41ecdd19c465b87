"""The ASGI app of ``scaling serve`` (Starlette): ``GET /`` the page, ``GET /v1/info`` the adapter's
modality, task and limits, ``POST /v1/generate`` a caption or answer, ``GET /healthz``.

A request is read and checked (:mod:`.inputs`), its media decoded in a worker thread (undecodable media:
422), then queued for the :class:`~.batcher.Batcher`, which runs concurrent requests with the same
generation settings as one batched ``generate``. Every error is JSON ``{"error": message}`` with a 4xx
status for the client's mistakes (5xx only for a failure of the model itself); the server keeps serving.
"""

from __future__ import annotations

import logging
from typing import Any

from scaling.serve.batcher import Batcher
from scaling.serve.inputs import HTTPProblem, Limits, read_upload
from scaling.serve.page import render_page

log = logging.getLogger("scaling.serve")


def create_app(predictor, *, max_batch_size: int = 8, max_wait_ms: float = 20.0, limits: Limits | None = None):
    """The Starlette app around a loaded :class:`scaling.evaluation.predict.Predictor`."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from scaling.config.base import ConfigError
    from scaling.data.decode import SampleError
    from scaling.evaluation.predict import raw_sample

    limits = limits or Limits()

    def run_batch(key, samples: list[dict]) -> list[str]:
        task, beams, new_tokens = key
        return predictor.generate(samples, task, beams, new_tokens)

    batcher = Batcher(run_batch, max_batch_size, max_wait_ms / 1000.0,
                      describe=lambda k: f"task={k[0]}, beams={k[1]}, max_new_tokens={k[2]}")

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    def problem(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    page = render_page(predictor.checkpoint, predictor.modality, predictor.task, predictor.default_beams,
                       predictor.default_new_tokens, limits.max_beams, limits.max_new_tokens)

    async def index(request):
        return HTMLResponse(page)

    async def info(request):
        return JSONResponse({
            "checkpoint": predictor.checkpoint, "modality": predictor.modality, "task": predictor.task,
            "num_beams": predictor.default_beams, "max_new_tokens": predictor.default_new_tokens,
            "max_upload_bytes": limits.max_bytes, "max_num_beams": limits.max_beams,
            "max_new_tokens_limit": limits.max_new_tokens, "max_batch_size": batcher.max_batch_size,
            "max_wait_ms": batcher.max_wait_s * 1000.0,
        })

    async def health(request):
        return JSONResponse({"ok": True, "generate_calls": batcher.calls})

    def prepare(upload) -> tuple[tuple, dict]:
        task = predictor.task_for(upload.question)
        sample = predictor.decode(raw_sample(upload.name, upload.key, upload.data, upload.question), task)
        beams = upload.num_beams or predictor.default_beams
        return (task, beams, predictor.max_new_tokens(upload.max_new_tokens, sample, task)), sample

    async def generate(request):
        try:
            upload = await read_upload(request, limits, predictor.modality)
            key, sample = await run_in_threadpool(prepare, upload)
        except HTTPProblem as err:
            return problem(err.status, err.message)
        except SampleError as err:
            return problem(422, f"the {predictor.modality} does not decode: {err.reason}")
        except ConfigError as err:
            return problem(400, str(err))
        try:
            text, size = await batcher.submit(key, sample)
        except Exception as err:  # noqa: BLE001 - the model failed: say so, keep serving
            return problem(500, f"generation failed: {type(err).__name__}: {err}")
        out: dict[str, Any] = {"prediction": text, "task": key[0], "num_beams": key[1], "max_new_tokens": key[2],
                               "batch_size": size}
        return JSONResponse(out)

    routes = [Route("/", index), Route("/v1/info", info), Route("/healthz", health),
              Route("/v1/generate", generate, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.batcher = batcher
    return app
