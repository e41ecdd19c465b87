"""Fault tolerance of the loop: evaluation after the save, a failing evaluation does not end the run."""

import io
import json
import os
import random
import signal

from scaling.config import load_config
from scaling.data.toy import tiny_run_overrides
from scaling.training import checkpoint as ckpt
from scaling.training.loop import read_log, train


def run(tmp_path, name, steps, *extra, **kw):
    cfg = load_config(None, tiny_run_overrides(str(tmp_path / name), steps) + list(extra))
    return train(cfg, **kw)


def test_the_checkpoint_is_saved_before_evaluating_and_a_failing_evaluation_does_not_end_training(tmp_path):
    seen = {}

    def evaluate_fn(model, step):
        seen[step] = ckpt.find_latest(str(tmp_path / "run"))
        if step == 2:
            raise ValueError("5 sample(s) have an empty reference list (e.g. ['a'])")
        return {"CIDEr": 0.25 * step}

    result = run(tmp_path, "run", 4, "train.save_every=2", "train.eval_every=2", evaluate_fn=evaluate_fn)
    assert result.exit_code == 0 and result.state.step == 4
    # each evaluation found its own step's checkpoint already written
    assert seen[2].endswith("step_000002") and seen[4].endswith("step_000004")
    summary = json.load(open(os.path.join(result.output_dir, "train_summary.json")))
    assert summary["finished"] and [f["step"] for f in summary["eval_failures"]] == [2]
    assert "empty reference list" in summary["eval_failures"][0]["error"]
    evals = read_log(result.output_dir, "eval")
    assert any(r["step"] == 2 and r.get("eval/failed") == 1.0 for r in evals)
    # the evaluation after the save is recorded in that checkpoint's state (a resume keeps the best)
    state = ckpt.read_json(os.path.join(seen[4], ckpt.STATE))
    assert state["last_metrics"]["CIDEr"] == 1.0 and state["best"]["step"] == 4


def test_the_eval_loader_skips_and_counts_samples_without_references(tmp_path):
    from scaling.data.shards import ShardSetWriter, sample_record, update_index
    from scaling.data.synthetic import make_image
    from scaling.models.tiny import word_tokenizer
    from scaling.training.loaders import build_loader

    d, rng, unscorable = str(tmp_path), random.Random(0), {1, 4, 7}
    writer = ShardSetWriter(os.path.join(d, "val-%06d.tar"), d, samples_per_shard=5)
    for i in range(10):
        img, color, shape = make_image(rng, 36)
        buf = io.BytesIO()
        img.save(buf, format="JPEG")
        answers = [] if i in unscorable else [f"a {color} {shape}"]
        writer.write(f"k{i:04d}", sample_record(f"id{i}", "caption", "x", "val", answers), {"jpg": buf.getvalue()})
    entries = writer.close()
    update_index(d, "val", {"task": "caption", "modality": "image", "num_samples": 10,
                            "shards": [e.__dict__ for e in entries]}, writer.samples)
    cfg = load_config(None, ["model.encoder=tiny-vit", f"data.val={d}", "eval.batch_size=4", "data.num_workers=0"])
    loader = build_loader(cfg, word_tokenizer(), "val", 0, 1, False)
    batches = list(loader)
    ids = [i for b in batches for i in b["ids"]]
    assert sorted(ids) == sorted(f"id{i}" for i in range(10) if i not in unscorable)
    assert all(all(refs) for b in batches for refs in b["answers"])
    assert loader.skipped == 3 and all("no reference answer" in k for k in loader.skipped_keys)


def _flip(path, at=None):
    data = bytearray(open(path, "rb").read())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


DAMAGE = {
    "flipped optimizer.pt": (lambda d: _flip(os.path.join(d, "optimizer.pt")), "optimizer.pt does not match its checksum"),
    "flipped adapter": (lambda d: _flip(os.path.join(d, ckpt.ADAPTER), at=-8), "adapter.safetensors does not match"),
    "truncated adapter": (lambda d: open(os.path.join(d, ckpt.ADAPTER), "r+b").truncate(100), "adapter.safetensors has 100 bytes"),
    "empty rng file": (lambda d: open(os.path.join(d, "rng_rank00000.pt"), "w").close(), "rng_rank00000.pt has 0 bytes"),
    "broken state": (lambda d: open(os.path.join(d, ckpt.STATE), "w").write("{\"step\": 4,"), "trainer_state.json"),
    "missing optimizer.pt": (lambda d: os.remove(os.path.join(d, "optimizer.pt")), "optimizer.pt is missing"),
}


