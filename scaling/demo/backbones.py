"""Unimodal backbones for ``scaling demo``, built the way the papers assume them: each pretrained alone.

* :func:`pretrain_image_encoder`: a tiny ``ViTModel`` (64×64 images, patch 16 → 16 patch tokens +
  [CLS], hidden 128, 3 layers) trained on an image-only task over freshly rendered scenes: from
  [CLS], which (size, colour, shape) objects are present (multi-label) and how many; from every
  patch token, the class of the object under it (labels from the renderer's masks; the DEMO notes
  found this per-patch loss is what makes a tiny ViT useful within a minute) and its own position
  (so that the last layer's tokens still say where they are: captions and questions name positions).
* :func:`pretrain_audio_encoder`: the same recipe for a tiny ``ASTModel`` on log-mel spectrograms
  of tones (multi-label pitch × timbre × length, count).
* :func:`pretrain_lm`: a tiny ``LlamaForCausalLM`` (hidden 128, 2 layers, FFN 512) with a
  word-level tokenizer (:func:`scaling.models.tiny.word_tokenizer`) trained on text only: short
  documents of 1–3 paraphrases of one scene joined by "." (see :func:`scaling.demo.synth.lm_document`).

Each trains to a **step budget** (reproducible; a time budget would make results vary) with a tqdm
bar (ETA, loss, accuracy) and is written with ``save_pretrained`` — plus the image processor /
feature extractor config or the tokenizer — so the rest of the demo loads them exactly as it would
load real backbones from a local directory.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time

import numpy as np
import torch
from torch import nn

from scaling.demo import synth


@dataclasses.dataclass
class PretrainResult:
    path: str
    steps: int
    seconds: float
    metrics: dict


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p))


def _bar(total: int, desc: str, progress: bool, reporter=None):
    from scaling.demo.progress import make_bar

    return make_bar(total, desc, reporter, progress)


# --------------------------------------------------------------------------------------- image


def vit_config(hidden: int = 128, layers: int = 3, heads: int = 4, image_size: int = synth.IMAGE_SIZE,
               patch: int = synth.PATCH):
    from transformers import ViTConfig

    return ViTConfig(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     image_size=image_size, patch_size=patch, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def images_to_tensor(images) -> torch.Tensor:
    """PIL images → ``[B, 3, H, W]`` normalised as the saved ViT image processor does (mean = std = 0.5)."""
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 255.0
    return (torch.from_numpy(arr).permute(0, 3, 1, 2) - 0.5) / 0.5


def _render_pool(n: int, seed: int, progress: bool):
    from tqdm import tqdm

    rng = random.Random(f"demo-encoder-pretraining:{seed}")
    images, patches, objects, counts = [], [], [], []
    for _ in tqdm(range(n), desc="rendering encoder pretraining scenes", unit="img", disable=not progress,
                  dynamic_ncols=True, leave=False):
        imgs, pl, tg = synth.encoder_batch(rng, 1)
        images.append(imgs[0])
        patches.append(pl[0])
        objects.append(tg[0]["objects"])
        counts.append(tg[0]["count"])
    return (images_to_tensor(images), torch.from_numpy(np.stack(patches)), torch.from_numpy(np.stack(objects)),
            torch.tensor(counts))


class _Heads(nn.Module):
    def __init__(self, hidden: int, n_objects: int, n_counts: int, n_patch_classes: int, n_patches: int = 0):
        super().__init__()
        self.objects = nn.Linear(hidden, n_objects)
        self.count = nn.Linear(hidden, n_counts)
        self.patch = nn.Linear(hidden, n_patch_classes)
        self.where = nn.Linear(hidden, n_patches) if n_patches else None


def _encoder_step(model, heads, x, patch_y, obj_y, count_y, patch_weight: float = 2.0):
    key = "pixel_values" if model.config.model_type == "vit" else "input_values"
    h = model(**{key: x}).last_hidden_state
    cls = h[:, 0]
    loss_obj = nn.functional.binary_cross_entropy_with_logits(heads.objects(cls), obj_y)
    loss_cnt = nn.functional.cross_entropy(heads.count(cls), count_y)
    out = {"loss_obj": loss_obj, "loss_cnt": loss_cnt}
    loss = loss_obj * 4 + loss_cnt
    if patch_y is not None:
        n = patch_y.shape[1]
        logits = heads.patch(h[:, -n:])
        loss_patch = nn.functional.cross_entropy(logits.flatten(0, 1), patch_y.flatten())
        loss = loss + patch_weight * loss_patch
        out["patch_acc"] = (logits.argmax(-1) == patch_y).float().mean()
        if heads.where is not None:  # every patch token keeps knowing where it is (spatial words need it)
            where = torch.arange(n, device=h.device).expand(h.shape[0], n)
            loss = loss + 0.5 * nn.functional.cross_entropy(heads.where(h[:, -n:]).flatten(0, 1), where.flatten())
    out["loss"] = loss
    out["obj_acc"] = ((heads.objects(cls) > 0).float() == obj_y).all(dim=1).float().mean()
    return out


def pretrain_image_encoder(out_dir: str, steps: int = 1500, batch: int = 64, pool: int = 4000, lr: float = 2e-3,
                           seed: int = 0, progress: bool = True, echo=print, reporter=None) -> PretrainResult:
    """Train the tiny ViT on rendered scenes (see the module docstring) and save it to ``out_dir``."""
    from transformers import ViTImageProcessorPil as ViTImageProcessor
    from transformers import ViTModel

    t0 = time.time()
    torch.manual_seed(seed)
    x_all, patch_all, obj_all, cnt_all = _render_pool(pool, seed, progress and reporter is None)
    model = ViTModel(vit_config(), add_pooling_layer=False)
    hidden = model.config.hidden_size
    heads = _Heads(hidden, obj_all.shape[1], 2, synth.N_OBJECT_CLASSES, n_patches=patch_all.shape[1])
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, steps, max(1, steps // 20)))
    gen = torch.Generator().manual_seed(seed)
    bar = _bar(steps, "pretraining image encoder (ViT)", progress, reporter)
    model.train()
    ema = {}
    n_val = min(512, pool // 8)
    for step in range(steps):
        idx = torch.randint(n_val, pool, (batch,), generator=gen)
        out = _encoder_step(model, heads, x_all[idx], patch_all[idx], obj_all[idx], cnt_all[idx])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        for k in ("loss", "patch_acc", "obj_acc"):
            v = float(out[k].detach())
            ema[k] = 0.95 * ema.get(k, v) + 0.05 * v
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{ema['loss']:.3f}", patch_acc=f"{ema['patch_acc']:.2f}", objects_acc=f"{ema['obj_acc']:.2f}")
    bar.close()
    model.eval()
    with torch.no_grad():
        out = _encoder_step(model, heads, x_all[:n_val], patch_all[:n_val], obj_all[:n_val], cnt_all[:n_val])
    metrics = {"held_out_patch_accuracy": float(out["patch_acc"]), "held_out_all_objects_exact": float(out["obj_acc"]),
               "final_loss": float(out["loss"])}
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    ViTImageProcessor(do_resize=True, size={"height": synth.IMAGE_SIZE, "width": synth.IMAGE_SIZE}, resample=2,
                      do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(out_dir)
    secs = time.time() - t0
    echo(f"image encoder: {steps} steps in {secs:.0f}s; held-out per-patch accuracy "
         f"{metrics['held_out_patch_accuracy']:.2f}, all objects right {metrics['held_out_all_objects_exact']:.2f}")
    return PretrainResult(out_dir, steps, secs, metrics)


# --------------------------------------------------------------------------------------- audio


AUDIO_MEL_BINS = 32
AUDIO_FRAMES = 64


def ast_config(hidden: int = 128, layers: int = 3, heads: int = 4):
    from transformers import ASTConfig

    return ASTConfig(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     num_mel_bins=AUDIO_MEL_BINS, max_length=AUDIO_FRAMES, patch_size=8, frequency_stride=8, time_stride=8,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def clip_targets(clip: synth.Clip) -> tuple[np.ndarray, int]:
    multi = np.zeros(len(synth.PITCHES) * len(synth.TIMBRES) * len(synth.LENGTHS), dtype=np.float32)
    for t in clip.tones:
        multi[(list(synth.PITCHES).index(t.pitch) * len(synth.TIMBRES) + synth.TIMBRES.index(t.timbre)) * len(synth.LENGTHS)
              + list(synth.LENGTHS).index(t.length)] = 1
    return multi, len(clip.tones) - 1


def audio_features(wav: np.ndarray) -> torch.Tensor:
    """The AST input of the data pipeline (:func:`scaling.data.audio.ast_features`) at the demo's sizes."""
    from scaling.common.media import AST_MEAN, AST_STD
    from scaling.data.audio import ast_features

    return ast_features(wav, AUDIO_MEL_BINS, AUDIO_FRAMES, AST_MEAN, AST_STD, synth.SAMPLE_RATE).float()


