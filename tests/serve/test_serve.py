"""``scaling serve`` as a user and a script see it: one real server (a subprocess on loopback, shared by the module),
its JSON API against ``scaling predict``, 64 concurrent requests batched into few generate calls, bad uploads that
get a 4xx with a message while the server keeps serving, and the page driven in a real browser (system Chromium).
Then an audio and a video adapter served the same way: their files answer as ``scaling predict`` answers them, and
media of another modality or that does not decode get a 4xx naming what the adapter takes."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import re
import time
import urllib.request

import pytest
from PIL import Image
from serve_helpers import multipart, post, post_file, predict, predict_all, serving

pytestmark = pytest.mark.slow  # one real server (a trained tiny adapter, a subprocess): ~2 min on 2 cores

UPLOAD_MB = 1
SERVE_ARGS = ("--max-batch-size", "8", "--max-wait-ms", "50", "--max-upload-mb", str(UPLOAD_MB))


@pytest.fixture(scope="module")
def server(tiny_run):
    with serving(tiny_run["run"], *SERVE_ARGS) as srv:
        yield srv


def test_api_answers_as_scaling_predict_does(server, tiny_run, capsys):
    img = os.path.join(tiny_run["media"], "img19.png")
    status, body = post_file(server.url, img)
    assert status == 200, body
    assert body["prediction"] == predict(tiny_run["run"], img, capsys)
    assert body["task"] == "caption"
    # the same settings through JSON + base64, and other generation settings
    with open(img, "rb") as fh:
        data = base64.b64encode(fh.read()).decode()
    status, same = post(server.url, json.dumps({"media": data}).encode(), "application/json")
    assert status == 200 and same["prediction"] == body["prediction"], same
    status, beams = post_file(server.url, img, num_beams=3, max_new_tokens=5)
    assert status == 200 and (beams["num_beams"], beams["max_new_tokens"]) == (3, 5), beams
    assert beams["prediction"] == predict(tiny_run["run"], img, capsys, "--num-beams", "3", "--max-new-tokens", "5")
    status, qa = post_file(server.url, img, question="what colour is it?")
    assert status == 200 and qa["task"] == "vqa", qa
    assert qa["prediction"] == predict(tiny_run["run"], img, capsys, "--question", "what colour is it?")
    with urllib.request.urlopen(server.url + "/v1/info", timeout=10) as r:
        info = json.load(r)
    assert (info["modality"], info["task"], info["max_batch_size"]) == ("image", "caption", 8)


def test_64_concurrent_requests_are_batched_and_answer_as_one_by_one(server, tiny_run):
    images = [os.path.join(tiny_run["media"], f"img{i}.png") for i in (18, 19, 20, 21)]
    settings = {"num_beams": 2, "max_new_tokens": 4}

    def calls() -> list[str]:
        return [line for line in list(server.lines) if "in one generate call" in line]

    def wait_for_calls(n: int) -> None:  # the log reader runs in its own thread
        deadline = time.time() + 20
        while time.time() < deadline and len(calls()) < n:
            time.sleep(0.05)

    single = {}
    for img in images:
        n = len(calls())
        status, body = post_file(server.url, img, **settings)
        assert status == 200 and body["batch_size"] == 1, body
        single[img] = body["prediction"]
        wait_for_calls(n + 1)
    before = len(calls())
    jobs = [images[i % len(images)] for i in range(64)]
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda p: post_file(server.url, p, **settings), jobs))
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:3]
    assert [body["prediction"] for _, body in answers] == [single[p] for p in jobs]
    assert max(body["batch_size"] for _, body in answers) > 1
    batches = sum(1 / body["batch_size"] for _, body in answers)  # each call counted once
    wait_for_calls(before + round(batches))
    logged = calls()[before:]
    sizes = [int(re.search(r"batch \d+: (\d+) requests? in one generate call", line).group(1)) for line in logged]
    assert sum(sizes) == 64 and len(logged) < 64 and max(sizes) <= 8, "\n".join(logged)


WAV_STUB = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32)  # a WAV by its header, with an all-zero format chunk
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42" + bytes(16)  # an MP4 by its header, and nothing more


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 20, 20)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("case", ["oversized", "not_media", "truncated_jpeg", "empty_body", "wrong_field", "wrong_modality",
                                  "bad_number", "bad_base64"])
def test_bad_uploads_get_a_4xx_with_a_message_and_the_server_keeps_serving(server, tiny_run, case):
    cases = {
        "oversized": (413, multipart({"file": ("big.png", b"\x89PNG\r\n\x1a\n" + os.urandom(UPLOAD_MB * 2**20 + 10))}), "upload limit"),
        "not_media": (415, multipart({"file": ("notes.txt", b"just some text, not an image\n" * 10)}), "not a recognised"),
        "truncated_jpeg": (422, multipart({"file": ("cut.jpg", _jpeg_bytes()[:300])}), "does not decode"),
        "empty_body": (400, (b"", "multipart/form-data; boundary=x"), "empty request body"),
        "wrong_field": (400, multipart({"image": ("a.png", b"\x89PNG\r\n\x1a\n")}), "unknown field 'image'"),
        "wrong_modality": (415, multipart({"file": ("tone.wav", WAV_STUB)}), "wrong modality"),
        "bad_number": (400, multipart({"file": ("a.png", b"\x89PNG\r\n\x1a\n"), "num_beams": "lots"}), "num_beams"),
        "bad_base64": (400, (json.dumps({"media": "%%%"}).encode(), "application/json"), "base64"),
    }
    want, (body, ctype), words = cases[case]
    status, answer = post(server.url, body, ctype)
    assert status == want and words in answer["error"], (status, answer)
    status, ok = post_file(server.url, os.path.join(tiny_run["media"], "img20.png"))
    assert status == 200 and ok["prediction"] is not None


def test_the_page_in_a_browser_answers_as_scaling_predict_does(server, tiny_run, browser, artifacts_dir, capsys):
    img = os.path.join(tiny_run["media"], "img21.png")
    page = browser.new_page()
    try:
        page.goto(server.url + "/")
        page.set_input_files("#file", img)
        page.fill("#num_beams", "2")
        page.fill("#max_new_tokens", "5")
        page.click("#submit")
        page.wait_for_selector("#answer[data-state=done]", timeout=60_000)
        shown = page.inner_text("#answer")
        page.screenshot(path=os.path.join(artifacts_dir, "serve_page.png"), full_page=True)
    finally:
        page.close()
    assert shown == predict(tiny_run["run"], img, capsys, "--num-beams", "2", "--max-new-tokens", "5")


# ---- audio and video adapters (AST on tones, TimeSformer on moving squares): one server per modality


@pytest.fixture(scope="module", params=["audio", "video"])
def av_server(request, tiny_av_run):
    """(modality, its running server, {'run', 'files'})."""
    built = tiny_av_run(request.param)
    with serving(built["run"]) as srv:
        yield request.param, srv, built


def test_audio_and_video_adapters_answer_as_scaling_predict_does(av_server, capsys):
    modality, srv, built = av_server
    run, files = built["run"], built["files"]
    expected = predict_all(run, files, capsys)
    # the files give different texts, so equal texts show the server decoded each file as predict does
    assert len(set(expected)) > 1, f"the tiny {modality} adapter says the same for every file: {expected}"
    answers = []
    for path in files:
        status, body = post_file(srv.url, path)
        assert status == 200 and body["task"] == "caption", body
        answers.append(body["prediction"])
    assert answers == expected
    # JSON + base64 with no file name (the type comes from the bytes), and concurrent requests (batched)
    with open(files[1], "rb") as fh:
        status, same = post(srv.url, json.dumps({"media": base64.b64encode(fh.read()).decode()}).encode(),
                            "application/json")
    assert status == 200 and same["prediction"] == expected[1], same
    with concurrent.futures.ThreadPoolExecutor(len(files)) as pool:
        together = list(pool.map(lambda p: post_file(srv.url, p), files))
    assert [body.get("prediction") for _, body in together] == expected, together
    status, beams = post_file(srv.url, files[2], num_beams=3, max_new_tokens=5)
    assert status == 200 and (beams["num_beams"], beams["max_new_tokens"]) == (3, 5), beams
    assert beams["prediction"] == predict(run, files[2], capsys, "--num-beams", "3", "--max-new-tokens", "5")
    with urllib.request.urlopen(srv.url + "/v1/info", timeout=10) as r:
        assert json.load(r)["modality"] == modality


def test_audio_and_video_adapters_refuse_other_media_and_undecodable_files_with_a_4xx(av_server):
    modality, srv, built = av_server
    takes = {"audio": "this adapter takes audio (flac, m4a, mp3, ogg, wav)",
             "video": "this adapter takes video (avi, m4v, mkv, mov, mp4, webm)"}[modality]
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (30, 200, 30)).save(buf, format="PNG")
    png = buf.getvalue()
    with open(built["files"][0], "rb") as fh:
        own = fh.read()
    other = ("tone.wav", WAV_STUB) if modality == "video" else ("clip.mp4", MP4_HEAD)
    broken = ("tone.wav", WAV_STUB) if modality == "audio" else ("clip.mp4", own[:200])  # cut short
    cases = [
        (415, ("photo.png", png), f"wrong modality: 'photo.png' is image (png); {takes}"),
        (415, other, f"wrong modality: '{other[0]}' is {'audio (wav)' if modality == 'video' else 'video (mp4)'}; {takes}"),
        (415, ("notes.txt", b"not a media file\n" * 8), f"not a recognised image, audio or video file; {takes}"),
        (422, broken, f"the {modality} does not decode"),
    ]
    for want, (name, data), words in cases:
        status, answer = post(srv.url, *multipart({"file": (name, data)}))
        assert status == want and words in answer.get("error", ""), (name, status, answer)
    status, ok = post_file(srv.url, built["files"][0])
    assert status == 200 and ok["prediction"] is not None, ok
