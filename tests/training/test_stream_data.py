"""The trainer on the real data pipeline (scaling.data shards, not the toy): exact mid-epoch resume."""

import pytest
import torch

from scaling.config import load_config
from scaling.training import checkpoint as ckpt
from scaling.training.loop import read_log, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from scaling.data.synthetic import write_shards
    from scaling.models.tiny import save_tiny_encoder, save_tiny_llm

    root = tmp_path_factory.mktemp("stream")
    shards = str(root / "shards")
    write_shards(shards, [30, 25, 13], split="train")  # uneven shards on purpose
    write_shards(shards, [10, 7], split="val")
    return root, save_tiny_llm(str(root / "llm"), "llama"), save_tiny_encoder(str(root / "vit"), "vit"), shards


def overrides(out, llm, vit, shards):
    return [
        "model.method=depalm", f"model.llm={llm}", f"model.encoder={vit}", "model.frozen_dtype=fp32",
        "model.map.d_embed=32", "model.map.n_queries=4", f"data.train={shards}", f"data.val={shards}#val",
        "data.num_workers=0", f"train.output_dir={out}", "train.max_steps=6", "train.global_batch=16",
        "train.micro_batch=8", "train.precision=fp32", "train.save_every=3", "train.log_every=1",
        "train.progress_bar=false", "train.tensorboard=false", "train.log_samples=2", "train.eval_every=3",
        "eval.batch_size=4", "eval.max_new_tokens=4",
    ]


def test_stream_loader_resume_is_exact(setup):
    root, llm, vit, shards = setup
    full = train(load_config(None, overrides(str(root / "full"), llm, vit, shards)))

    class Killed(Exception):
        pass

    def kill(step, _):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train(load_config(None, overrides(str(root / "killed"), llm, vit, shards)), on_step=kill)
    resumed = train(load_config(None, overrides(str(root / "killed"), llm, vit, shards)))
    a = {r["step"]: r for r in read_log(full.output_dir)}
    b = {r["step"]: r for r in read_log(resumed.output_dir)}
    assert sorted(a) == sorted(b) == list(range(1, 7))  # 68 samples / 16 = 4 steps per epoch: crosses an epoch
    for s in range(1, 7):
        assert a[s]["loss"] == pytest.approx(b[s]["loss"], rel=1e-6), s
    wa, _ = ckpt.read_adapter(full.output_dir)
    wb, _ = ckpt.read_adapter(resumed.output_dir)
    assert all((wa[k] - wb[k]).abs().max() <= 1e-6 for k in wa)
    assert [r for r in read_log(full.output_dir, "eval") if "val/loss" in r]


def test_resume_with_two_dataloader_workers_is_exact_at_a_point_that_splits_the_workers_shares(setup):
    # accumulation 1: the checkpoint of step 3 is after 3 batches, 2 from worker 0 and 1 from worker 1 (the workers
    # take turns); the kill at step 5 makes the resumed run replay steps 4-5 and cross the epoch boundary (8 steps)
    root, llm, vit, shards = setup
    extra = ["data.num_workers=2", "train.global_batch=8", "train.max_steps=10", "train.eval_every=null",
             "train.log_samples=0"]
    full = train(load_config(None, overrides(str(root / "full2"), llm, vit, shards) + extra))

    class Killed(Exception):
        pass

    def kill(step, _):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train(load_config(None, overrides(str(root / "killed2"), llm, vit, shards) + extra), on_step=kill)
    assert ckpt.find_latest(str(root / "killed2")).endswith("step_000003")
    resumed = train(load_config(None, overrides(str(root / "killed2"), llm, vit, shards) + extra))
    a = {r["step"]: r["loss"] for r in read_log(full.output_dir)}
    b = {r["step"]: r["loss"] for r in read_log(resumed.output_dir)}
    assert sorted(a) == sorted(b) == list(range(1, 11))
    assert [a[s] for s in range(4, 11)] == [b[s] for s in range(4, 11)]  # bit-identical from the very next step
    wa, _ = ckpt.read_adapter(full.output_dir)
    wb, _ = ckpt.read_adapter(resumed.output_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