def pretrain_audio_encoder(out_dir: str, steps: int = 600, batch: int = 64, pool: int = 3000, lr: float = 1e-3,
                           seed: int = 0, progress: bool = True, echo=print, reporter=None) -> PretrainResult:
    """Train the tiny AST on rendered tone clips (multi-label + count from [CLS]) and save it."""
    from tqdm import tqdm
    from transformers import ASTFeatureExtractor, ASTModel

    from scaling.common.media import AST_MEAN, AST_STD

    t0 = time.time()
    torch.manual_seed(seed)
    rng = random.Random(f"demo-audio-pretraining:{seed}")
    xs, objs, cnts = [], [], []
    for _ in tqdm(range(pool), desc="rendering audio pretraining clips", unit="clip", disable=not progress or reporter is not None,
                  dynamic_ncols=True, leave=False):
        clip = synth.sample_clip(rng)
        xs.append(audio_features(synth.render_clip(clip, rng)))
        m, c = clip_targets(clip)
        objs.append(m)
        cnts.append(c)
    x_all, obj_all, cnt_all = torch.stack(xs), torch.from_numpy(np.stack(objs)), torch.tensor(cnts)
    model = ASTModel(ast_config())
    heads = _Heads(model.config.hidden_size, obj_all.shape[1], 2, 1)
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, steps, max(1, steps // 20)))
    gen = torch.Generator().manual_seed(seed)
    n_val = min(256, pool // 8)
    bar = _bar(steps, "pretraining audio encoder (AST)", progress, reporter)
    ema = {}
    model.train()
    for step in range(steps):
        idx = torch.randint(n_val, pool, (batch,), generator=gen)
        out = _encoder_step(model, heads, x_all[idx], None, obj_all[idx], cnt_all[idx])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        for k in ("loss", "obj_acc"):
            v = float(out[k].detach())
            ema[k] = 0.95 * ema.get(k, v) + 0.05 * v
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{ema['loss']:.3f}", objects_acc=f"{ema['obj_acc']:.2f}")
    bar.close()
    model.eval()
    with torch.no_grad():
        out = _encoder_step(model, heads, x_all[:n_val], None, obj_all[:n_val], cnt_all[:n_val])
    metrics = {"held_out_all_tones_exact": float(out["obj_acc"]), "final_loss": float(out["loss"])}
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    ASTFeatureExtractor(num_mel_bins=AUDIO_MEL_BINS, max_length=AUDIO_FRAMES, sampling_rate=synth.SAMPLE_RATE,
                        mean=AST_MEAN, std=AST_STD).save_pretrained(out_dir)
    secs = time.time() - t0
    echo(f"audio encoder: {steps} steps in {secs:.0f}s; held-out all tones right {metrics['held_out_all_tones_exact']:.2f}")
    return PretrainResult(out_dir, steps, secs, metrics)


# --------------------------------------------------------------------------------------- LM


def lm_config(vocab: int, tokenizer, hidden: int = 128, layers: int = 2, ffn: int = 512, heads: int = 4):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=heads, vocab_size=vocab, max_position_embeddings=256,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)


def _lm_batch(tokenizer, docs: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = [tokenizer(d)["input_ids"] + [tokenizer.eos_token_id] for d in docs]
    width = max(len(i) for i in ids)
    x = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    m = torch.zeros_like(x)
    for r, i in enumerate(ids):
        x[r, : len(i)] = torch.tensor(i)
        m[r, : len(i)] = 1
    labels = x.masked_fill(m == 0, -100)
    labels[:, 0] = -100  # BOS is given, never predicted
    return x, m, labels


def pretrain_lm(out_dir: str, steps: int = 1000, batch: int = 64, lr: float = 2e-3, seed: int = 0, audio: bool = True,
                progress: bool = True, echo=print, reporter=None) -> PretrainResult:
    """Train the tiny LLaMA on text-only scene documents and save it (+ its word-level tokenizer)."""
    from transformers import LlamaForCausalLM

    from scaling.models.tiny import word_tokenizer

    t0 = time.time()
    torch.manual_seed(seed)
    tokenizer = word_tokenizer(synth.vocabulary(audio=audio))
    model = LlamaForCausalLM(lm_config(len(tokenizer), tokenizer))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, steps, max(1, steps // 20)))
    rng = random.Random(f"demo-lm-pretraining:{seed}")
    held_rng = random.Random(f"demo-lm-held-out:{seed}")
    held = _lm_batch(tokenizer, [synth.lm_document(held_rng, audio) for _ in range(256)])
    bar = _bar(steps, "pretraining language model (LLaMA)", progress, reporter)
    ema = None
    model.train()
    for step in range(steps):
        x, m, y = _lm_batch(tokenizer, [synth.lm_document(rng, audio) for _ in range(batch)])
        loss = model(input_ids=x, attention_mask=m, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        v = float(loss.detach())
        ema = v if ema is None else 0.95 * ema + 0.05 * v
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{ema:.3f}")
    bar.close()
    model.eval()
    with torch.no_grad():
        held_loss = float(model(input_ids=held[0], attention_mask=held[1], labels=held[2]).loss)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    secs = time.time() - t0
    echo(f"language model: {steps} steps in {secs:.0f}s; held-out loss {held_loss:.3f} "
         f"(perplexity {math.exp(held_loss):.2f}, vocabulary {len(tokenizer)})")
    return PretrainResult(out_dir, steps, secs, {"held_out_loss": held_loss, "vocab": len(tokenizer)})
