"""What a run reports while it trains: TensorBoard scalars, a JSON-lines log, a progress bar, throughput.

Written on rank 0 only:

* ``RUN/tensorboard/``: ``train/loss``, ``train/lr``, ``train/grad_norm``, ``train/loss_scale``
  (fp16), ``train/skipped_steps``, ``perf/samples_per_s``, ``perf/tokens_per_s``, ``perf/mfu``,
  ``perf/peak_mem_gb``, ``val/loss``, evaluation metrics, and generated samples as text;
* ``RUN/train_log.jsonl``: the same scalars, one JSON object per logged step;
* a tqdm bar with ETA (stderr).

A resumed run's log reads as one run: rows past the step it resumed from (steps a hard failure made it recompute)
move from ``train_log.jsonl`` to ``train_log.dropped.jsonl``, and TensorBoard hides events from the next step on
(``purge_step``). Logging never ends a training: a failing write (a full disk, ``OSError``) is reported once and
that output is switched off; the checkpoints and ``train_summary.json`` are still attempted.

Model-FLOPs utilisation counts the FLOPs the model needs, not those the hardware runs (no
recomputation): the frozen LLM costs ``2·N_llm`` per token forward and ``2·N_llm`` per token for the
input-gradient backward (its weights get no gradient), the frozen encoder ``2·N_enc`` per encoder
token forward only; ``N`` excludes embedding tables. The interface's own FLOPs are negligible and
left out. Peak throughput is the dense bf16/fp16 tensor-core figure of the GPU (:data:`PEAK_TFLOPS`).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

import torch

from scaling.common.io import atomic_write

# dense half-precision tensor-core peak per GPU, TFLOP/s (first matching substring of the device name wins)
PEAK_TFLOPS: list[tuple[str, str, float]] = [
    ("H200", "H200", 989.0),
    ("H100 PCIe", "H100", 756.0),
    ("H100 NVL", "H100", 835.0),
    ("H100", "H100", 989.0),
    ("GH200", "H100", 989.0),
    ("A100", "A100", 312.0),
    ("A800", "A100", 312.0),
    ("V100", "V100", 125.0),
    ("L40S", "L40S", 362.0),
    ("L40", "L40", 181.0),
    ("A6000", "A6000", 155.0),
    ("A10", "A10", 125.0),
    ("L4", "L4", 121.0),
    ("RTX 4090", "RTX4090", 165.0),
    ("T4", "T4", 65.0),
]


def gpu_type(device: torch.device) -> tuple[str, float | None]:
    """("V100" | "A100" | "H100" | ... | "cpu", peak TFLOP/s or None)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    for needle, label, peak in PEAK_TFLOPS:
        if needle in name:
            return label, peak
    return name, None


class FlopCounter:
    """Model FLOPs of the tokens seen since the last :meth:`take` (see the module docstring)."""

    def __init__(self, model):
        self.n_llm = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for layer in model.layout.layers for p in layer.parameters())
        self.n_enc, self.enc_tokens = 0, 0
        if model.extractor is not None:
            enc = model.extractor.encoder
            self.n_enc = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in enc.parameters())
            info = enc.info
            frames = info.num_frames if info.per_frame and info.num_frames else 1
            self.enc_tokens = info.n_special * frames + info.n_patches
        self.llm_tokens = 0
        self.handle = model.layout.base.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, _module, args, kwargs):
        if not torch.is_grad_enabled():
            return None
        embeds = kwargs.get("inputs_embeds")
        if embeds is None and args:
            embeds = args[0]
        if embeds is not None and embeds.dim() >= 2:
            self.llm_tokens += embeds.shape[0] * embeds.shape[1]
        return None

    def take(self, n_media: int) -> tuple[float, int]:
        """(model FLOPs, LLM tokens) since the last call; ``n_media`` = samples that went through the encoder."""
        tokens, self.llm_tokens = self.llm_tokens, 0
        flops = 4.0 * self.n_llm * tokens + 2.0 * self.n_enc * self.enc_tokens * n_media
        return flops, tokens

    def close(self) -> None:
        self.handle.remove()


def peak_memory_gb(device: torch.device, reset: bool = True) -> float:
    if device.type == "cuda":
        value = torch.cuda.max_memory_allocated(device) / 2**30
        if reset:
            torch.cuda.reset_peak_memory_stats(device)
        return value
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # host peak (kB on Linux)
    return rss_kb / 2**20


