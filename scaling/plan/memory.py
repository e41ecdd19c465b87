"""Per-GPU memory of one training setting, part by part (bytes), from a :class:`~scaling.plan.profile.Profile`.

Parts (the table ``scaling plan`` prints):

- ``frozen weights``: the frozen LLM + encoder in the 16-bit (or fp32) compute dtype; ZeRO-3 partitions them over
  the ranks and gathers a working set (DeepSpeed's ``4 x largest layer``); ZeRO-3 with offload keeps only that set;
- ``trainable states``: the interface's parameters, gradients, fp32 master copies and AdamW moments with
  DeepSpeed's own accounting (``estimate_zero2_model_states_mem_needs`` / ``estimate_zero3_...``: 2 + 18/N bytes per
  parameter for ZeRO-1/2, 18/N for ZeRO-3, 2 or 0 with offload); without DeepSpeed (one process / DDP) fp32
  parameters, gradients and AdamW moments (16 B) plus DDP's gradient buckets (4 B) when there are several ranks;
- ``activations``: what autograd keeps for backward, counted per decoder layer (``Profile.saved_layer``). Only the
  layers the gradient crosses keep any: every layer for first-layer injection (the perceptual tokens enter at the
  input), from the first injected layer up for inner injection and for gated cross-attention. With activation
  checkpointing a layer keeps its input only, and one layer's activations are recomputed at a time;
- ``backward working set``: the gradients of one layer's activations while its backward runs (as large as what
  it kept), or, with checkpointing, the recomputed layer plus those gradients;
- ``loss buffers``: the target-only loss. PyTorch's path holds the ``[targets, vocab]`` logits (16-bit), their fp32
  copy and the fp32 log-softmax, then the fp32 gradient; the fused Triton kernel (sm_80+) holds one chunk of logits
  and the hidden-state gradient;
- ``encoder``: the frozen encoder's forward working set (it keeps nothing for backward), or the cached-feature batch;
- ``batches``: the current and the next batch on the device (pinned host copies are host memory: ``host`` part);
- ``framework``: CUDA context, cuBLAS workspaces and NCCL buffers (:data:`CONTEXT_BYTES`), plus
  :data:`FRAGMENTATION` of the dynamic parts for the caching allocator.

The peak is the static parts (weights, states, batches, framework) plus the larger of the encoder phase (its working
set) and the backward phase (activations + the larger of the backward working set and the loss buffers, which
are not alive at once): the table lists every part, the peak is not their sum.
"""

from __future__ import annotations

import dataclasses

from scaling.plan.profile import Profile

GIB = 1024**3
CONTEXT_BYTES = int(1.0 * GIB)  # CUDA context (~0.4-0.6 GiB) + cuBLAS/cuDNN workspaces + NCCL buffers
CPU_CONTEXT_BYTES = 64 * 1024**2  # a CPU run (--gpu cpu): no CUDA context, gloo buffers only
FRAGMENTATION = 0.10  # of the dynamic parts (activations, working sets, loss buffers)
FUSED_LOSS_MIN_ARCH = 80  # scaling.kernels.dispatch: matmul-heavy kernels need compute capability >= 8.0


@dataclasses.dataclass(frozen=True)
class Setting:
    precision: str  # bf16 | fp16 | fp32 (compute and frozen weights)
    micro_batch: int
    accumulation: int
    zero_stage: int  # 0 = no DeepSpeed (one process / DDP), 2, 3
    offload: bool  # ZeRO-3: optimizer states and parameters on the CPU (ds_configs/zero3_offload.json)
    checkpointing: bool

    def label(self) -> str:
        strategy = "DDP" if self.zero_stage == 0 else f"ZeRO-{self.zero_stage}" + ("+offload" if self.offload else "")
        return (f"{self.precision} micro {self.micro_batch} x accum {self.accumulation}, {strategy}, "
                f"checkpointing {'on' if self.checkpointing else 'off'}")


def dtype_bytes(precision: str) -> int:
    return 4 if precision == "fp32" else 2


