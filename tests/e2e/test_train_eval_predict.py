"""End to end through the public CLI: jsonl → shards → train → eval → predict → convert."""

import json
import os

import pytest
from PIL import Image

from scaling.cli.main import main

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    media = root / "media"
    media.mkdir()
    lines = []
    for i in range(48):
        name = list(COLOURS)[i % 3]
        Image.new("RGB", (32, 32), COLOURS[name]).save(media / f"img{i}.png")
        split = "train" if i < 36 else "test"
        lines.append({"id": f"s{i}", "image": f"img{i}.png", "captions": [f"a {name} picture", f"{name} image"], "split": split})
    ann = root / "data.jsonl"
    ann.write_text("\n".join(json.dumps(l) for l in lines))
    assert main(["data", "convert", "jsonl", "--annotations", str(ann), "--media", str(media),
                 "--out", str(root / "shards" / "{split}-%06d.tar")]) == 0
    return root


@pytest.mark.slow
def test_train_eval_predict_convert(shards, backbones, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    overrides = [
        "model.method=depalm", f"model.llm={backbones['llama']}", f"model.encoder={backbones['vit']}",
        "model.frozen_dtype=fp32", "model.map.d_embed=32", "model.map.n_queries=4",
        f"data.train={shards / 'shards'}", f"data.test={shards / 'shards'}", "data.task=caption", "data.num_workers=0",
        f"train.output_dir={run}", "train.max_steps=4", "train.global_batch=8", "train.micro_batch=8",
        "train.precision=fp32", "train.save_every=2", "train.log_every=1",
    ]
    assert main(["train", *overrides]) == 0
    assert os.path.isfile(run / "train_summary.json")
    capsys.readouterr()
    out_dir = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(run), "--split", "test", "--out", str(out_dir), "--max-new-tokens", "4",
                 "--no-meteor", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_samples"] == 12 and "CIDEr" in result["metrics"]
    preds = [json.loads(l) for l in open(out_dir / "predictions.jsonl")]
    assert len({p["id"] for p in preds}) == 12
    assert main(["predict", "--checkpoint", str(run), str(shards / "media" / "img0.png"), "--json", "--max-new-tokens", "3"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["file"].endswith("img0.png") and isinstance(line["prediction"], str)
    # a question to a caption-trained adapter: answered, with a warning that names the mismatch
    assert main(["predict", "--checkpoint", str(run), str(shards / "media" / "img0.png"), "--question",
                 "what colour is the circle?", "--max-new-tokens", "3"]) == 0
    err = capsys.readouterr().err
    assert "trained for 'caption', not question answering" in err
    import scaling.evaluation.evaluate as evaluate_module

    with monkeypatch.context() as m:  # a model that emits its end token first: the empty answer is named
        m.setattr(evaluate_module, "generate_batch", lambda *a, **k: [""])
        assert main(["predict", "--checkpoint", str(run), str(shards / "media" / "img0.png")]) == 0
        assert "the generation is empty" in capsys.readouterr().err
    # a zero-shot evaluation with another task's metric works from the same checkpoint
    assert main(["eval", "--checkpoint", str(run), "--split", "test", "--task", "gqa", "--out", str(tmp_path / "z"),
                 "--max-new-tokens", "3", "--json"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"]
    # a scoring failure (here: no Java) keeps the generations and says how to re-score them; by default a
    # zero-shot evaluation gets its own folder beside the split's own scores
    from scaling.evaluation.metrics import MetricsError

    def no_java(*args, **kwargs):
        raise MetricsError("java not found")

    monkeypatch.setattr(evaluate_module, "compute_metrics", no_java)
    assert main(["eval", "--checkpoint", str(run), "--split", "test", "--task", "gqa", "--max-new-tokens", "3"]) == 2
    err = capsys.readouterr().err
    (saved,) = list((run / "eval").glob("step_*_test_gqa/predictions.jsonl"))
    assert len(open(saved).readlines()) == 12
    assert "java not found" in err and f"scaling score --task gqa --predictions {saved}" in err
