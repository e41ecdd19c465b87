"""scaling.training: the trainer (one loop for CPU, DDP and DeepSpeed ZeRO-2/3), checkpoints, adapters.

Modules, one purpose each: ``distributed`` (rank/world size from any launcher, process groups),
``validate`` (everything checkable before a model loads), ``ds_config`` (DeepSpeed JSON ↔ training
config), ``optim`` (AdamW over trainable parameters), ``schedule`` (warm-up + cosine), ``strategy``
(torch/DDP vs DeepSpeed: the only place that knows how a step is distributed), ``recompute``
(gradient checkpointing of the frozen layers), ``loop`` (:class:`~scaling.training.loop.Trainer`: its builders
and the loop; ``state``, ``window``, ``rundir``, ``resume``, ``saver``, ``evaluator``, ``samples``, ``summary``
hold what the loop calls), ``checkpoint``
(atomic checkpoints, RNG states, adapters, :func:`~scaling.training.checkpoint.load_adapter`),
``fingerprint`` (backbone fingerprints), ``signals`` (preemption), ``monitor`` (TensorBoard, logs,
MFU), ``convert`` (adapter/peft/consolidated, inspect), ``loaders`` (the data protocol; the synthetic
task is a data source of :mod:`scaling.data.sources`). See docs/training.md.
"""
