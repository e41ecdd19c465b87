"""``scaling report`` writes report/index.html: scores, learning curves, a gallery of test predictions with their
media, and the runs' configs. The page is opened in a real browser (system Chromium): sorting by a run's score and
filtering to the samples where the runs disagree change the visible rows as they must, and pages turn."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from PIL import Image

from scaling.cli.main import main

COLOURS = ["red", "green", "blue", "yellow"]


def make_runs(root, n: int, media: bool = True) -> dict:
    """Two fake VQA runs (``depalm`` answers right on even samples, ``blind`` always says 'red') on ``n`` test
    samples, with real shards holding the images and questions (``scaling data convert jsonl``)."""
    root = str(root)
    shards = os.path.join(root, "shards")
    ids = [f"q{i}" for i in range(n)]
    truth = {sid: COLOURS[i % len(COLOURS)] for i, sid in enumerate(ids)}
    if media:
        os.makedirs(os.path.join(root, "media"), exist_ok=True)
        lines = []
        rgb = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
        for i, sid in enumerate(ids):
            Image.new("RGB", (24, 24), rgb[truth[sid]]).save(os.path.join(root, "media", f"{sid}.png"))
            lines.append(json.dumps({"id": sid, "image": f"{sid}.png", "question": f"what colour is shape {i}?",
                                     "answers": [truth[sid]] * 10, "split": "test"}))
        with open(os.path.join(root, "data.jsonl"), "w") as fh:
            fh.write("\n".join(lines))
        assert main(["data", "convert", "jsonl", "--annotations", os.path.join(root, "data.jsonl"), "--task", "vqa",
                     "--media", os.path.join(root, "media"), "--out", os.path.join(shards, "{split}-%06d.tar")]) == 0
    runs = {}
    for method in ("depalm", "blind"):
        run = os.path.join(root, "runs", method)
        out = os.path.join(run, "eval", "step_10_test")
        os.makedirs(out)
        preds = {sid: (truth[sid] if (method == "depalm" and i % 2 == 0) else "red") for i, sid in enumerate(ids)}
        acc = sum(preds[s] == truth[s] for s in ids) / n
        with open(os.path.join(run, "config.yaml"), "w") as fh:
            yaml.safe_dump({"model": {"method": method}, "data": {"name": "colours", "task": "vqa", "test": shards},
                            "train": {"seed": 0, "output_dir": run}}, fh)
        with open(os.path.join(out, "predictions.jsonl"), "w") as fh:
            for sid in ids:
                fh.write(json.dumps({"id": sid, "prediction": preds[sid], "references": [truth[sid]] * 10}) + "\n")
        with open(os.path.join(out, "metrics.json"), "w") as fh:
            json.dump({"task": "vqa", "n_samples": n, "skipped": 0, "metrics": {"accuracy": acc}, "data": shards}, fh)
        with open(os.path.join(run, "train_log.jsonl"), "w") as fh:
            for step in range(1, 11):
                fh.write(json.dumps({"step": step, "kind": "train", "loss": 3.0 / step + (0.2 if method == "blind" else 0)}) + "\n")
            fh.write(json.dumps({"step": 10, "kind": "eval", "val/loss": 1.0, "eval/accuracy": acc}) + "\n")
        with open(os.path.join(run, "train_summary.json"), "w") as fh:
            json.dump({"train_seconds": 60.0, "gpu_type": "cpu", "n_gpus": 0, "steps": 10}, fh)
        runs[method] = {"path": run, "preds": preds}
    return {"root": os.path.join(root, "runs"), "truth": truth, "runs": runs, "ids": ids}


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    root = tmp_path_factory.mktemp("html_report")
    made = make_runs(root, 60)
    assert main(["report", made["root"], "--no-charts"]) == 0
    made["html"] = os.path.join(made["root"], "report", "index.html")
    return made


def test_scaling_report_writes_one_self_contained_page(report_page):
    text = open(report_page["html"], encoding="utf-8").read()
    assert "<svg" in text and "training loss" in text and "validation accuracy" in text  # learning curves
    assert "data:image/jpeg;base64," in text  # thumbnails inside the page
    assert not any(f'src="{p}' in text or f"href=\"{p}" in text for p in ("http:", "https:", "//"))  # nothing fetched
    assert "backbone fingerprints" in text and "config.yaml" in text
    data = json.loads(text.split('id="gallery-data-0">', 1)[1].split("</script>", 1)[0])
    assert data["runs"] == ["blind", "depalm"] and len(data["samples"]) == 60
    first = next(s for s in data["samples"] if s["id"] == "q0")
    assert first["question"] == "what colour is shape 0?" and first["media"]["kind"] == "image"
    assert first["preds"] == ["red", "red"] and first["scores"] == [1.0, 1.0] and not first["disagree"]
    q2 = next(s for s in data["samples"] if s["id"] == "q2")  # blue: depalm right, blind wrong
    assert q2["preds"] == ["red", "blue"] and q2["scores"] == [0.0, 1.0] and q2["disagree"]


def test_the_report_in_a_browser_sorts_filters_and_paginates(report_page, browser, artifacts_dir):
    truth, runs = report_page["truth"], report_page["runs"]
    disagree = {s for s in report_page["ids"] if runs["depalm"]["preds"][s] != runs["blind"]["preds"][s]}
    page = browser.new_page()
    try:
        page.goto("file://" + report_page["html"])
        page.wait_for_selector("#gallery-0[data-ready='1']")
        rows = lambda: page.eval_on_selector_all("#gallery-0 tbody tr", "rs => rs.map(r => r.dataset.id)")
        first = rows()
        assert len(first) == 50 and first[:3] == ["q0", "q1", "q2"]
        assert "page 1 of 2" in page.inner_text("#gallery-0 .pageinfo")
        page.click("#gallery-0 .next")
        assert rows() == [f"q{i}" for i in range(50, 60)]
        # sort by depalm's accuracy, low first: its wrong answers come first
        page.select_option("#gallery-0 .sort", "s1-asc")
        wrong = [s for s in report_page["ids"] if runs["depalm"]["preds"][s] != truth[s]]
        assert rows()[: len(wrong)] == sorted(wrong, key=lambda s: int(s[1:]))
        page.select_option("#gallery-0 .sort", "s1-desc")
        assert set(rows()[:5]) <= {s for s in report_page["ids"] if runs["depalm"]["preds"][s] == truth[s]}
        # only the samples where the runs disagree
        page.check("#gallery-0 .disagree")
        shown = rows()
        assert set(shown) == disagree and len(shown) == len(disagree)
        assert f"{len(disagree)} samples where runs disagree" in page.inner_text("#gallery-0 .pageinfo")
        page.screenshot(path=os.path.join(artifacts_dir, "report_page.png"), full_page=False)
        page.uncheck("#gallery-0 .disagree")
        assert len(rows()) == 50
        imgs = page.eval_on_selector_all("#gallery-0 tbody img", "is => is.filter(i => i.complete && i.naturalWidth > 0).length")
        assert imgs > 0
    finally:
        page.close()


def test_per_sample_cider_averages_to_the_corpus_cider():
    import shutil

    if shutil.which("java") is None:
        pytest.skip("no java on PATH: pycocoevalcap's PTB tokenizer needs it")
    from scaling.evaluation.metrics import caption_metrics
    from scaling.evaluation.sample_scores import sample_scores

    refs = {"a": ["a red square", "red box"], "b": ["a blue circle", "blue disc"], "c": ["two green shapes", "green things"]}
    preds = {"a": "a red square", "b": "a red circle", "c": "something else"}
    scores, note = sample_scores("caption", preds, refs)
    assert note is None and scores["a"] > scores["b"] > scores["c"]
    corpus = caption_metrics(preds, refs, meteor=False, spice=False)["CIDEr"]
    assert sum(scores.values()) / 3 == pytest.approx(corpus, abs=1e-9)


def test_gallery_previews_audio_as_a_player_and_video_as_a_strip_of_frames():
    import base64
    import io
    import wave

    import numpy as np

    from scaling.evaluation.gallery import STRIP_FRAMES, media_preview

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.sin(np.arange(1600) / 5) * 3000).astype("<i2").tobytes())
    audio = media_preview({"__key__": "a", "wav": buf.getvalue()})
    assert audio["kind"] == "audio" and audio["src"].startswith("data:audio/wav;base64,")
    assert base64.b64decode(audio["src"].split(",", 1)[1]) == buf.getvalue()
    pytest.importorskip("av", reason="PyAV (the [video] extra) decodes video")
    from scaling.data.video import encode_video

    frames = np.zeros((12, 32, 48, 3), dtype=np.uint8)
    for t in range(12):
        frames[t, :, : 4 * t + 1] = 255  # a bar that grows: every frame differs
    video = media_preview({"__key__": "v", "mp4": encode_video(frames)})
    assert video["kind"] == "video"
    strip = Image.open(io.BytesIO(base64.b64decode(video["src"].split(",", 1)[1])))
    assert strip.width >= STRIP_FRAMES * 48 and strip.height == 32