class Monitor:
    """TensorBoard + JSON lines + tqdm on rank 0; every method is a no-op elsewhere."""

    def __init__(self, output_dir: str, is_main: bool, total_steps: int, start_step: int = 0,
                 tensorboard: bool = True, progress_bar: bool = True):
        self.is_main = is_main
        self.writer = None
        self.bar = None
        self.log_path = os.path.join(output_dir, "train_log.jsonl")
        self.failed: set[str] = set()  # outputs switched off after a write failed (each reported once)
        if not is_main:
            return
        try:
            dropped = drop_rows_after(self.log_path, start_step)
        except OSError as err:
            dropped = 0
            self._failed("train_log.jsonl", err)
        if dropped:
            print(f"note: {dropped} row(s) of train_log.jsonl past step {start_step} (steps recomputed after resuming "
                  f"from it) moved to {os.path.basename(dropped_path(self.log_path))}", file=sys.stderr)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # events of the steps after the checkpoint (recomputed now) are hidden: the resumed run logs from
                # start_step + 1, the checkpoint's own step (its train row, its evaluation) stays
                self.writer = SummaryWriter(os.path.join(output_dir, "tensorboard"),
                                            purge_step=start_step + 1 if start_step else None)
            except ImportError:
                print("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)", file=sys.stderr)
            except OSError as err:
                self._failed("TensorBoard", err)
        if progress_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True,
                            file=sys.stderr, mininterval=1.0)

    def _failed(self, what: str, err: BaseException) -> None:
        """Report a failing output once (then it is off); training goes on."""
        if what in self.failed:
            return
        self.failed.add(what)
        full = " (the disk is full)" if getattr(err, "errno", None) == 28 else ""
        print(f"WARNING: writing {what} failed{full}: {type(err).__name__}: {err}. Training goes on without it; "
              f"checkpoints are still written (free space, or point train.output_dir at a disk with room)",
              file=sys.stderr, flush=True)
        if what == "TensorBoard":
            writer, self.writer = self.writer, None
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - the writer is already broken
                    pass

    def scalars(self, step: int, values: dict[str, float | None], prefix: str = "train") -> None:
        if not self.is_main:
            return
        clean = {k: float(v) for k, v in values.items() if v is not None}
        if self.writer is not None:
            try:
                for key, value in clean.items():
                    tag = key if "/" in key else f"{prefix}/{key}"
                    self.writer.add_scalar(tag, value, step)
            except OSError as err:
                self._failed("TensorBoard", err)
        if "train_log.jsonl" not in self.failed:
            try:
                with open(self.log_path, "a") as fh:
                    fh.write(json.dumps({"step": step, "kind": prefix, "time": time.time(), **clean}) + "\n")
            except OSError as err:
                self._failed("train_log.jsonl", err)
        if self.bar is not None and prefix == "train" and "loss" in clean:
            self.bar.set_postfix(loss=f"{clean['loss']:.4f}", lr=f"{clean.get('lr', 0):.2e}", refresh=False)

    def text(self, step: int, tag: str, text: str) -> None:
        if self.is_main and self.writer is not None:
            try:
                self.writer.add_text(tag, text, step)
            except OSError as err:
                self._failed("TensorBoard", err)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def write(self, message: str) -> None:
        """A log line on rank 0 that does not break the progress bar."""
        if not self.is_main:
            return
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            try:
                self.writer.flush()
                self.writer.close()
            except OSError as err:
                self._failed("TensorBoard", err)


def dropped_path(log_path: str) -> str:
    return log_path[: -len(".jsonl")] + ".dropped.jsonl" if log_path.endswith(".jsonl") else log_path + ".dropped"


def drop_rows_after(log_path: str, step: int) -> int:
    """Move the rows of ``log_path`` whose step is past ``step`` (recomputed by a run resumed from it) to
    ``<log>.dropped.jsonl`` (appended: kept for inspection) and rewrite the log atomically. Returns how many moved."""
    if not os.path.isfile(log_path):
        return 0
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    keep, drop = [], []
    for line in lines:
        if not line.strip():
            continue
        try:
            row_step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            row_step = None  # a line cut by a crash: not part of the run's log
            drop.append(line)
            continue
        (drop if isinstance(row_step, (int, float)) and row_step > step else keep).append(line)
    if not drop:
        return 0
    with open(dropped_path(log_path), "a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in drop))
    with atomic_write(log_path, encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in keep))
    return len(drop)


def summarize(values: dict[str, Any]) -> str:
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " | ".join(parts)


def read_log(output_dir: str, kind: str = "train") -> list[dict]:
    """Rows of ``train_log.jsonl`` of one kind (``train`` or ``eval``)."""
    path = os.path.join(output_dir, "train_log.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [r for r in rows if r.get("kind") == kind]
