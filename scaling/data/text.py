"""Text: prompt templates per task and tokenisation of prompt + answer with safe truncation.

Templates (``data.prompt_template`` overrides; fields ``{question}`` and ``{prompt}`` of the sample):

* caption (image, audio, video): ``"{prompt}"``: empty for the converted caption datasets, so the
  model sees only BOS + the perceptual tokens and generates the caption (as eP-ALM does). A fixed
  prefix such as "A picture of" would have to be stripped from generated captions before CIDEr and
  does not help a frozen LM that sees the image tokens anyway; set one via ``data.prompt_template``.
* vqa / gqa / videoqa: ``"{question}\n\nAnswer:"``: the official DePALM instruction
  (``config/dataset/vqa.yaml`` ``insert_instruction: 1``, ``"{prompt}\n\nAnswer:\n"``, which its data
  code strips of the trailing newline; the space it then adds before the answer is the answer's own
  leading space here). eP-ALM's ``"{question}?</a>"`` and the old ``"{question}</a>"`` stay available
  through ``data.prompt_template``.

Answer token and answer prompt (``data.answer_token`` / ``data.answer_prompt``; the official code sets
``</a>`` and ``"Answer: "`` for OPT in ``config/llm/opt.yaml``): an empty prompt becomes the answer
prompt; a non-empty prompt not ending in a space or newline gets one; then the answer token follows,
and the answer comes right after it with no space. The token is registered as a special token of
the tokenizer when it is not one already (one id; generated text drops it).

Training sequence: ``[prompt tokens (with the tokenizer's BOS)] [answer tokens] [EOS]``; labels are
the answer tokens and EOS, -100 elsewhere (``train.loss_on=answer``), or every token
(``train.loss_on=all``, eP-ALM: the prompt is a target too; padding is masked by the collator). When it exceeds ``max_text_len`` the prompt is truncated
first (keeping its first token and its last separator tokens), then the answer's tail (EOS is only
kept with a complete answer); the answer always keeps at least one token.
"""

from __future__ import annotations

from typing import Any

from scaling.config.tasks import TASKS

VQA_SEPARATOR = "</a>"  # eP-ALM's and the official DePALM OPT config's answer token
DEFAULT_TEMPLATES = {name: task.template for name, task in TASKS.items()}


def template_for(task: str, override: str | None = None) -> str:
    if override is not None:
        return override
    return DEFAULT_TEMPLATES.get(task, "{prompt}")


class _Fields(dict):
    def __missing__(self, key):  # unknown {field} → empty
        return ""


def format_prompt(template: str, record: dict[str, Any], answer_token: str | None = None,
                  answer_prompt: str | None = None) -> str:
    """Fill ``template`` with the sample's fields (question falls back to prompt and vice versa), then
    apply the official answer prompt / answer token rule (see the module docstring)."""
    question = record.get("question") or record.get("prompt") or ""
    fields = _Fields({k: v for k, v in record.items() if isinstance(v, (str, int, float))})
    fields["question"] = question
    fields["prompt"] = record.get("prompt") or ""
    text = template.format_map(fields)
    if answer_prompt and not text.strip():
        text += answer_prompt
    if answer_token and not text.endswith(answer_token):  # a template may place it itself (eP-ALM: "{question}?</a>")
        if text and text[-1] not in (" ", "\n"):
            text += " "
        text += answer_token
    return text


class TextEncoder:
    """Tokenises prompts and answers for one tokenizer (the decisions cached once)."""

    def __init__(self, tokenizer, max_text_len: int = 64, template: str = "{prompt}", answer_token: str | None = None,
                 answer_prompt: str | None = None, loss_on: str = "answer"):
        if loss_on not in ("answer", "all"):
            raise ValueError(f"unknown loss_on {loss_on!r}: answer or all")
        self.tok = tokenizer
        self.max_len = max_text_len
        self.template = template
        self.answer_token, self.answer_prompt, self.loss_on = answer_token or None, answer_prompt or None, loss_on
        if self.answer_token and len(tokenizer(self.answer_token, add_special_tokens=False)["input_ids"]) != 1:
            tokenizer.add_tokens([self.answer_token], special_tokens=True)
        self.eos = tokenizer.eos_token_id
        if self.eos is None:
            raise ValueError("the tokenizer has no EOS token; answers must end with one")
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        bos = tokenizer.bos_token_id
        self.bos = bos if bos is not None else self.eos
        # SentencePiece-style tokenizers mark word starts themselves ("▁yes"); byte-level BPE needs a
        # leading space for the answer to be tokenised as a word (" yes" → "Ġyes").
        probe = tokenizer("yes", add_special_tokens=False)["input_ids"]
        first = tokenizer.convert_ids_to_tokens(probe[:1])[0] if probe else ""
        self.answer_prefix = "" if (first or "").startswith("▁") or self.answer_token else " "
        with_special = tokenizer("yes", add_special_tokens=True)["input_ids"]
        self.adds_bos = bool(with_special) and with_special[0] == self.bos and bos is not None
        suffix = template.rsplit("}", 1)[1] if "}" in template else ""
        if self.answer_token and not suffix.endswith(self.answer_token):
            suffix += (" " if not suffix or suffix[-1] not in (" ", "\n") else "") + self.answer_token
        self.n_suffix = len(tokenizer(suffix, add_special_tokens=False)["input_ids"]) if suffix else 0

    def prompt_ids(self, record: dict[str, Any]) -> list[int]:
        text = format_prompt(self.template, record, self.answer_token, self.answer_prompt)
        ids = list(self.tok(text, add_special_tokens=True)["input_ids"])
        if not self.adds_bos or not ids:
            ids = [self.bos] + ids  # every sequence starts with BOS (EOS for tokenizers without one)
        return ids

    def answer_ids(self, answer: str) -> list[int]:
        answer = answer.strip()
        if not answer:
            return []
        return list(self.tok(self.answer_prefix + answer, add_special_tokens=False)["input_ids"])

    def truncate_prompt(self, ids: list[int], budget: int) -> list[int]:
        """Keep the first token and the template's trailing separator; cut the middle-end."""
        budget = max(1, budget)
        if len(ids) <= budget:
            return ids
        tail = min(self.n_suffix, budget - 1, len(ids) - 1)
        head = budget - tail
        return ids[:head] + (ids[len(ids) - tail :] if tail else [])

    def train_example(self, record: dict[str, Any], answer: str) -> tuple[list[int], list[int]]:
        """(input_ids, labels) for prompt + answer + EOS within ``max_text_len``."""
        prompt = self.prompt_ids(record)
        target = self.answer_ids(answer) + [self.eos]
        room = self.max_len
        if len(prompt) + len(target) > room:
            prompt = self.truncate_prompt(prompt, room - len(target))
            if len(prompt) + len(target) > room:
                keep = max(1, room - len(prompt))
                target = target[:keep]  # answer too long: its tail (and EOS) go
        ids = prompt + target
        labels = list(ids) if self.loss_on == "all" else [-100] * len(prompt) + target
        return ids, labels

    def generation_prompt(self, record: dict[str, Any]) -> list[int]:
        """Prompt ids for generation (room is left for nothing but the prompt: truncated to max_len)."""
        return self.truncate_prompt(self.prompt_ids(record), self.max_len)


def text_encoder_for(cfg, tokenizer, task: str) -> TextEncoder:
    """The :class:`TextEncoder` of a run config (``data.*`` templates, ``train.loss_on``)."""
    data = cfg.data
    return TextEncoder(tokenizer, data.max_text_len, template_for(task, data.prompt_template), data.answer_token,
                       data.answer_prompt, cfg.train.loss_on)
