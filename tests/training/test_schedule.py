"""The DePALM C.3 schedule: linear warm-up over 20% from lr·1e-4 to lr, then cosine down to lr·1e-4."""

import math

import pytest
import torch

from scaling.training.schedule import build_scheduler, fraction_factor, lr_factor, schedule_factor


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
    sched = build_scheduler(opt, 10, unit="optimizer_step")
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


def _official_rate(epoch_time: float, epochs: float, warmup_fract: float = 0.2, lr_min_fact: float = 1e-4) -> float:
    """The official DePALM LinearWarmupCosineAnnealingLR factor at a time in epochs (written from its formula)."""
    warm = epochs * warmup_fract
    if epoch_time < warm:
        return lr_min_fact + (1 - lr_min_fact) * epoch_time / warm
    cur = (epoch_time - warm) / (epochs - warm)
    return lr_min_fact + (1 - lr_min_fact) * (1 + math.cos(math.pi * cur)) / 2


@pytest.mark.parametrize("accumulation", [1, 2, 4])
def test_micro_batch_clock_is_the_official_per_micro_batch_schedule(accumulation):
    """The official trainer calls scheduler.step(epoch + i/len(loader)) after every micro batch and an optimizer
    step happens after micro batch i = s*A + A - 1: the rate that step applies is the schedule at that time."""
    epochs, micro_per_epoch = 3, 40
    total_steps = epochs * micro_per_epoch // accumulation
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=4e-4)
    sched = build_scheduler(opt, total_steps, 0.2, 1e-4, accumulation, "micro_batch")
    for s in range(total_steps):
        i = s * accumulation + accumulation - 1  # the step's last micro batch, counted over the whole run
        epoch, i_in_epoch = divmod(i, micro_per_epoch)
        expected = 4e-4 * _official_rate(epoch + i_in_epoch / micro_per_epoch, epochs)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9, abs=1e-15), s
        assert schedule_factor(s, total_steps, 0.2, 1e-4, accumulation) == pytest.approx(expected / 4e-4, rel=1e-9)
        opt.step()
        sched.step()
    # the two clocks differ (that is why both exist): optimizer_step ends exactly at the minimum
    assert schedule_factor(total_steps - 1, total_steps, unit="optimizer_step") == pytest.approx(1e-4)
    assert schedule_factor(total_steps - 1, total_steps, accumulation=accumulation) > 1e-4
    assert fraction_factor(0.2) == pytest.approx(1.0) and fraction_factor(1.0) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="schedule unit"):
        schedule_factor(0, 10, unit="epoch")
