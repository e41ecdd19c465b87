"""The planner's model-state figures against DeepSpeed's own estimators, where those apply.

DeepSpeed's ``estimate_zero2_model_states_mem_needs`` / ``estimate_zero3_model_states_mem_needs`` assume every
parameter trains. They apply to the interface (the trainable parameters) under ZeRO-2, and to a model whose
parameters all train under ZeRO-3 (then the planner's frozen part is empty). The frozen LLM under ZeRO-3 is the
planner's own figure: 16-bit weights partitioned over the ranks, no gradients, no optimizer states.
"""

from __future__ import annotations

import dataclasses

import pytest

from scaling.plan.memory import Setting, model_states

pytest.importorskip("deepspeed")
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs  # noqa: E402
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs  # noqa: E402


@pytest.mark.parametrize("nodes,gpn", [(1, 1), (1, 8), (2, 8), (4, 4)])
@pytest.mark.parametrize("offload", [False, True])
def test_zero2_trainable_states_match_deepspeed(nodes, gpn, offload, make_profile):
    p = make_profile(trainable=17_888_256)
    world = nodes * gpn
    states = model_states(p, Setting("bf16", 8, 1, 2, offload, False), world, gpn)
    cpu, gpu = estimate_zero2_model_states_mem_needs(p.trainable_params, gpn, nodes, cpu_offload=offload)
    assert states["gpu"]["trainable states"] == gpu
    if offload:
        assert states["cpu"]["trainable states"] == cpu
    assert states["gpu"]["frozen weights"] == 2 * p.frozen_params  # ZeRO-2 leaves the frozen LLM whole on every rank


@pytest.mark.parametrize("nodes,gpn", [(1, 8), (2, 8), (4, 4)])
@pytest.mark.parametrize("offload", [False, True])
def test_zero3_states_match_deepspeed_when_everything_trains(nodes, gpn, offload, make_profile):
    p = dataclasses.replace(make_profile(trainable=6_700_000_000), frozen_params=0)
    world = nodes * gpn
    states = model_states(p, Setting("bf16", 8, 1, 3, offload, False), world, gpn)
    cpu, gpu, largest = estimate_zero3_model_states_mem_needs(p.trainable_params, p.largest_layer_params, gpn, nodes,
                                                               cpu_offload=offload, cpu_offload_params=offload)
    assert states["gpu"]["frozen weights"] + states["gpu"]["trainable states"] == gpu
    if offload:
        assert states["cpu"]["trainable states"] == int(cpu)


def test_zero3_partitions_the_frozen_llm_without_states(make_profile):
    p = make_profile()
    s = model_states(p, Setting("bf16", 8, 1, 3, False, False), 16, 8)
    assert s["gpu"]["frozen weights"] == 4 * p.largest_layer_params + 2 * p.frozen_params // 16
    assert s["gpu"]["trainable states"] == int(18 * p.trainable_params / 16)