def model_states(p: Profile, s: Setting, world: int, gpus_per_node: int) -> dict[str, dict[str, int]]:
    """{"gpu": {"frozen weights", "trainable states"}, "cpu": {...}} for ZeRO stage / offload (bytes)."""
    nodes = max(1, world // max(1, gpus_per_node))
    fb = dtype_bytes(s.precision)
    frozen = p.frozen_params * fb
    n_t = p.trainable_params
    gpu: dict[str, int] = {}
    cpu: dict[str, int] = {}
    if s.zero_stage == 3:
        largest = 4 * p.largest_layer_params  # DeepSpeed's largest_layer_memory: a gathered 16-bit layer + its gradient
        gpu["frozen weights"] = largest + (0 if s.offload else frozen // world)
        if s.offload:
            gpu["trainable states"] = 0
            cpu["frozen weights"] = frozen // nodes
            cpu["trainable states"] = int(n_t * 18 / nodes * 1.5)
        else:
            gpu["trainable states"] = int(18 * n_t / world)
    elif s.zero_stage in (1, 2):
        gpu["frozen weights"] = frozen
        if s.offload:
            gpu["trainable states"] = 2 * n_t
            cpu["trainable states"] = int(n_t * max(4 * world, 16) * 1.5)
        else:
            gpu["trainable states"] = 2 * n_t + int(18 * n_t / world)
    else:
        gpu["frozen weights"] = frozen
        gpu["trainable states"] = 16 * n_t + (4 * n_t if world > 1 else 0)
    return {"gpu": gpu, "cpu": cpu}


def loss_buffers(p: Profile, s: Setting, fused: bool) -> int:
    """Bytes of the target-only loss's buffers at their peak (the start of backward)."""
    n = p.n_targets * s.micro_batch
    if fused:  # one chunk of logits (Liger's rule: about the size of the hidden states, >= 256 rows) + d_hidden
        chunk = max(256, min(n, -(-n * p.hidden // p.vocab)))
        return chunk * p.vocab * 2 + n * p.hidden * 2
    return n * p.vocab * (4 + 2)  # the fp32 gradient of the logits and its 16-bit cast


def breakdown(p: Profile, s: Setting, world: int, gpus_per_node: int, arch: int | None = None,
              cached_features: bool = False, kernels: str = "auto", pinned_batches: int = 4,
              context_bytes: int = CONTEXT_BYTES) -> dict:
    """Every part of the per-GPU peak (bytes) and the peak itself; ``arch``: compute capability x 10 (None: CPU)."""
    b = s.micro_batch
    states = model_states(p, s, world, gpus_per_node)
    scale = dtype_bytes(s.precision) / p.frozen_bytes  # the profile's activations are in its frozen dtype
    layers = [i for i in p.backprop_layers if i in p.saved_layer] or list(p.saved_layer)
    per_layer = {i: p.at(p.saved_layer[i], b) * scale for i in p.saved_layer}
    biggest = max(per_layer.values(), default=0.0)
    interface = p.at(p.saved_interface, b)
    if s.checkpointing:
        kept_layers = len(p.backprop_layers) * (p.layer_input_bytes * b * scale)
        working = 2 * biggest  # one layer recomputed + the gradients of its activations
    else:
        kept_layers = sum(per_layer[i] for i in layers)
        working = biggest
    fused = kernels != "torch" and arch is not None and arch >= FUSED_LOSS_MIN_ARCH
    head_kept = 0.0 if fused else p.at(p.saved_head, b)
    activations = kept_layers + interface + head_kept
    loss = loss_buffers(p, s, fused)
    if cached_features:
        encoder = 0.0
        batch_bytes = p.feature_bytes * b
    else:
        encoder = p.at(p.encoder_peak, b)
        batch_bytes = p.media_bytes * b
    batch_bytes += 3 * 8 * p.text_len * b  # input ids, attention mask, labels (int64)
    batches = 2 * batch_bytes
    backward_phase = activations + max(working, loss)
    dynamic = max(encoder, backward_phase)
    frag = FRAGMENTATION * dynamic
    gpu = {
        "frozen weights": states["gpu"]["frozen weights"],
        "trainable states": states["gpu"]["trainable states"],
        "activations": activations,
        "backward working set": working,
        "loss buffers": loss,
        "encoder": encoder,
        "batches": batches,
        "framework": context_bytes + frag,
    }
    static = gpu["frozen weights"] + gpu["trainable states"] + batches + context_bytes + frag
    peak = static + dynamic
    host = dict(states["cpu"])
    host["pinned batches"] = pinned_batches * batch_bytes
    # what a tracker of live tensors sees (scaling.plan.measure): no framework allowance, one batch on the device
    tracked = peak - context_bytes - frag - batch_bytes
    return {"gpu": {k: int(v) for k, v in gpu.items()}, "peak": int(peak), "tensors_peak": int(tracked), "phase": "encoder" if encoder > backward_phase
            else "backward", "host": {k: int(v) for k, v in host.items()}, "fused_loss": fused,
            "activation_layers": (min(p.backprop_layers), max(p.backprop_layers)) if p.backprop_layers else None}
