"""The tasks, listed once: ``data.task``'s valid values, the CLI's ``--task`` choices, the shards' task
field, the default prompt template of each and the metric that ranks runs of it.

A new task is a new entry here (plus its scoring in :mod:`scaling.evaluation.metrics`); every list of
tasks (the config's check, ``scaling eval/score/data convert --task``, ``configs/generate.py``, the
docs' tables, the tests) reads :data:`TASKS`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

VQA_INSTRUCTION = "{question}\n\nAnswer:"  # the official DePALM config/dataset/vqa.yaml instruction


@dataclasses.dataclass(frozen=True)
class Task:
    about: str  # what the model generates and how it is scored
    metric: str  # the headline metric (reports rank by it; the default eval.metric of training)
    template: str  # default prompt template (data.prompt_template overrides it; scaling/data/text.py)


TASKS: dict[str, Task] = {
    "caption": Task("a caption of the image, clip or video; BLEU, METEOR, ROUGE-L, CIDEr, SPICE (pycocoevalcap)",
                    "CIDEr", "{prompt}"),
    "vqa": Task("a short answer to a question about an image; VQA accuracy over the 10 human answers", "accuracy",
                VQA_INSTRUCTION),
    "gqa": Task("a short answer to a question about an image; normalised exact match", "accuracy", VQA_INSTRUCTION),
    "videoqa": Task("a short answer to a question about a clip; normalised exact match", "accuracy", VQA_INSTRUCTION),
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
#: the type of ``data.task`` (its check names the valid values)
TaskName = Literal[TASK_NAMES]  # type: ignore[valid-type]


def metric_of(task: str) -> str:
    """The headline metric of ``task`` (CIDEr for captions, accuracy for the QA tasks)."""
    return TASKS[task].metric