def test_the_manifest_names_every_kind_of_damage(tmp_path):
    import shutil

    from scaling.training import manifest

    run(tmp_path, "run", 2, "train.save_every=2")
    src = ckpt.find_latest(str(tmp_path / "run"))
    assert os.path.isfile(os.path.join(src, manifest.MANIFEST)) and manifest.problems(src) == []
    for name, (damage, expected) in DAMAGE.items():
        copy = str(tmp_path / name.replace(" ", "_"))
        shutil.copytree(src, copy)
        damage(copy)
        found = manifest.problems(copy)
        assert any(expected in p for p in found), (name, found)
        os.remove(os.path.join(copy, manifest.MANIFEST))  # a checkpoint from before manifests: structural checks
        if name not in ("flipped optimizer.pt", "flipped adapter"):
            assert manifest.problems(copy), name


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one_and_resumes_exactly(tmp_path, capsys):
    import pytest

    from scaling.config import ConfigError

    extra = ("data.train=toy://colours?n=64", "train.save_every=2")
    full = run(tmp_path, "full", 6, *extra)

    def preempt_at_step_4(step, _info):  # the same 6-step schedule as `full`, stopped (and saved) at step 4
        if step == 4:
            os.kill(os.getpid(), signal.SIGUSR1)

    stopped = run(tmp_path, "run", 6, *extra, on_step=preempt_at_step_4)
    assert stopped.state.step == 4 and stopped.exit_code == 124
    out = str(tmp_path / "run")
    _flip(os.path.join(out, "checkpoints", "step_000004", "optimizer.pt"))
    capsys.readouterr()
    resumed = run(tmp_path, "run", 6, *extra)
    err = capsys.readouterr().err
    assert "checkpoint step_000004 is damaged: optimizer.pt does not match its checksum" in err
    assert "resuming from step_000002" in err and "resumed from" in err and "(step 2)" in err
    assert os.path.isdir(os.path.join(out, "checkpoints", "step_000004.damaged"))
    a, b = {r["step"]: r for r in read_log(full.output_dir)}, {r["step"]: r for r in read_log(resumed.output_dir)}
    for s in range(3, 7):  # the resumed run redid steps 3-4 and went on exactly as the uninterrupted one
        assert a[s]["loss"] == b[s]["loss"], s
    # nothing intact: refused with what is damaged and the fix
    for _, path in ckpt.list_checkpoints(os.path.join(out, "checkpoints")):
        open(os.path.join(path, "rng_rank00000.pt"), "w").close()
    with pytest.raises(ConfigError, match=r"no intact checkpoint(.|\n)*rng_rank00000.pt has 0 bytes(.|\n)*another train.output_dir"):
        run(tmp_path, "run", 8, *extra)


def test_resume_refuses_other_backbones_with_the_message_of_adapter_loading(tmp_path):
    import pytest

    from scaling.config import ConfigError
    from scaling.models.tiny import save_tiny_llm

    llm = save_tiny_llm(str(tmp_path / "llm"), "llama", seed=0)
    other = save_tiny_llm(str(tmp_path / "other"), "llama", seed=1)  # same architecture, other weights
    run(tmp_path, "run", 2, f"model.llm={llm}", "train.save_every=2")
    with pytest.raises(ConfigError) as resumed:
        run(tmp_path, "run", 4, f"model.llm={other}", "train.save_every=2")
    with pytest.raises(ConfigError) as loaded:
        ckpt.load_adapter(str(tmp_path / "run"), "cpu", llm=other)
    assert "was trained on other backbones" in str(resumed.value) and "llm weights differ" in str(resumed.value)
    assert resumed.value.problems[1:] == loaded.value.problems[1:]  # the same message (the first line names the file)
    assert resumed.value.problems[0].split(" was trained")[1] == loaded.value.problems[0].split(" was trained")[1]
    assert run(tmp_path, "run", 4, f"model.llm={llm}", "train.save_every=2").state.step == 4  # its own backbones resume


