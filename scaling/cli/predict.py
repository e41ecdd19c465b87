"""`scaling predict`: a caption or an answer for image, audio or video files, from a trained checkpoint.

Files go through the same decoding and preprocessing as evaluation shards (no augmentation).
"""

from __future__ import annotations

import json
import os
import sys

from scaling.config.base import ConfigError
from scaling.evaluation.predict import EXT_KEYS  # noqa: F401 - the supported file types, re-exported


def register(sub) -> None:
    p = sub.add_parser("predict", help="caption or answer a question about image/audio/video files")
    p.add_argument("--checkpoint", required=True, help="a run directory, a checkpoint directory, or an adapter .safetensors")
    p.add_argument("files", nargs="+", metavar="FILE_OR_KEY=VALUE",
                   help="media files (jpg/png, wav/flac, mp4...), then any config overrides (e.g. data.image_size=336)")
    p.add_argument("--question", help="ask a question (VQA) instead of captioning")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--num-beams", type=int, default=None)
    p.add_argument("--llm", help="the LLM directory, if it moved since training")
    p.add_argument("--encoder", help="the encoder directory, if it moved since training")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the backbones' own Python code (auto_map); never taken from the checkpoint's stored config")
    p.set_defaults(func=run)


def split_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """(files, overrides): a ``section.key=value`` argument that names no existing file is an override
    (argparse cannot tell a positional file list from a positional override list)."""
    files, overrides = [], []
    for arg in args:
        key = arg.split("=", 1)[0]
        is_override = "=" in arg and "." in key and "/" not in key and key.replace(".", "").replace("_", "").isalnum()
        (overrides if is_override and not os.path.exists(arg) else files).append(arg)
    return files, overrides


def run(args) -> int:
    from scaling.data.decode import SampleError
    from scaling.evaluation.predict import Predictor, file_sample

    files, overrides = split_overrides(args.files)
    if not files:
        raise ConfigError("no media file given: scaling predict --checkpoint RUN FILE [FILE ...] [KEY=VALUE ...]")
    trained_task = _trained_task(args.checkpoint)
    if args.question:
        overrides.append("data.task=vqa")
        if trained_task == "caption":
            print(f"warning: this adapter was trained for {trained_task!r}, not question answering: --question "
                  f"gives it a prompt it never saw, so expect an empty or off-topic answer (drop --question to get "
                  f"a {trained_task})", file=sys.stderr)
    predictor = Predictor(args.checkpoint, llm=args.llm, encoder=args.encoder, overrides=overrides,
                          trust_remote_code=args.trust_remote_code)
    if predictor.task != "caption" and not args.question:
        raise ConfigError(f"this checkpoint was trained for {predictor.task!r}: pass --question \"...\"")
    task = predictor.task_for(args.question)
    samples = []
    for path in files:
        try:
            samples.append(predictor.decode(file_sample(path, args.question), task))
        except SampleError as err:
            raise ConfigError(f"{path}: {err.reason}") from None
    texts = predictor.generate(samples, task, args.num_beams, args.max_new_tokens)
    for path, out in zip(files, texts):
        if not out.strip():
            print(f"warning: {path}: the generation is empty (the model emitted its end token or a stop string first"
                  + ("; the question does not match the task the adapter was trained for" if args.question and
                     trained_task == "caption" else "") + ")", file=sys.stderr)
        print(json.dumps({"file": path, "prediction": out}) if args.json else f"{path}: {out}")
    return 0


def _trained_task(checkpoint: str) -> str | None:
    """The ``data.task`` the adapter was trained on (None when its metadata cannot say)."""
    from scaling.training.checkpoint import read_adapter_meta, resolve_adapter_path

    try:
        return ((read_adapter_meta(resolve_adapter_path(checkpoint)).get("config") or {}).get("data") or {}).get("task")
    except Exception:  # noqa: BLE001 - load_adapter reports an unreadable adapter with its own message
        return None
