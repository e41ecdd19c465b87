"""Format versions of stored configs, and the override keys that keep an older one's behaviour.

Every config ``scaling`` writes (``RUN/config.yaml``, a checkpoint's and an adapter's stored config) carries
``config_format`` (:data:`CONFIG_FORMAT`). Configs written before the stamp existed are told apart by their
keys (:func:`stored_format`):

* **1**: before the fidelity changes of issue 14 (no ``model.learned_positions``);
* **2**: issue 14's official defaults (``model.learned_positions`` present, no stamp);
* **3**: layer-0 tokens without positions on OPT/GPT-2 (issue 25); stamped.

A stored config of an older format gets the override keys of :data:`OLD_BEHAVIOUR` that reproduce what it
computed then (each only where the stored config does not hold the key itself, or holds the value whose
meaning changed), with a one-line notice (:func:`upgrade_format`). A config file the user passes is always
read as the current format.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

CONFIG_FORMAT = 3

VQA_TASKS = ("vqa", "gqa", "videoqa")

# (format that changed it, dotted key, the value that keeps the older behaviour, methods it concerns (None: all),
#  why). Applied to a stored config of an earlier format when it lacks the key.
OLD_BEHAVIOUR: tuple[tuple[int, str, Any, tuple[str, ...] | None, str], ...] = (
    (2, "model.extract.norm", "none", None, "the encoder's final norm on the levels"),
    (2, "model.norm_eps", "format-1", None, "the blocks' norm eps 1e-6 (RMSNorm) / 1e-5 (LayerNorm)"),
    (2, "model.learned_positions", "sequence", None, "learned positions for every token"),
    (2, "model.map.norm", "rmsnorm", ("depalm", "depalm-qp-inner"), "the QPMapper's output RMSNorm"),
    (2, "model.inject.token_norm", False, ("depalm-qp-inner",), "the per-layer RMSNorm of QP-inner"),
    (2, "model.inject.bias_tuning", False, ("depalm-qp-inner",), "the per-layer bias tuner of QP-inner"),
    (2, "model.inject.level_map", "depalm", ("epalm", "epalm-lin", "epalm-pt", "epalm-ada"), "eP-ALM's level map"),
    (2, "model.map.avgpool", "tokens", ("depalm-r-avgpool",), "channel pooling"),
    (2, "model.map.qp_activation", "gelu", ("depalm-r-qpmapper",), "the FFN activation"),
    (2, "model.map.proj_in", True, ("depalm-r-rand",), "R-rand's input projection"),
    (2, "model.map.rounding", "floor", ("depalm-r-rand",), "R-rand's rounding"),
    (2, "model.map.eval_full", False, ("depalm-r-rand",), "R-rand's evaluation tokens"),
    (2, "model.inject.attn_out_proj", True, ("depalm-c-attn",), "the c-attn output projection"),
    (2, "model.inject.out_norm", "llm", ("depalm-c-attn",), "the c-attn norm placement"),
    (2, "model.inject.dropout", 0.1, ("depalm-c-attn",), "the c-attn dropout"),
    (2, "model.map.proj_out", False, ("depalm-c-attn",), "the c-attn perceptual projection"),
    (2, "model.finetune.n_prompt", 0, ("depalm-c-attn",), "c-attn's 16 prompt tokens"),
    (2, "train.adam_eps", 1e-8, None, "AdamW eps 1e-4"),
    (2, "train.schedule_unit", "optimizer_step", None, "the per-micro-batch schedule clock"),
    (2, "eval.stop_strings", ["\n"], None, "no cut at a newline"),
    (2, "data.randaugment_style", "torchvision", None, "the official RandAugment"),
    # keys that existed in format 1 with another default: a stored config holds them; a resumed run's own config
    # file (written for format 1) may not
    (2, "train.decay_1d", False, None, "weight decay on 1-D parameters"),
    (2, "eval.num_beams", 1, None, "3 beams"),
    (2, "eval.max_new_tokens", 20, None, "50 new tokens"),
    (2, "data.randaugment_m", 9, None, "magnitude 7 of 10"),
    # format 3: first-layer tokens on OPT/GPT-2 get no position (learned_positions prompt); format 2 stored "input"
    (3, "model.learned_positions", "input", None, "layer-0 tokens without positions"),
)
# keys whose value kept its name but changed its meaning: (format, key, stored value, value then, condition)
OLD_MEANING: tuple[tuple[int, str, Any, Any, Callable[[Mapping[str, Any]], bool]], ...] = (
    (2, "data.prompt_template", None, "{question}</a>",
     lambda cfg: (cfg.get("data") or {}).get("task", "caption") in VQA_TASKS),
)


def _get(data: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def stored_format(data: Mapping[str, Any]) -> int:
    """The format of a stored config: its ``config_format`` stamp, else 2 or 1 from its keys."""
    stamp = data.get("config_format")
    if stamp is not None:
        return int(stamp)
    return 2 if _get(data, "model.learned_positions")[0] else 1


def format_overrides(data: Mapping[str, Any], resume: bool = False) -> list[str]:
    """``key=value`` overrides (YAML values) that make a stored config of an older format compute as it did: the
    keys it lacks. ``resume``: for a run resumed with its own config file, the keys it holds too (their stored value)."""
    import json

    version = stored_format(data)
    method = (data.get("model") or {}).get("method")
    out, seen = [], set()
    for changed_in, key, old, methods, _ in OLD_BEHAVIOUR:
        if version >= changed_in or (methods is not None and method not in methods) or key in seen:
            continue  # a key changed twice: the entry of the earliest change is the older behaviour
        seen.add(key)
        present, value = _get(data, key)
        if not present:
            out.append(f"{key}={json.dumps(old)}")
        elif resume:
            out.append(f"{key}={json.dumps(value)}")
    for changed_in, key, stored, old, applies in OLD_MEANING:
        present, value = _get(data, key)
        if version < changed_in and (not present or value == stored) and applies(data):
            out.append(f"{key}={json.dumps(old)}")
        elif version < changed_in and resume and present and applies(data):
            out.append(f"{key}={json.dumps(value)}")
    return out


def upgrade_format(data: Mapping[str, Any], note: Callable[[str], None] | None = None,
                   what: str = "the stored config") -> dict[str, Any]:
    """``data`` (a stored config) with the override keys of its format applied and stamped with :data:`CONFIG_FORMAT`;
    ``note(line)`` says which keys were applied (one line)."""
    import copy

    from scaling.config.base import apply_overrides

    version = stored_format(data)
    extra = format_overrides(data)
    out = copy.deepcopy(dict(data))  # apply_overrides writes into nested sections: the caller's stay as they are
    out = apply_overrides(out, extra) if extra else out
    out["config_format"] = CONFIG_FORMAT
    if extra and note:
        note(f"{what} has config format {version} (current {CONFIG_FORMAT}): applied {' '.join(extra)} to keep the "
             f"behaviour it was trained with (docs/fidelity.md, 'Stored configs of earlier versions')")
    return out