def test_a_second_live_job_on_a_run_directory_is_refused_and_a_dead_jobs_lock_is_taken_over(tmp_path, capsys):
    import socket
    import subprocess
    import sys
    import time

    import pytest

    from scaling.config import ConfigError
    from scaling.training import runlock

    out = tmp_path / "run"
    out.mkdir()
    lock = out / runlock.LOCK
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": live.pid, "started": "earlier"}))
        with pytest.raises(ConfigError, match=rf"in use by a live training job: host {socket.gethostname()} pid {live.pid}"
                                              r"(.|\n)*another train.output_dir"):
            run(tmp_path, "run", 2)
        assert not (out / "checkpoints").exists()  # refused before writing anything
        assert json.loads(lock.read_text())["pid"] == live.pid  # the live job keeps its lock
    finally:
        live.kill()
        live.wait()
    capsys.readouterr()
    result = run(tmp_path, "run", 2)  # its holder died: taken over
    assert result.state.step == 2 and "took over the lock of a dead job" in capsys.readouterr().err
    assert not lock.exists()  # released at the end
    # another host: the heartbeat decides
    lock.write_text(json.dumps({"host": "node-elsewhere", "pid": 1}))
    with pytest.raises(ConfigError, match="node-elsewhere pid 1"):
        run(tmp_path, "run", 3)
    old = time.time() - runlock.STALE_AFTER_S - 60
    os.utime(lock, (old, old))
    assert run(tmp_path, "run", 3).state.step == 3


def test_the_lock_holder_refreshes_its_heartbeat_and_the_lock_is_released_after_a_failure(tmp_path):
    import time

    import pytest

    from scaling.config import ConfigError
    from scaling.training.runlock import LOCK, RunLock

    with RunLock(str(tmp_path), heartbeat_s=0.05) as held:
        first = os.path.getmtime(held.path)
        deadline = time.time() + 30
        while os.path.getmtime(held.path) == first and time.time() < deadline:
            time.sleep(0.05)
        assert os.path.getmtime(held.path) > first
    assert not (tmp_path / LOCK).exists()
    with pytest.raises(ConfigError):  # a job failing at validation gives the directory back
        run(tmp_path, "run", 2, "train.global_batch=15")
    assert not (tmp_path / "run" / LOCK).exists()


def _full_disk_at(monkeypatch, steps):
    """ckpt.save_pt raises ENOSPC while writing the checkpoints of ``steps`` (what a full disk does)."""
    import errno

    real = ckpt.save_pt

    def save_pt(obj, path):
        if any(ckpt.step_name(s) in path for s in steps):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(obj, path)

    monkeypatch.setattr(ckpt, "save_pt", save_pt)


def test_a_periodic_save_on_a_full_disk_is_reported_and_training_goes_on(tmp_path, monkeypatch, capsys):
    _full_disk_at(monkeypatch, [2])
    result = run(tmp_path, "run", 6, "train.save_every=2")
    assert result.exit_code == 0 and result.state.step == 6
    root = os.path.join(result.output_dir, "checkpoints")
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [4, 6]
    assert not any(n.endswith(".tmp") for n in os.listdir(root))  # the partial checkpoint is removed
    err = capsys.readouterr().err
    assert f"no space left on device: the checkpoint of step 2 could not be written in {root}" in err
    assert "free there; one checkpoint of this run takes" in err and "the next save (step 4) retries" in err
    summary = json.load(open(os.path.join(result.output_dir, "train_summary.json")))
    assert [f["step"] for f in summary["save_failures"]] == [2]


def test_a_final_save_on_a_full_disk_stops_with_the_fix(tmp_path, monkeypatch):
    import pytest

    from scaling.training.diskspace import CheckpointWriteError, is_disk_full

    run(tmp_path, "run", 2, "train.save_every=2")
    _full_disk_at(monkeypatch, [4])
    with pytest.raises(CheckpointWriteError, match=r"no space left on device(.|\n)*takes \d+\.\d [KM]B(.|\n)*"
                                                   r"Free space there(.|\n)*resumes from the newest checkpoint, step 2"):
        run(tmp_path, "run", 4, "train.save_every=2")
    root = str(tmp_path / "run" / "checkpoints")
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [2] and not os.path.exists(os.path.join(root, "step_000004.tmp"))
    # torch's own wording of a full disk is recognised too
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726"))
    assert not is_disk_full(RuntimeError("CUDA error"))


