"""The perceptually augmented LLM: frozen encoder → extract → map → inject into the frozen LLM.

:class:`PerceptualLM` composes already-built blocks (see :mod:`scaling.models.builder` for the
builder). Its input sequence is ``[first-layer tokens][inner slots][deep prompt][prompt][text]``;
padding may sit anywhere in the text (right for training, left for generation); position ids count
real tokens only. The loss is computed on target tokens only (the answer/caption, or every non-pad
token with ``train.loss_on=all``: the labels say which), through the lm_head at those positions alone;
its reduction (token mean or per-sample sum) and weight come from :meth:`PerceptualLM.configure_loss`. ``generate`` runs greedy or beam search with a
KV cache.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, StaticCache

from scaling.models import ops
from scaling.models.backbones import LLMLayout
from scaling.models.extract import FeatureExtractor
from scaling.models.hf_compat import cache_kwarg
from scaling.models.positions import learned_position_embedding, position_module, shifted_positions, unpositioned

MEDIA_KEYS = {"pixel_values": "image", "video": "video", "audio": "audio"}


@dataclasses.dataclass
class InjectionState:
    """What the layer hooks need during one forward call."""

    prefill: bool = True  # the current input window contains the slots (not a cached decode step)
    slot_start: int = 0
    slot_count: int = 0
    layer_tokens: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)  # inner injection
    hide_layers: frozenset[int] = frozenset()  # layers whose text must not see the slots
    hide_mask: torch.Tensor | None = None  # [B, 1, Q, K] additive mask used at those layers
    deep_start: int = 0
    deep_tokens: torch.Tensor | None = None  # [n_layers, B, n, D]
    xattn_tokens: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)
    unpositioned: tuple[int, int] = (0, 0)  # (start, count): prefix columns without a learned position embedding
    positions: tuple[torch.Tensor, torch.Tensor] | None = None  # learned-position override of the current window


def hidden_slot_mask(mask_2d: torch.Tensor, q_len: int, start: int, count: int, dtype: torch.dtype,
                     q_start: int | None = None) -> torch.Tensor:
    """Causal + padding mask ``[B, 1, Q, K]`` (additive) in which no query sees the slot keys
    ``start..start+count-1`` except a slot seeing itself (so no attention row is empty).
    The queries are at ``q_start..q_start+Q-1`` (default: the last Q positions of ``mask_2d``; a
    preallocated static KV cache passes its full-length mask and the current position)."""
    b, k_len = mask_2d.shape
    device = mask_2d.device
    q0 = k_len - q_len if q_start is None else q_start
    q_pos = torch.arange(q0, q0 + q_len, device=device)[:, None]
    k_pos = torch.arange(k_len, device=device)[None, :]
    allowed = (k_pos <= q_pos)[None] & mask_2d.bool()[:, None, :]
    is_slot = (k_pos >= start) & (k_pos < start + count)
    allowed = allowed & ~(is_slot & (k_pos != q_pos))[None]
    allowed = allowed | (k_pos == q_pos)[None]
    out = torch.zeros(b, 1, q_len, k_len, dtype=dtype, device=device)
    return out.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def _argument_index(fn, name: str) -> int | None:
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in params if p.name != "self"]
    return names.index(name) if name in names else None


class PerceptualLM(nn.Module):
    """Frozen encoder + frozen LLM + the trainable interface (mapper, injection, fine-tuning).

    Args are built blocks: ``extractor`` (None for the blind baseline), ``mapper``, ``injection``
    (a module from :mod:`scaling.models.injection`), ``prompt``/``deep_prompt`` (or None),
    ``adapters`` (ModuleList or None).
    """

    def __init__(
        self,
        llm: nn.Module,
        layout: LLMLayout,
        extractor: FeatureExtractor | None,
        mapper: nn.Module | None,
        injection: nn.Module,
        prompt: nn.Module | None = None,
        deep_prompt: nn.Module | None = None,
        adapters: nn.ModuleList | None = None,
        label_smoothing: float = 0.0,
        kernel_mode: str = "auto",
        learned_positions: str = "prompt",
    ):
        super().__init__()
        self.llm = llm
        self.layout = layout
        self.extractor = extractor
        self.mapper = mapper
        self.injection = injection
        self.prompt = prompt
        self.deep_prompt = deep_prompt
        self.adapters = adapters
        self.label_smoothing = label_smoothing
        self.loss_reduction, self.loss_weight = "token_mean", 1.0  # see configure_loss
        # Training forward: when every sample's padding sits after its last real token (right
        # padding, what the collator builds), a causal mask alone is exact for every real token,
        # so the LLM gets no padding mask and SDPA can take its flash path (False: always the mask).
        self.causal_only_when_right_padded = True
        # Generation with kv_cache="static" on CUDA: run each decode step through
        # torch.compile(mode="reduce-overhead") (CUDA graphs) when no layer hook is armed (first-layer
        # injection, blind). Never used on CPU. Off by default until GPU figures say it pays.
        self.compile_decode = False
        self._compiled_decoder = None
        self._static_cache = None  # (batch, length, device, dtype), StaticCache: reused by generate (see _new_cache)
        self._state: InjectionState | None = None
        self.plan: dict[int, int] = {}
        if hasattr(injection, "plan") and extractor is not None:
            self.plan = injection.plan(layout.n_layers, extractor.n_levels)
        self.set_kernel_mode(kernel_mode)
        self._hooks = []
        # learned absolute positions (OPT, GPT-2): which prefix tokens get none (scaling/models/positions.py)
        unpositioned("sequence" if learned_positions is None else learned_positions, 0, 0, 0)  # validates the name
        self.learned_positions = learned_positions
        pos_module = position_module(layout.base, getattr(llm.config, "model_type", ""))
        self._positions_hooked = pos_module is not None and learned_positions != "sequence"
        if self._positions_hooked:
            self._hooks.append(pos_module.register_forward_hook(lambda m, a, out: self._position_hook(m, out)))
        if self.plan or deep_prompt is not None:
            layer_cls = type(layout.layers[0])
            self._mask_index = _argument_index(layer_cls.forward, "attention_mask")
            for idx, layer in enumerate(layout.layers):
                self._hooks.append(
                    layer.register_forward_pre_hook(lambda m, a, k, idx=idx: self._pre_layer(idx, a, k), with_kwargs=True)
                )

    # ------------------------------------------------------------------ configuration helpers
    def configure_loss(self, reduction: str = "token_mean", weight: float = 1.0) -> None:
        """``train.loss_reduction`` / ``train.loss_weight``: ``token_mean`` averages the cross-entropy over
        the batch's target tokens (DePALM); ``sample_sum`` sums it per sample and averages over the batch
        (eP-ALM); the result is multiplied by ``weight`` (eP-ALM's ``lm_loss_weight`` 0.1)."""
        if reduction not in ("token_mean", "sample_sum"):
            raise ValueError(f"unknown loss reduction {reduction!r}: token_mean or sample_sum")
        self.loss_reduction, self.loss_weight = reduction, float(weight)

    def set_kernel_mode(self, mode: str) -> None:
        """"auto" | "triton" | "torch" for every module that dispatches to kernels."""
        if mode not in ops.KERNEL_MODES:
            raise ValueError(f"kernel mode must be one of {ops.KERNEL_MODES}, got {mode!r}")
        self.kernel_mode = mode
        for module in self.modules():
            if hasattr(type(module), "kernel_mode") and module is not self:
                module.kernel_mode = mode

    def train(self, mode: bool = True):
        """Trainable blocks follow ``mode``; the frozen backbones stay in eval mode (no dropout)."""
        super().train(mode)
        self.llm.eval()
        if self.extractor is not None:
            self.extractor.encoder.eval()
        return self

    def compile_encoder(self, **compile_kwargs) -> bool:
        """torch.compile the frozen encoder's forward (inference only: it never needs gradients
        unless the encoder's biases are tuned, in which case compiling is skipped). Returns whether
        the encoder is compiled."""
        if self.extractor is None:
            return False
        enc = self.extractor.encoder.model
        if any(p.requires_grad for p in enc.parameters()):
            return False
        if not getattr(enc, "_scaling_compiled", False):
            enc.forward = torch.compile(enc.forward, dynamic=False, **compile_kwargs)
            enc._scaling_compiled = True
        return True

    @property
    def modality(self) -> str | None:
        return self.extractor.encoder.info.modality if self.extractor is not None else None

    @property
    def llm_dtype(self) -> torch.dtype:
        return self.layout.embed_tokens.weight.dtype

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trained weights (what checkpoints and adapters store)."""
        names = {n for n, _ in self.trainable_named_parameters()}
        return {k: v for k, v in self.state_dict().items() if k in names}

    # ------------------------------------------------------------------ perception
    def encode(self, features: torch.Tensor | None = None, **media: torch.Tensor | None) -> torch.Tensor | None:
        """Media (or cached ``features [B, L, n_tok, d]``) → mapped tokens ``[B, L, n_out, d_out]``."""
        if self.extractor is None or self.mapper is None:
            given = [k for k, v in media.items() if v is not None] + (["features"] if features is not None else [])
            if given:
                raise ValueError(f"this model has no perception (injection 'none') but got {given}")
            return None
        if features is None:
            features = self.extractor(self._pick_media(media))
        else:
            self._check_features(features)
        param = next(self.mapper.parameters())
        return self.mapper(features.to(param.dtype))

    def _pick_media(self, media: dict[str, torch.Tensor | None]) -> torch.Tensor:
        given = {k: v for k, v in media.items() if v is not None}
        want = self.modality
        if not given:
            raise ValueError(f"no media given: this model's encoder reads {want}; pass {_key_for(want)}=... or cached features=...")
        if len(given) > 1:
            raise ValueError(f"got several media inputs {sorted(given)}; pass exactly one")
        (key, value), = given.items()
        kind = MEDIA_KEYS.get(key)
        if kind is None:
            raise ValueError(f"unknown media input {key!r}; valid: {sorted(MEDIA_KEYS)} or features")
        if kind != want:
            from scaling.models.encoders.registry import encoders_by_modality

            enc = type(self.extractor.encoder.model).__name__
            names = encoders_by_modality()
            video = ", ".join(names.get("video", [])) + " or an image encoder with model.video_frames"
            raise ValueError(
                f"modality mismatch: the encoder ({enc}) reads {want} but the batch holds {kind} ({key}). "
                f"Use an encoder for {kind} (image: {', '.join(names.get('image', []))}; video: {video}; "
                f"audio: {', '.join(names.get('audio', []))}), or data of modality {want}."
            )
        return value

    def _check_features(self, features: torch.Tensor) -> None:
        ex = self.extractor
        want = (ex.n_levels, ex.n_tokens, ex.encoder.info.hidden_size)
        if features.dim() != 4 or tuple(features.shape[1:]) != want:
            raise ValueError(
                f"cached features have shape {tuple(features.shape)}, this method extracts [batch, {want[0]} levels, "
                f"{want[1]} tokens, {want[2]} dims]; re-run `scaling data cache-features` with this config"
            )

    # ------------------------------------------------------------------ sequence building
    @property
    def max_positions(self) -> int | None:
        """The LLM's position limit (``max_position_embeddings``; GPT-2's ``n_positions``), if it has one."""
        limit = getattr(self.llm.config, "max_position_embeddings", None)
        return int(limit) if limit else None

    def check_length(self, n_prefix: int, n_text: int, n_new: int = 0) -> None:
        """Refuse a sequence longer than the LLM's positions before it reaches the position table.

        Past the limit, learned position embeddings (OPT, GPT-2) index out of range (a device-side
        assert on GPU, which hangs the other ranks); rotary models silently degrade. Uses shapes only
        (no device sync)."""
        limit = self.max_positions
        total = n_prefix + n_text + n_new
        if limit is not None and total > limit:
            new = f" + {n_new} generated" if n_new else ""
            raise ValueError(
                f"the LLM's input needs {total} positions ({n_prefix} perceptual/prompt tokens + {n_text} text tokens{new}) "
                f"but {type(self.llm).__name__} has max_position_embeddings={limit}; shorten the text (data.max_text_len), "
                f"use fewer perceptual tokens (model.map.n_queries, a resampler, model.extract.tokens=cls) or fewer "
                f"prompt tokens (model.finetune.n_prompt){', or lower eval.max_new_tokens' if n_new else ''}")

    def prefix(self, mapped: torch.Tensor | None, batch: int) -> tuple[torch.Tensor, InjectionState]:
        """The embeddings placed before the text and the state the injected layers read.

        ``mapped`` ``[batch, levels, tokens, d_llm]`` (:meth:`encode`'s output, or None without media) →
        (prefix ``[batch, n_prefix, d_llm]`` in the LLM's dtype: first-layer perceptual tokens, the slots of
        inner injection, deep and plain prompt tokens, in that order; :class:`InjectionState`)."""
        d, dtype = self.layout.hidden_size, self.llm_dtype
        device = self.layout.embed_tokens.weight.device
        state = InjectionState()
        parts: list[torch.Tensor] = []
        offset = 0
        kind = getattr(self.injection, "kind", "none")
        n_first = 0
        if mapped is not None and kind == "first-layer":
            parts.append(mapped.flatten(1, 2))
            n_first = parts[-1].shape[1]
            offset += n_first
        elif mapped is not None and kind == "inner":
            n = mapped.shape[2]
            state.slot_start, state.slot_count = offset, n
            state.layer_tokens = self.injection.layer_tokens(mapped, self.plan)
            state.hide_layers = frozenset(i for i in range(self.layout.n_layers) if i not in self.plan)
            parts.append(mapped.new_zeros(batch, n, d))
            offset += n
        elif mapped is not None and kind == "cross-attention":
            state.xattn_tokens = {i: mapped[:, lvl] for i, lvl in self.plan.items()}
        if self.deep_prompt is not None:
            deep = self.deep_prompt()  # [L, n, d]
            state.deep_start = offset
            state.deep_tokens = deep[:, None].expand(-1, batch, -1, -1)
            parts.append(state.deep_tokens[0])
            offset += deep.shape[1]
        if self.prompt is not None:
            parts.append(self.prompt()[None].expand(batch, -1, -1))
        if not parts:
            return torch.zeros(batch, 0, d, dtype=dtype, device=device), state
        prefix = torch.cat([p.to(dtype) for p in parts], dim=1)
        if self._positions_hooked:
            state.unpositioned = unpositioned(self.learned_positions, prefix.shape[1], state.slot_start, state.slot_count,
                                              n_first)
        return prefix, state

    def _position_hook(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor | None:
        """Forward hook of the learned position embedding: the current window's positions with the
        unpositioned prefix columns left out (their embedding 0, the later columns numbered without them)."""
        state = self._state
        if state is None or state.positions is None:
            return None
        return learned_position_embedding(module, *state.positions).to(output.dtype)

    def _inputs(self, input_ids, attention_mask, prefix):
        """``[prefix; embed(input_ids)]`` with mask and positions (see :func:`ops.inject_prefix`); the
        text embeddings get the embedding module's own scale (Gemma multiplies by sqrt(d) there), the
        perceptual/prompt prefix is used as is."""
        embeds, mask, positions = ops.inject_prefix(self.layout.embed_tokens.weight, input_ids, attention_mask, prefix,
                                                    self.kernel_mode)
        scale = self.layout.embed_scale
        if scale != 1.0:
            p = prefix.shape[1]
            embeds = torch.cat([embeds[:, :p], embeds[:, p:] * embeds.new_tensor(scale)], dim=1)
        return embeds, mask, positions

    def _pre_layer(self, idx: int, args: tuple, kwargs: dict):
        state = self._state
        if state is None:
            return None
        args = list(args)
        hidden = args[0] if args else kwargs["hidden_states"]
        if state.prefill:
            if idx in state.layer_tokens:
                hidden = ops.overwrite_slots(hidden, state.layer_tokens[idx].to(hidden.dtype), state.slot_start, self.kernel_mode)
            if state.deep_tokens is not None and idx > 0:
                hidden = ops.overwrite_slots(hidden, state.deep_tokens[idx].to(hidden.dtype), state.deep_start, self.kernel_mode)
        if idx in state.xattn_tokens:
            hidden = self.injection.block(hidden, state.xattn_tokens[idx])
        if args:
            args[0] = hidden
        else:
            kwargs["hidden_states"] = hidden
        if idx in state.hide_layers and state.hide_mask is not None:
            if "attention_mask" in kwargs or self._mask_index is None or len(args) <= self._mask_index:
                kwargs["attention_mask"] = state.hide_mask
            else:
                args[self._mask_index] = state.hide_mask
        return tuple(args), kwargs

    def _decoder(self, static: bool, device: torch.device) -> nn.Module:
        """The decoder stack for one decode step: ``layout.base``, or its CUDA-graph capture
        (``torch.compile(mode="reduce-overhead")``) with a static cache on CUDA when ``compile_decode``
        is set and no layer hook is armed (the hooks read Python state per call)."""
        if not (self.compile_decode and static and device.type == "cuda" and not self._hooks):
            return self.layout.base
        if self._compiled_decoder is None:
            self._compiled_decoder = torch.compile(self.layout.base, mode="reduce-overhead", dynamic=False)
        return self._compiled_decoder

    def _run(self, embeds, mask_2d, positions, state: InjectionState, cache=None, q_len: int | None = None,
             q_start: int | None = None, decoder: nn.Module | None = None):
        """One pass of the LLM's decoder stack with the hooks armed; returns the last hidden states.
        ``mask_2d`` None: causal attention only (no padding before any real token). ``q_start``: the
        position of the first query when ``mask_2d`` spans a preallocated (static) cache."""
        if state.hide_layers:
            state.hide_mask = hidden_slot_mask(mask_2d, q_len or embeds.shape[1], state.slot_start, state.slot_count,
                                               embeds.dtype, q_start)
        start, count = state.unpositioned
        if count:  # a cached decode window lies after the whole prefix
            state.positions = shifted_positions(positions, 0 if state.prefill else start + count, start, count)
        self._state = state
        try:
            # the KV-cache keyword the model declares (transformers 5.x renames past_key_values → cache)
            # `is not None`: a torch.compile'd module cannot be tested for truth (it raises TypeError)
            out = (decoder if decoder is not None else self.layout.base)(
                inputs_embeds=embeds, attention_mask=mask_2d, position_ids=positions,
                **{cache_kwarg(self.layout.base): cache}, use_cache=cache is not None,
            )
        finally:
            self._state = None
        return out.last_hidden_state

    # ------------------------------------------------------------------ training forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        return_logits: bool = False,
        **_: Any,
    ) -> dict[str, torch.Tensor]:
        """input_ids/attention_mask/labels ``[B, T]`` (labels -100 outside the answer) and one of
        pixel_values ``[B, 3, H, W]``, video ``[B, F, 3, H, W]``, audio ``[B, frames, mel]``,
        features ``[B, L, n_tok, d]`` → {"loss": scalar, "n_targets": int, "logits": ``[B, T, V]``}."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # checked before any media work is queued: its device→host sync then waits for (almost) nothing
        mask_free = self.causal_only_when_right_padded and ops.padding_is_trailing(attention_mask)
        mapped = self.encode(features=features, pixel_values=pixel_values, video=video, audio=audio)
        prefix, state = self.prefix(mapped, input_ids.shape[0])
        self.check_length(prefix.shape[1], input_ids.shape[1])
        embeds, mask, positions = self._inputs(input_ids, attention_mask, prefix)
        if mask_free and not state.hide_layers:  # the prefix is all real and precedes the text
            mask, positions = None, ops.arange_positions(mask)
        hidden = self._run(embeds, mask, positions, state)
        out: dict[str, torch.Tensor] = {}
        p = prefix.shape[1]
        if labels is not None:
            targets = labels[:, 1:]
            h = hidden[:, p : p + labels.shape[1] - 1]
            selected = targets != -100
            lm_head = self.layout.lm_head
            if selected.any() and not self.layout.plain_head:  # scaled / soft-capped logits (Cohere, Gemma-2)
                logits = self.layout.logits(h[selected])
                loss = torch.nn.functional.cross_entropy(
                    logits.float(), targets[selected], label_smoothing=self.label_smoothing)
            elif selected.any():
                loss = ops.target_cross_entropy(
                    h[selected], lm_head.weight, targets[selected], self.label_smoothing, lm_head.bias, self.kernel_mode
                )
            else:  # keep every trainable parameter in the graph (ZeRO expects a gradient for each)
                loss = None
                out["loss"] = hidden.float().sum() * 0.0
            if loss is not None:
                if self.loss_reduction == "sample_sum":  # sum over samples' tokens / B = token mean x N / B (exact:
                    loss = loss * (selected.sum() / targets.shape[0])  # the fused kernel's mean serves both)
                out["loss"] = loss * self.loss_weight if self.loss_weight != 1.0 else loss
            out["n_targets"] = selected.sum()
        if return_logits:
            out["logits"] = self.layout.logits(hidden[:, p:])
        return out

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 20,
        num_beams: int = 1,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        use_cache: bool = True,
        length_penalty: float = 1.0,
        kv_cache: str = "dynamic",
        **media: torch.Tensor | None,
    ) -> torch.Tensor:
        """Left-padded prompts ``[B, T]`` (+ media) → generated ids ``[B, ≤max_new_tokens]``
        (padded with ``pad_token_id`` after EOS). Greedy when ``num_beams == 1``, else beam search.

        ``kv_cache``: ``"dynamic"`` (grows by concatenation) or ``"static"`` (preallocated for the
        prompt + ``max_new_tokens``, written in place; the attention mask is preallocated too, so
        every decode step has the same shapes: what a CUDA graph needs)."""
        if kv_cache not in KV_CACHES:
            raise ValueError(f"kv_cache must be one of {KV_CACHES}, got {kv_cache!r}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        eos = set([eos_token_id] if isinstance(eos_token_id, int) else (eos_token_id or []))
        pad = pad_token_id if pad_token_id is not None else (min(eos) if eos else 0)
        if num_beams > 1:
            return self._beam_search(input_ids, attention_mask, max_new_tokens, num_beams, eos, pad, length_penalty, media,
                                     kv_cache)
        features = media.pop("features", None)
        mapped = self.encode(features=features, **media)
        prefix, state = self.prefix(mapped, input_ids.shape[0])
        self.check_length(prefix.shape[1], input_ids.shape[1], max_new_tokens)
        embeds, mask, positions = self._inputs(input_ids, attention_mask, prefix)
        b = input_ids.shape[0]
        finished = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
        out_tokens = []
        static = use_cache and kv_cache == "static"
        cache = self._new_cache(kv_cache, embeds.shape[1] + max_new_tokens, b) if use_cache else None
        length = 0  # tokens already in the cache
        if static:
            mask = _preallocated_mask(mask, embeds.shape[1] + max_new_tokens)
        step_embeds, step_pos = embeds, positions
        for step in range(max_new_tokens):
            state.prefill = step == 0 or not use_cache
            decoder = self._decoder(static, embeds.device) if step > 0 else None
            hidden = self._run(step_embeds, mask, step_pos, state, cache, q_len=step_embeds.shape[1],
                               q_start=length if static else None, decoder=decoder)
            length += step_embeds.shape[1]
            logits = self.layout.logits(hidden[:, -1]).float()
            token = logits.argmax(-1)
            token = torch.where(finished, torch.full_like(token, pad), token)
            out_tokens.append(token)
            finished |= torch.isin(token, torch.tensor(sorted(eos), device=token.device)) if eos else torch.zeros_like(finished)
            if finished.all():
                break
            new_embed = self.layout.embed_tokens(token)[:, None]
            if static:
                mask[:, length] = 1
            else:
                mask = torch.cat([mask, mask.new_ones(b, 1)], dim=1)
            new_pos = positions[:, -1:] + 1
            positions = torch.cat([positions, new_pos], dim=1)
            if use_cache:
                step_embeds, step_pos = new_embed, new_pos
            else:
                embeds = torch.cat([embeds, new_embed], dim=1)
                step_embeds, step_pos = embeds, positions
        return torch.stack(out_tokens, dim=1)

    def _new_cache(self, kind: str, max_len: int, batch: int):
        """A dynamic cache, or the static cache of the last call with this batch and length reset in place:
        its buffers keep their addresses, so the CUDA graph of ``compile_decode`` is replayed, not re-recorded."""
        if kind != "static":
            return DynamicCache(config=self.llm.config)
        weight = self.layout.embed_tokens.weight
        key = (batch, max_len, weight.device, weight.dtype)
        if self._static_cache is not None and self._static_cache[0] == key:
            cache = self._static_cache[1]
            cache.reset()
            return cache
        cache = StaticCache(config=self.llm.config, max_cache_len=max_len)
        self._static_cache = (key, cache)
        return cache

    def _beam_search(self, input_ids, attention_mask, max_new_tokens, k, eos, pad, length_penalty, media,
                     kv_cache: str = "dynamic"):
        b = input_ids.shape[0]
        rep = lambda t: t.repeat_interleave(k, dim=0) if t is not None else None  # noqa: E731
        features = rep(media.pop("features", None))
        media = {key: rep(v) for key, v in media.items()}
        mapped = self.encode(features=features, **media)
        ids, am = rep(input_ids), rep(attention_mask)
        prefix, state = self.prefix(mapped, ids.shape[0])
        self.check_length(prefix.shape[1], ids.shape[1], max_new_tokens)
        embeds, mask, positions = self._inputs(ids, am, prefix)
        device = ids.device
        static = kv_cache == "static"
        cache = self._new_cache(kv_cache, embeds.shape[1] + max_new_tokens, ids.shape[0])
        length = 0
        if static:
            mask = _preallocated_mask(mask, embeds.shape[1] + max_new_tokens)
        scores = torch.zeros(b, k, device=device)
        scores[:, 1:] = float("-inf")  # all beams start identical: expand from the first only
        seqs = torch.zeros(b * k, 0, dtype=torch.long, device=device)
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
        done = [False] * b
        step_embeds, step_pos = embeds, positions
        for step in range(max_new_tokens):
            state.prefill = step == 0
            decoder = self._decoder(static, device) if step > 0 else None
            hidden = self._run(step_embeds, mask, step_pos, state, cache, q_len=step_embeds.shape[1],
                               q_start=length if static else None, decoder=decoder)
            length += step_embeds.shape[1]
            logp = torch.log_softmax(self.layout.logits(hidden[:, -1]).float(), dim=-1)  # [b*k, V]
            vocab = logp.shape[-1]
            total = (scores.view(b * k, 1) + logp).view(b, k * vocab)
            top_scores, top_idx = total.topk(2 * k, dim=1)
            next_beams = torch.zeros(b, k, dtype=torch.long, device=device)
            next_tokens = torch.full((b, k), pad, dtype=torch.long, device=device)
            next_scores = torch.full((b, k), float("-inf"), device=device)
            for i in range(b):
                j = 0
                for rank, (s, idx) in enumerate(zip(top_scores[i].tolist(), top_idx[i].tolist())):
                    beam, tok = divmod(idx, vocab)
                    if done[i] or s == float("-inf"):
                        break
                    if tok in eos:
                        if rank < k:  # as Hugging Face: an EOS ranked below the k best is no hypothesis
                            hyp = seqs[i * k + beam].tolist() + [tok]
                            finished[i].append((s / (len(hyp) ** length_penalty), hyp))
                        continue
                    next_beams[i, j], next_tokens[i, j], next_scores[i, j] = beam, tok, s
                    j += 1
                    if j == k:
                        break
                if len(finished[i]) >= k and step < max_new_tokens - 1:  # at the last step the live
                    done[i] = True  # beams (complete at the length limit) still compete below
            if all(done):
                break
            flat = (next_beams + torch.arange(b, device=device)[:, None] * k).view(-1)
            if static:
                _reorder_static_cache(cache, flat)
                mask = mask[flat]
                mask[:, length] = 1
            else:
                cache.reorder_cache(flat)
                mask = torch.cat([mask[flat], mask.new_ones(b * k, 1)], dim=1)
            seqs = torch.cat([seqs[flat], next_tokens.view(-1, 1)], dim=1)
            scores = next_scores
            positions = positions[flat]
            new_pos = positions[:, -1:] + 1
            positions = torch.cat([positions, new_pos], dim=1)
            step_embeds, step_pos = self.layout.embed_tokens(next_tokens.view(-1))[:, None], new_pos
        results = []
        for i in range(b):
            hyps = list(finished[i])
            if not done[i]:
                for j in range(k):
                    if scores[i, j] > float("-inf"):
                        seq = seqs[i * k + j].tolist()
                        hyps.append((scores[i, j].item() / (max(len(seq), 1) ** length_penalty), seq))
            best = max(hyps, key=lambda h: h[0])[1] if hyps else []
            results.append(best)
        width = max(1, max(len(r) for r in results))
        out = torch.full((b, width), pad, dtype=torch.long, device=device)
        for i, r in enumerate(results):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long, device=device)
        return out


KV_CACHES = ("dynamic", "static")


def _preallocated_mask(mask: torch.Tensor, total: int) -> torch.Tensor:
    """``[B, n]`` padding mask → ``[B, total]``: the prompt's columns, then zeros for the tokens to come
    (each decode step sets its column to 1 in place)."""
    full = mask.new_zeros(mask.shape[0], total)
    full[:, : mask.shape[1]] = mask
    return full


def _reorder_static_cache(cache: StaticCache, rows: torch.Tensor) -> None:
    """Beam reordering of a static cache in place (its buffers keep their addresses)."""
    for layer in cache.layers:
        if getattr(layer, "is_initialized", False):
            layer.keys.copy_(layer.keys.index_select(0, rows))
            layer.values.copy_(layer.values.index_select(0, rows))


def _key_for(modality: str | None) -> str:
    return {"image": "pixel_values", "video": "video", "audio": "audio"}.get(modality or "", "pixel_values")
