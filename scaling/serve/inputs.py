"""Read and check one ``POST /v1/generate`` request: multipart form or JSON with base64 media.

Every problem is an :class:`HTTPProblem` with a 4xx status and a message that says what to send instead:
an empty body (400), a field the API does not know or a missing ``file``/``media`` (400), bad numbers (400),
a body over the size limit (413, checked on ``Content-Length`` and while reading), a type that is not
multipart or JSON (415), a file that is no image/audio/video, or of another modality than the adapter's
(415). Media that does not decode (a truncated JPEG) is found later, by the decoder (422, in :mod:`.app`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

from scaling.evaluation.predict import EXT_KEYS, KEY_MODALITY, sniff

ISO_MEDIA = ("m4a", "m4v", "mov", "mp4")  # member keys of ISO base media files (an ``ftyp`` box first)

FORM_FIELDS = ("file", "question", "num_beams", "max_new_tokens")
JSON_FIELDS = ("media", "filename", "question", "num_beams", "max_new_tokens")
MAX_QUESTION_CHARS = 1000
USAGE = ("send multipart/form-data with a 'file' field (and optional 'question', 'num_beams', 'max_new_tokens'), or "
         "JSON {\"media\": \"<base64>\", \"question\": ..., \"num_beams\": ..., \"max_new_tokens\": ...}")


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class Upload:
    data: bytes
    key: str  # the shard member key the bytes decode as (jpg, png, wav, mp4, ...)
    name: str
    question: str | None
    num_beams: int | None
    max_new_tokens: int | None


@dataclasses.dataclass
class Limits:
    max_bytes: int = 10 * 2**20
    max_beams: int = 8
    max_new_tokens: int = 256


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


async def _discard(stream, size: int, cap: int) -> None:
    """Read and drop the rest of a refused body (up to ``cap`` bytes in all), so that the client, still sending,
    reads the 413 instead of a reset connection; a body past ``cap`` is cut off."""
    async for chunk in stream:
        size += len(chunk)
        if size > cap:
            return


async def read_body(request, limits: Limits) -> bytes:
    """The body, refused with 413 past ``limits.max_bytes`` (announced or read) and 400 when empty."""
    cap = max(8 * limits.max_bytes, 64 * 2**20)
    announced = request.headers.get("content-length")
    stream = request.stream()
    if announced and announced.isdigit() and int(announced) > limits.max_bytes:
        await _discard(stream, 0, cap)
        raise HTTPProblem(413, f"the request is {_mb(int(announced))}, over the upload limit of {_mb(limits.max_bytes)} "
                               "(scaling serve --max-upload-mb raises it)")
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limits.max_bytes:
            await _discard(stream, size, cap)
            raise HTTPProblem(413, f"the request is over the upload limit of {_mb(limits.max_bytes)} "
                                   "(scaling serve --max-upload-mb raises it)")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise HTTPProblem(400, f"empty request body: {USAGE}")
    return body


def _int_field(name: str, value: Any, upper: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not 1 <= number <= upper:
        raise HTTPProblem(400, f"{name} must be a whole number from 1 to {upper}, got {value!r}")
    return number


def _question(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise HTTPProblem(400, f"question must be a string, got {type(value).__name__}")
    value = value.strip()
    if len(value) > MAX_QUESTION_CHARS:
        raise HTTPProblem(400, f"the question is {len(value)} characters long; at most {MAX_QUESTION_CHARS}")
    return value or None


def _unknown(fields, allowed) -> None:
    unknown = [f for f in fields if f not in allowed]
    if unknown:
        raise HTTPProblem(400, f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                               f"the fields are {', '.join(allowed)}: {USAGE}")


async def parse_request(request, limits: Limits) -> tuple[bytes, str, str | None, Any, Any]:
    """(media bytes, file name, question, num_beams, max_new_tokens) of a multipart or JSON request."""
    body = await read_body(request, limits)
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "multipart/form-data":
        request._body = body  # Starlette's form parser reads the body we already hold
        try:
            form = await request.form(max_files=1, max_fields=len(FORM_FIELDS), max_part_size=limits.max_bytes)
        except Exception as err:  # noqa: BLE001 - python-multipart/Starlette raise several kinds
            raise HTTPProblem(400, f"cannot read the multipart form ({getattr(err, 'detail', err)}): {USAGE}") from None
        _unknown(list(form.keys()), FORM_FIELDS)
        upload = form.get("file")
        if upload is None:
            raise HTTPProblem(400, f"no 'file' field: {USAGE}")
        if isinstance(upload, str):
            raise HTTPProblem(400, "the 'file' field must be a file upload, not text")
        data = await upload.read()
        return data, upload.filename or "upload", form.get("question"), form.get("num_beams"), form.get("max_new_tokens")
    if ctype == "application/json":
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise HTTPProblem(400, f"the body is not valid JSON ({err}): {USAGE}") from None
        if not isinstance(payload, dict):
            raise HTTPProblem(400, f"the JSON body must be an object: {USAGE}")
        _unknown(list(payload), JSON_FIELDS)
        media = payload.get("media")
        if not isinstance(media, str) or not media:
            raise HTTPProblem(400, f"no 'media' field (base64 of the file): {USAGE}")
        if media.startswith("data:") and "," in media:
            media = media.split(",", 1)[1]  # a data: URI
        try:
            data = base64.b64decode(media, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPProblem(400, "'media' is not valid base64") from None
        name = payload.get("filename") or "upload"
        if not isinstance(name, str):
            raise HTTPProblem(400, "'filename' must be a string")
        return data, name, payload.get("question"), payload.get("num_beams"), payload.get("max_new_tokens")
    raise HTTPProblem(415, f"Content-Type {ctype or '(none)'!r} is not supported: {USAGE}")


def media_key(data: bytes, name: str, modality: str) -> str:
    """The member key of the upload (from its bytes, else its name), checked against the adapter's modality."""
    wanted = sorted(k for k, m in KEY_MODALITY.items() if m == modality)
    if not data:
        raise HTTPProblem(400, "the uploaded file is empty")
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    key, named = sniff(data), EXT_KEYS.get(ext)
    if key is None or (key == "mp4" and named in ISO_MEDIA):  # an MP4 brand that does not say audio or video
        key = named
    if key is None:
        raise HTTPProblem(415, f"{name!r} is not a recognised image, audio or video file; this adapter takes "
                               f"{modality} ({', '.join(wanted)})")
    if KEY_MODALITY[key] != modality:
        raise HTTPProblem(415, f"wrong modality: {name!r} is {KEY_MODALITY[key]} ({key}); this adapter takes "
                               f"{modality} ({', '.join(wanted)})")
    return key


async def read_upload(request, limits: Limits, modality: str) -> Upload:
    data, name, question, beams, tokens = await parse_request(request, limits)
    return Upload(data, media_key(data, name, modality), name, _question(question),
                  _int_field("num_beams", beams, limits.max_beams), _int_field("max_new_tokens", tokens, limits.max_new_tokens))
