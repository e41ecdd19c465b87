"""``scaling plan``: how a run will fit and how long it will take, before it queues.

Modules: ``gpus`` (the GPU table, as data), ``profile`` (the model's counted facts at real shapes, on meta /
fake tensors), ``measure`` (a peak-live-bytes tracker of a fake training step: the check of the memory model),
``memory`` (per-GPU parts), ``timing`` (step time, GPU-hours), ``search`` (the recommendation), ``launch`` (the
launch line), ``render`` (the text table), ``planner`` (``make_plan``: all of it as data).
"""
