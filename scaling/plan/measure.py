"""Peak live bytes of one training step at real shapes, without allocating: the planner's check.

The model is built on the ``meta`` device, moved to a *fake* CUDA device under
``torch._subclasses.FakeTensorMode`` (tensors with shapes, dtypes and devices but no data), and one
training step runs under :class:`PeakTracker`, a ``TorchDispatchMode`` that records every storage an
operation creates and frees (weak references), so the peak of live bytes is what a caching allocator
would have to hold at the least (no fragmentation). PyTorch's own ``MemTracker``
(``torch.distributed._tools.mem_tracker``) would do this but registers gradient hooks on every
parameter, which fails on a frozen backbone (``cannot register a hook on a tensor that doesn't require
gradient``); this tracker counts storages the same way.

Data-dependent steps of the real forward (the padding check, the boolean gather of target rows) cannot
run on data-less tensors: :func:`fake_step` runs the same blocks (:meth:`PerceptualLM.encode`,
``prefix``, ``_inputs``, ``_run`` and the target-only loss) with right-padded text and the targets at
known positions (the last ``n_targets`` text tokens of every sample), which is what the forward computes.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

# The autograd engine needs a real CUDA context for CUDA tensors, fake or not: the fake device is the CPU
# (its SDPA flash kernel keeps the output and log-sum-exp for backward, as CUDA's flash / memory-efficient ones do).
DEVICE = "cpu"


class PeakTracker(TorchDispatchMode):
    """Live and peak bytes of the storages created by operations (plus those :meth:`add` registers)."""

    def __init__(self):
        super().__init__()
        self.sizes = WeakIdKeyDictionary()
        self.live = 0
        self.peak = 0
        self.peak_at = ""
        self.phase = ""

    def add(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        if st in self.sizes:
            return
        n = st.nbytes()
        self.sizes[st] = n
        self.live += n
        weakref.finalize(st, self._free, n)
        if self.live > self.peak:
            self.peak, self.peak_at = self.live, self.phase

    def ignore(self, t: torch.Tensor) -> None:
        """Count ``t``'s storage as already there (parameters: views of them are no new memory)."""
        st = t.untyped_storage()
        if st not in self.sizes:
            self.sizes[st] = 0

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.add(t)
        return out


class RegionFlops(TorchDispatchMode):
    """FLOPs per region (what ``region()`` returns when an operation runs), counted with the formulas of
    ``torch.utils.flop_counter`` (the registry ``FlopCounterMode`` uses; operations without a formula are
    decomposed first, as there), without its module tracking."""

    IGNORED = ("is_contiguous", "sym_is_contiguous", "size", "sym_size", "stride", "sym_stride", "storage_offset",
               "sym_storage_offset", "numel", "sym_numel", "dim", "is_strides_like_format", "is_non_overlapping_and_dense")

    def __init__(self, region):
        super().__init__()
        from torch.utils.flop_counter import flop_registry

        self.registry = flop_registry
        self.region = region
        self.counts: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._overloadpacket.__name__ in self.IGNORED or func is torch.ops.prim.layout.default:
            return NotImplemented
        packet = func._overloadpacket
        if packet not in self.registry and func is not torch.ops.prim.device.default:
            with self:
                r = func.decompose(*args, **kwargs)
                if r is not NotImplemented:
                    return r
        out = func(*args, **kwargs)
        if packet in self.registry:
            key = self.region()
            self.counts[key] = self.counts.get(key, 0) + self.registry[packet](*args, **kwargs, out_val=out)
        return out

    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Measured:
    peak_bytes: int  # highest live bytes during the step
    peak_phase: str  # forward | backward | optimizer
    static_bytes: int  # parameters + buffers + optimizer states + gradients before the step


def fake_model(cfg, gradient_checkpointing: bool = False):
    """The model of a ModelConfig on a fake CUDA device (inside the returned FakeTensorMode)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from scaling.models.builder import build_model

    model = build_model(cfg, meta=True)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        model.to_empty(device=DEVICE)
    model.set_kernel_mode("torch")
    if gradient_checkpointing:
        from scaling.training import recompute

        recompute.enable(model)
    return model, mode


def fake_step(model, mode, batch: int, text_len: int, n_targets: int, media_shape: tuple[int, ...] | None,
              media_dtype: torch.dtype, steps: int = 2) -> Measured:
    """``steps`` training steps (forward, backward, AdamW) of ``batch`` samples of ``text_len`` tokens
    with ``n_targets`` target tokens each; the peak of the last step (the steady state: the optimizer
    states exist) is returned. ``media_shape``: one sample's media (e.g. ``(3, 224, 224)``), None for
    the blind model."""
    from scaling.models import ops

    tracker = PeakTracker()
    with mode:
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=1e-4, foreach=False)
        model.train()
        for p in list(model.parameters()) + list(model.buffers()):
            tracker.add(p)
        for step in range(steps):
            ids = torch.zeros(batch, text_len, dtype=torch.long, device=DEVICE)
            media = None if media_shape is None else torch.zeros(batch, *media_shape, dtype=media_dtype, device=DEVICE)
            with tracker:
                if step == steps - 1:
                    tracker.peak, tracker.live = 0, 0
                    tracker.live = _live_now(tracker)
                    static = tracker.live
                tracker.add(ids)
                if media is not None:
                    tracker.add(media)
                tracker.phase = "forward"
                kw = {} if media is None else {media_key(model): media}
                mapped = model.encode(**kw)
                prefix, state = model.prefix(mapped, batch)
                embeds, mask, positions = model._inputs(ids, torch.ones_like(ids), prefix)
                if not state.hide_layers:  # right padding: the forward drops the mask (causal only)
                    mask, positions = None, ops.arange_positions(mask)
                hidden = model._run(embeds, mask, positions, state)
                p = prefix.shape[1]
                h = hidden[:, p + text_len - n_targets - 1 : p + text_len - 1].reshape(-1, hidden.shape[-1])
                head = model.layout.lm_head
                loss = ops.target_cross_entropy(h, head.weight, ids[:, -n_targets:].reshape(-1),
                                                model.label_smoothing, head.bias, "torch")
                tracker.phase = "backward"
                loss.backward()
                del loss, hidden, h, embeds, prefix, mapped, state, mask, positions
                tracker.phase = "optimizer"
                opt.step()
                opt.zero_grad(set_to_none=True)
    return Measured(tracker.peak, tracker.peak_at, static)


def _live_now(tracker: PeakTracker) -> int:
    return sum(tracker.sizes.values())


def media_key(model) -> str:
    return {"image": "pixel_values", "video": "video", "audio": "audio"}[model.modality]
