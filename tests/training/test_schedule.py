"""The DePALM C.3 schedule: linear warm-up over 20% from lr·1e-4 to lr, then cosine down to lr·1e-4."""

import math

import pytest
import torch

from scaling.training.schedule import build_scheduler, lr_factor


def test_endpoints_and_warmup_are_the_recipe():
    total = 100
    assert lr_factor(0, total) == pytest.approx(1e-4)
    assert lr_factor(20, total) == pytest.approx(1.0)  # end of the 20% warm-up
    assert lr_factor(10, total) == pytest.approx(1e-4 + (1 - 1e-4) * 0.5)  # linear
    assert lr_factor(99, total) == pytest.approx(1e-4)  # last step: back to the minimum
    mid = 20 + (99 - 20) / 2
    assert lr_factor(int(mid), total) == pytest.approx(1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * (int(mid) - 20) / 79)))


def test_monotonic_up_then_down():
    values = [lr_factor(s, 50) for s in range(50)]
    peak = values.index(max(values))
    assert peak == 10
    assert all(a <= b for a, b in zip(values[:peak], values[1 : peak + 1]))
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1 :]))


def test_one_step_and_no_warmup():
    assert lr_factor(0, 1) == pytest.approx(1.0)  # one step: no room for a warm-up
    assert lr_factor(0, 10, warmup_fraction=0.0) == pytest.approx(1.0)


def test_scheduler_drives_the_optimizer():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=8e-4)
    sched = build_scheduler(opt, 10)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(8e-4 * 1e-4)
    assert max(seen) == pytest.approx(8e-4)
    assert seen[-1] == pytest.approx(8e-4 * 1e-4)
    state = sched.state_dict()
    assert state["last_epoch"] == 10
