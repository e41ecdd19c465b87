"""``scaling demo``: the renderer's text matches its pixels, the cache logic, the presets at demo size,
and (slow) the quick demo end to end: DePALM beats the blind baseline by a wide margin on held-out
samples, ``--json`` prints the table last, the PNG grid opens, the ``scaling serve`` line it prints serves its
adapter (answers as ``scaling predict`` does), a second run reuses the cache."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from scaling.demo import cache as cache_mod
from scaling.demo import synth

# ------------------------------------------------------------------------------------- renderer


def _scenes(n=200, seed=0):
    for i in range(n):
        rng = synth.item_rng(seed, "image", "test", i)
        scene = synth.sample_scene(rng)
        img, cmap = synth.render_scene(scene, rng)
        yield scene, np.asarray(img).astype(int), cmap, rng


def test_render_is_deterministic():
    a = [(s.to_dict(), np.asarray(i).tobytes()) for s, i, _, _ in _scenes(20)]
    b = [(s.to_dict(), np.asarray(i).tobytes()) for s, i, _, _ in _scenes(20)]
    assert a == b
    c = [s.to_dict() for s, *_ in _scenes(20, seed=1)]
    assert c != [x[0] for x in a]


def test_pixels_match_colours_shapes_and_sizes():
    for scene, img, cmap, _ in _scenes():
        areas = []
        for o in scene.objects:
            mask = cmap == o.label
            assert mask.sum() > 20, "every object is visible"
            mean = img[mask].mean(axis=0)
            # the object's pixels have its colour (jitter ±18, noise σ 6)
            nearest = min(synth.COLORS, key=lambda c: np.abs(np.array(synth.COLORS[c]) - mean).sum())
            assert nearest == o.color
            areas.append((o.size, mask.sum(), o.shape))
            ys, xs = np.nonzero(mask)
            assert abs(xs.mean() - o.cx) < 4 and abs(ys.mean() - o.cy) < 5
            if o.shape == "square":  # a square fills its bounding box, a circle ~79%, a triangle ~50%
                fill = mask.sum() / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
                assert fill > 0.9
            elif o.shape == "triangle":
                fill = mask.sum() / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
                assert fill < 0.65
        for size, area, shape in areas:
            same = [a for s, a, sh in areas if s != size and sh == shape]
            for other in same:
                assert (area < other) == (size == "small")


def test_captions_and_positions_match_the_scene():
    for scene, _img, _cmap, _ in _scenes():
        caps = synth.captions(scene)
        assert len(caps) == 3
        for o in scene.objects:
            assert all(o.color in c and o.shape in c for c in caps[:1])
            assert any(o.phrase in c for c in caps)
        if len(scene.objects) == 1:
            o = scene.objects[0]
            dx, dy = o.cx - 32, o.cy - 32
            expect = ("left" if dx < 0 else "right") if abs(dx) > abs(dy) else ("top" if dy < 0 else "bottom")
            assert scene.position == expect
            assert caps[0].endswith(f"on the {expect}")
        else:
            a, b = scene.objects
            if scene.axis == "h":
                assert a.cx < b.cx and abs(b.cx - a.cx) > abs(b.cy - a.cy)
                assert caps[0] == f"a {a.phrase} to the left of a {b.phrase}"
            else:
                assert a.cy < b.cy and abs(b.cy - a.cy) > abs(b.cx - a.cx)
                assert caps[0] == f"a {a.phrase} above a {b.phrase}"
            assert not (a.color == b.color and a.shape == b.shape)


def test_questions_have_the_right_answers():
    seen = set()
    for scene, _img, _cmap, rng in _scenes():
        objs = scene.objects
        for q, a in synth.questions(scene, rng):
            seen.add(q.split()[1])
            if q.startswith("how many"):
                assert a == synth.NUMBERS[len(objs)]
            elif q.startswith("what color is the"):
                shape = q.split()[4]
                assert [o.color for o in objs if o.shape == shape] == [a]
            elif q.startswith("what shape is the"):
                color = q.split()[4]
                assert [o.shape for o in objs if o.color == color] == [a]
            elif q.startswith("what size"):
                _, _, _, _, color, shape, _ = q.split()
                assert [o.size for o in objs if o.color == color and o.shape == shape] == [a]
            elif q.startswith("is there"):
                color, shape = q.split()[3:5]
                assert a == ("yes" if any(o.color == color and o.shape == shape for o in objs) else "no")
            elif q.startswith("where"):
                assert len(objs) == 1 and a == scene.position
    assert {"many", "color", "shape", "size", "there", "is"} <= seen


def test_patch_labels_follow_the_class_map():
    cmap = np.zeros((64, 64), dtype=np.uint8)
    cmap[0:16, 0:16] = 5  # a full patch
    cmap[16:20, 16:20] = 7  # 16 pixels: below the threshold → background
    cmap[48:64, 40:48] = 9  # half a patch
    labels = synth.patch_labels(cmap)
    assert labels.shape == (16,)
    assert labels[0] == 5 and labels[5] == 0 and labels[14] == 9 and labels[15] == 0


def test_vocabulary_covers_every_text():
    vocab = set(synth.vocabulary())
    rng = random.Random(0)
    for scene, *_ in _scenes(100):
        for text in synth.captions(scene) + [q + " " + a for q, a in synth.questions(scene, rng)]:
            assert set(text.split()) <= vocab, text
    for _ in range(200):
        assert set(synth.lm_document(rng, audio=True).split()) - {"</a>"} <= vocab
        clip = synth.sample_clip(rng)
        assert all(set(c.split()) <= vocab for c in synth.clip_captions(clip))


def test_audio_clip_tones_fit_and_are_audible():
    for i in range(50):
        rng = random.Random(i)
        clip = synth.sample_clip(rng)
        assert clip.tones[-1].start + clip.tones[-1].seconds <= synth.CLIP_SECONDS
        wav = synth.render_clip(clip, rng)
        assert wav.shape == (int(synth.CLIP_SECONDS * synth.SAMPLE_RATE),)
        t = clip.tones[0]
        mid = int((t.start + t.seconds / 2) * synth.SAMPLE_RATE)
        assert np.abs(wav[mid - 200 : mid + 200]).max() > 0.2


def test_write_dataset_is_converter_input(tmp_path):
    paths = synth.write_dataset(str(tmp_path), {"train": 6, "test": 3}, seed=0, questions_per_image=2,
                                audio_sizes={"train": 2, "test": 1}, progress=False)
    recs = [json.loads(x) for x in open(paths["caption"])]
    assert [r["split"] for r in recs].count("test") == 3
    assert all(os.path.isfile(tmp_path / r["image"]) and len(r["answers"]) == 3 for r in recs)
    qs = [json.loads(x) for x in open(paths["vqa"])]
    assert len(qs) == 18 and all(len(set(q["answers"])) == 1 and len(q["answers"]) == 10 for q in qs)
    from scaling.data.converters import convert

    out = convert("jsonl", str(tmp_path / "shards" / "caption" / "{split}-%06d.tar"), annotations=paths["caption"],
                  media=str(tmp_path), modality="image", progress=False, echo=lambda m: None)
    assert {k: v["num_samples"] for k, v in out.items()} == {"train": 6, "test": 3}


# ------------------------------------------------------------------------------------- cache


def test_cache_builds_once_then_reuses(tmp_path):
    calls = []

    def build(path):
        calls.append(path)
        with open(os.path.join(path, "x.txt"), "w") as fh:
            fh.write("hello")
        return {"steps": 3}

    spec = {"n": 1, "seed": 0}
    p1, reused1, info1 = cache_mod.build_or_reuse(str(tmp_path), "thing", spec, build)
    p2, reused2, info2 = cache_mod.build_or_reuse(str(tmp_path), "thing", spec, build)
    assert p1 == p2 and not reused1 and reused2 and len(calls) == 1
    assert info2["steps"] == 3 and "seconds" in info2
    assert open(os.path.join(p2, "x.txt")).read() == "hello"
    # another spec → another entry; fresh → rebuilt
    p3, reused3, _ = cache_mod.build_or_reuse(str(tmp_path), "thing", {"n": 2, "seed": 0}, build)
    assert p3 != p1 and not reused3
    _, reused4, _ = cache_mod.build_or_reuse(str(tmp_path), "thing", spec, build, fresh=True)
    assert not reused4 and len(calls) == 3
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_cache_never_reuses_an_interrupted_build(tmp_path):
    spec = {"a": 1}

    def boom(path):
        open(os.path.join(path, "partial"), "w").close()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache_mod.build_or_reuse(str(tmp_path), "thing", spec, boom)
    path = cache_mod.entry_path(str(tmp_path), "thing", spec)
    assert not os.path.exists(path) and not os.listdir(tmp_path)
    # a folder without DONE.json (e.g. copied half-way) is rebuilt, not trusted
    os.makedirs(path)
    assert not cache_mod.is_ready(path, spec)
    _, reused, _ = cache_mod.build_or_reuse(str(tmp_path), "thing", spec, lambda p: None)
    assert not reused and cache_mod.is_ready(path, spec)
    assert not cache_mod.is_ready(path, {"a": 2})


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_mod.default_cache_dir() == os.path.join(str(tmp_path), "scaling", "demo")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_mod.default_cache_dir().endswith(os.path.join(".cache", "scaling", "demo"))


# ------------------------------------------------------------------------------------- presets


@pytest.fixture(scope="module")
def two_layer_llm(tmp_path_factory):
    from scaling.models.tiny import save_tiny_llm

    return save_tiny_llm(str(tmp_path_factory.mktemp("llm2")), "llama", synth.vocabulary(), num_hidden_layers=2)


@pytest.mark.parametrize("method", sorted(__import__("scaling.config.methods", fromlist=["METHODS"]).METHODS))
def test_every_preset_fits_the_demo_backbones(method, two_layer_llm):
    """Every preset, scaled by method_overrides, builds and runs on a 2-layer LM and a 3-layer encoder."""
    import torch

    from scaling.config.model import model_config
    from scaling.demo.run import method_overrides
    from scaling.models.builder import build_model

    cfg = model_config({"method": method, "llm": two_layer_llm, "encoder": "tiny-vit", "frozen_dtype": "fp32",
                        **method_overrides(method, enc_layers=3, llm_layers=2)})
    model = build_model(cfg)
    ids = torch.tensor([[1, 5, 6, 7]])
    media = {} if method == "blind" else {"pixel_values": torch.randn(1, 3, 32, 32)}
    out = model(input_ids=ids, labels=ids, **media)
    assert torch.isfinite(out["loss"])


def test_cli_registers_demo():
    from scaling.cli.main import build_parser

    args = build_parser().parse_args(["demo", "--quick", "--methods", "depalm,limber-1", "--json", "--cache-dir", "/x"])
    assert args.quick and args.json and args.methods == "depalm,limber-1" and args.cache_dir == "/x"
    assert args.func.__module__ == "scaling.cli.demo"


# ------------------------------------------------------------------------------------- end to end


# Only catches a hang: the quick demo takes ~3-6 minutes on a quiet 2-core machine, several times that on a loaded
# one. Its speed is measured by running it (README), never asserted here.
HANG_TIMEOUT_S = 3 * 3600


def _demo(cache_dir, out_dir):
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "scaling", "demo", "--quick", "--json", "--no-progress",
                           "--cache-dir", str(cache_dir), "--out", str(out_dir)],
                          capture_output=True, text=True, env=env, timeout=HANG_TIMEOUT_S)


def _serve_answers_as_predict(cache_dir, run, capsys) -> None:
    """The serve line the demo prints works: ``scaling serve`` on its caption adapter (trained on cached features, so
    the server rebuilds the demo's ViT from the run's config) answers two of the demo's test images as
    ``scaling predict`` does, with the run's settings and with other beams/lengths."""
    from serve_helpers import post_file, predict_all, serving

    (data_root,) = cache_dir.glob("data-*")  # the demo's rendered dataset (synth.write_dataset) in its cache
    with open(data_root / "captions.jsonl") as fh:
        tests = [r for r in map(json.loads, fh) if r["split"] == "test"][:2]
    images = [str(data_root / r["image"]) for r in tests]
    expected = predict_all(str(run), images, capsys)
    other = {"num_beams": 3, "max_new_tokens": 5}  # the run's are 1 beam, up to 20 tokens
    expected_other = predict_all(str(run), images, capsys, "--num-beams", "3", "--max-new-tokens", "5")
    assert all(expected) and all(expected_other), (expected, expected_other)
    with serving(str(run)) as srv:
        answers = [post_file(srv.url, img) for img in images]
        answers_other = [post_file(srv.url, img, **other) for img in images]
    assert all(status == 200 and body["task"] == "caption" for status, body in answers + answers_other), \
        (answers, answers_other, srv.log[-3000:])
    assert [body["prediction"] for _, body in answers] == expected
    assert [body["prediction"] for _, body in answers_other] == expected_other


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys):
    cache_dir, out = tmp_path / "cache", tmp_path / "out"
    proc = _demo(cache_dir, out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    results = json.loads(lines[-1])
    assert set(results) == {"depalm", "blind"}
    depalm, blind = results["depalm"], results["blind"]
    # measured (quick settings, seed 0, 2-core CPU): DePALM CIDEr 2.63 vs 0.15 for the blind LM (18x); VQA
    # accuracy 0.44 vs 0.33 (the quick encoder still confuses colours and shapes; the full demo reaches 0.57).
    # Thresholds leave room for other CPUs' floating-point differences.
    assert depalm["caption/CIDEr"] > 1.5
    assert depalm["caption/CIDEr"] > 3 * blind["caption/CIDEr"]
    assert depalm["vqa/accuracy"] > blind["vqa/accuracy"] + 0.06
    from PIL import Image

    grid = out / "captions_grid.png"
    with Image.open(grid) as im:
        im.load()
        assert im.width > 200 and im.height > 200
    assert (out / "results.json").is_file()
    # the demo ends by pointing to its HTML report (a gallery with every test image) and the serve line
    page = (out / "report" / "index.html").read_text()
    assert page.count('"kind":"image"') >= 150 and "<svg" in page
    assert f"{out / 'report' / 'index.html'}" in proc.stdout
    assert f"scaling serve --checkpoint {out / 'runs' / 'depalm-caption'}" in proc.stdout
    assert list((out / "runs").glob("depalm-caption/tensorboard/*")) or list((out / "runs").glob("depalm-caption/**/events.*"))
    first = json.loads((out / "results.json").read_text())
    assert {"vit", "llm", "data"} <= set(first["reused"]) and not any(first["reused"].values())  # all built
    # results on stdout (the table, then --json's line), progress and logs on stderr
    assert "results on the held-out test splits" in proc.stdout and "building" not in proc.stdout
    assert "results on the held-out test splits" not in proc.stderr
    # the demo's test scores sit where `scaling eval` puts them: `scaling report` reads them, no warning
    report = subprocess.run([sys.executable, "-m", "scaling", "report", str(out / "runs"), "--json", "--no-charts"],
                            capture_output=True, text=True, timeout=HANG_TIMEOUT_S)
    assert report.returncode == 0, report.stderr[-3000:]
    data = json.loads(report.stdout.strip().splitlines()[-1])
    assert data["n_runs"] == 4 and "no `scaling eval` scores" not in report.stderr
    best = data["best"]["depalm|demo-caption"]
    assert best["mean"] == pytest.approx(depalm["caption/CIDEr"])
    _serve_answers_as_predict(cache_dir, out / "runs" / "depalm-caption", capsys)

    proc2 = _demo(cache_dir, out)
    assert proc2.returncode == 0, proc2.stderr[-4000:]
    second = json.loads((out / "results.json").read_text())  # backbones, shards and features: all from the cache
    assert second["reused"] == {k: True for k in first["reused"]} and second["built_features"] == 0
    again = json.loads(proc2.stdout.strip().splitlines()[-1])
    assert again["depalm"]["caption/CIDEr"] == pytest.approx(depalm["caption/CIDEr"], rel=0.05)