def test_config_gaps_are_refused_before_anything_loads_with_the_fix(tmp_path):
    import pytest

    from scaling.config import ConfigError

    base = tiny_run_overrides(str(tmp_path / "run"), 4)
    with pytest.raises(ConfigError, match=r"train.lr must be a finite number, got nan \(e.g. train.lr=0.0008\)"):
        load_config(None, base + ["train.lr=.nan"])
    with pytest.raises(ConfigError, match="train.clip must be a finite number"):
        load_config(None, base + ["train.clip=.inf"])
    with pytest.raises(ConfigError, match=r"train.epochs=3 and train.max_steps=4 are both set(.|\n)*train.epochs=null"):
        load_config(None, base + ["train.epochs=3"])
    assert load_config(None, base + ["train.epochs=3", "train.max_steps=null"]).train.epochs == 3
    assert load_config(None, [f"train.output_dir={tmp_path}"]).train.epochs == 8  # the default length
    with pytest.raises(ConfigError, match=r"n_queries must be a whole number >= 1, got 0"):
        load_config(None, base + ["model.map.n_queries=0"])
    with pytest.raises(ConfigError, match=r"d_embed must be a whole number >= 1"):
        load_config(None, base + ["model.map.d_embed=-4"])


def test_an_adapter_stored_with_both_epochs_and_max_steps_still_loads(tmp_path):
    """Adapters written while train.epochs defaulted to 8 store it beside max_steps (which decided): they load."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    result = run(tmp_path, "run", 2, "train.save_every=2")
    path = ckpt.resolve_adapter_path(result.output_dir)
    with safe_open(path, "pt") as fh:
        meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    config = json.loads(meta["config"])
    config["train"]["epochs"] = 8
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={**meta, "config": json.dumps(config)})
    _, cfg = ckpt.load_adapter(str(tmp_path / "old.safetensors"), "cpu")
    assert cfg.train.max_steps == 2 and cfg.train.epochs is None


def test_distinct_skipped_samples_per_epoch_reach_the_log_tensorboard_and_the_summary(tmp_path, caption_shards):
    from scaling.models.tiny import save_tiny_llm

    shards = caption_shards(str(tmp_path / "shards"), 20, unanswered={1, 6, 12, 17})
    llm = save_tiny_llm(str(tmp_path / "llm"), "llama")
    out = str(tmp_path / "run")
    # 20 samples, 4 bad, batches of 4: 5 batches per epoch from 16 good samples, so the 2 workers cycle through
    # their shares and meet bad samples again (more skip events than bad samples)
    cfg = load_config(None, tiny_run_overrides(out, 10, global_batch=4, micro_batch=4, log_every=3, tensorboard=True) + [
        f"model.llm={llm}", f"data.train={shards}", "data.val=null", "data.num_workers=2", "data.shuffle_buffer=1"])
    events = []
    result = train(cfg, on_step=lambda step, _: events.append(step))
    summary = json.load(open(os.path.join(out, "train_summary.json")))
    assert summary["skipped_samples"] == {"0": 4, "1": 4} and summary["skipped_samples_total"] == 8
    rows = {r["step"]: r for r in read_log(out)}
    assert rows[3]["data/skipped_samples"] <= 4 and rows[10]["data/skipped_samples"] == 4
    assert result.state.skipped_samples == {"0": 4, "1": 4}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(out, "tensorboard"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("data/skipped_samples")][-1] == 4


def test_the_eval_loader_yields_exactly_len_batches_despite_skipped_samples(tmp_path, caption_shards):
    from scaling.models.tiny import word_tokenizer
    from scaling.training.loaders import build_loader

    bad = {0, 1, 5, 8}  # with 2 workers of 5 samples and batches of 2: the group {0, 1} is all bad
    shards = caption_shards(str(tmp_path), 10, split="val", unanswered=bad)
    for workers, expected in ((0, 5), (2, 6)):  # one order of 10 in groups of 2, or two of 5 (2 + 2 + 1 each)
        cfg = load_config(None, ["model.encoder=tiny-vit", f"data.val={shards}", "eval.batch_size=2",
                                 f"data.num_workers={workers}"])
        loader = build_loader(cfg, word_tokenizer(), "val", 0, 1, False)
        batches = list(loader)
        assert len(batches) == len(loader) == expected, workers
        assert sorted(i for b in batches for i in b["ids"]) == sorted(f"id{i}" for i in range(10) if i not in bad)
        assert sum(1 for b in batches if not b["ids"]) == 1 and loader.skipped == 4
        assert len(list(loader)) == len(loader)  # every pass
