"""What an upload is, from its bytes (else its name), and whether it fits the adapter's modality."""

from __future__ import annotations

import pytest

from scaling.serve.inputs import HTTPProblem, media_key

PNG = b"\x89PNG\r\n\x1a\n" + bytes(16)
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(16)
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(16)
M4A = b"\x00\x00\x00\x1cftypM4A " + bytes(16)  # AAC in MP4 as iTunes, phones and ffmpeg's ipod muxer write it
ISOM = b"\x00\x00\x00\x1cftypisom" + bytes(16)  # a brand that says neither audio nor video


@pytest.mark.parametrize("data,name,modality,key", [
    (PNG, "upload", "image", "png"), (b"\xff\xd8\xff\xe0" + bytes(8), "x.bin", "image", "jpg"),
    (WAV, "clip", "audio", "wav"), (b"fLaC" + bytes(8), "c", "audio", "flac"), (MP4, "v", "video", "mp4"),
    (b"\x1a\x45\xdf\xa3" + bytes(8), "v", "video", "mkv"), (M4A, "memo", "audio", "m4a"),
    (M4A, "memo.mp4", "audio", "m4a"), (ISOM, "memo.m4a", "audio", "m4a"), (ISOM, "clip.m4v", "video", "m4v"),
    (ISOM, "clip", "video", "mp4"),
])
def test_the_type_comes_from_the_bytes_whatever_the_name(data, name, modality, key):
    assert media_key(data, name, modality) == key


@pytest.mark.parametrize("data,name,modality,status,words", [
    (WAV, "tone.wav", "image", 415, "wrong modality: 'tone.wav' is audio (wav); this adapter takes image"),
    (PNG, "a.png", "audio", 415, "this adapter takes audio"),
    (MP4, "a.mp4", "image", 415, "is video (mp4)"),
    (M4A, "memo.m4a", "video", 415, "wrong modality: 'memo.m4a' is audio (m4a); this adapter takes video"),
    (b"hello world", "notes.txt", "image", 415, "not a recognised image, audio or video file"),
    (b"", "a.png", "image", 400, "empty"),
])
def test_wrong_or_unknown_media_is_refused_with_what_the_adapter_takes(data, name, modality, status, words):
    with pytest.raises(HTTPProblem) as err:
        media_key(data, name, modality)
    assert err.value.status == status and words in err.value.message


def test_every_media_member_the_shards_hold_can_be_uploaded_and_predicted():
    """The types ``scaling predict`` and ``scaling serve`` take are those the shard decoder reads (one list)."""
    from scaling.data.shards import media_kind
    from scaling.evaluation.predict import EXT_KEYS, KEY_MODALITY

    for ext in ("jpg", "jpeg", "png", "webp", "bmp", "wav", "flac", "mp3", "ogg", "m4a", "mp4", "avi", "webm", "mkv",
                "mov", "m4v"):
        assert KEY_MODALITY[EXT_KEYS[ext]] == media_kind(EXT_KEYS[ext]), ext
    assert {media_kind(k) for k in KEY_MODALITY} == {"image", "audio", "video"}
