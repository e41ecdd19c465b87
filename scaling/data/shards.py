"""The shard format: writing shard sets with their ``index.json``, finding and reading them back.

A shard is a plain (uncompressed) webdataset tar. One sample = consecutive members sharing a key:

    <key>.json                task, prompt/question, all answers, ids (see :func:`sample_record`)
    <key>.jpg | .png | .webp  image (the original bytes, or re-encoded when --max-side is given)
    <key>.flac | .wav         audio (converters write 16 kHz mono FLAC)
    <key>.mp4 | .avi | .webm  video (the original file), or <key>.f000.jpg, <key>.f001.jpg, ... (frames)
    <key>.npy | .safetensors  cached encoder features, float16 [views, levels, tokens, dim]

Next to a shard set, ``index.json`` records per split the shards and their sample counts (exact epoch
lengths without reading the data) and ``<split>-samples.json`` the sample ids and text lengths per
shard (low-data subsets and length bucketing without reading the data).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlparse

import filelock

from scaling.common.io import AtomicFile, write_json
from scaling.config.base import ConfigError
from scaling.data.sources import checks_paths

FORMAT = "scaling-shards/1"
INDEX_NAME = "index.json"
DEFAULT_SAMPLES_PER_SHARD = 5000  # ~1 GB of COCO-sized jpgs; see docs/data.md
DEFAULT_MAX_SHARD_BYTES = 1 << 30

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp")
AUDIO_EXTS = ("flac", "wav", "mp3", "ogg", "m4a")
VIDEO_EXTS = ("mp4", "avi", "webm", "mkv", "mov", "m4v")
FEATURE_EXTS = ("npy", "safetensors")
FRAME_RE = re.compile(r"^f(\d+)\.(jpg|jpeg|png|webp)$")


def media_kind(ext: str) -> str | None:
    """'image' | 'audio' | 'video' | 'frames' | 'features' for a member extension, else None."""
    ext = ext.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in AUDIO_EXTS:
        return "audio"
    if ext in VIDEO_EXTS:
        return "video"
    if ext in FEATURE_EXTS:
        return "features"
    if FRAME_RE.match(ext):
        return "frames"
    return None


def sample_record(
    id: str, task: str, dataset: str, split: str, answers: list[str], prompt: str = "", question: str | None = None,
    ids: list[str] | None = None, source: str | list[str] | None = None, **meta: Any,
) -> dict[str, Any]:
    """The ``<key>.json`` of a sample. ``answers`` are all references (5 COCO captions, 10 VQA answers)."""
    rec: dict[str, Any] = {"id": str(id), "task": task, "dataset": dataset, "split": split, "prompt": prompt}
    if question is not None:
        rec["question"] = question
    rec["answers"] = [str(a) for a in answers]
    rec["ids"] = [str(i) for i in (ids or [id])]
    if source is not None:
        rec["source"] = source
    if meta:
        rec["meta"] = meta
    return rec


def record_problem(rec: Any) -> str | None:
    """Why a sample's json record cannot be used (see :func:`sample_record`), or None: it must be an object whose
    ``answers`` is a list of strings and whose ``prompt``/``question``/``task``/``id`` are strings (or absent)."""
    if not isinstance(rec, dict):
        return f"the json member must be an object (see docs/data.md, shard format), got {type(rec).__name__}"
    answers = rec.get("answers", [])
    if not isinstance(answers, list):
        return f"'answers' in the json must be a list of strings, got {type(answers).__name__}"
    for a in answers:
        if not isinstance(a, str):
            return f"'answers' in the json must be a list of strings, it holds {json.dumps(a)[:80]}"
    for field in ("prompt", "question", "task"):
        value = rec.get(field)
        if value is not None and not isinstance(value, str):
            return f"'{field}' in the json must be a string, got {type(value).__name__} {json.dumps(value)[:80]}"
    if rec.get("id") is not None and not isinstance(rec["id"], (str, int)):
        return f"'id' in the json must be a string, got {type(rec['id']).__name__}"
    return None


def read_record(sample: dict) -> tuple[dict[str, Any] | None, str | None]:
    """(the sample's json record, None), or (None, why it is a bad sample): no json member, bytes that are not
    UTF-8 JSON, or a record :func:`record_problem` refuses."""
    try:
        rec = parse_json(sample)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, no json member
        return None, f"bad json: {err}"
    why = record_problem(rec)
    return (None, why) if why else (rec, None)


def text_length(rec: dict[str, Any]) -> int:
    """Words of prompt/question + the mean answer: a tokenizer-free proxy used for length bucketing (0 for a record
    that :func:`record_problem` refuses: that sample is skipped when read)."""
    if record_problem(rec):
        return 0
    prompt = rec.get("question") or rec.get("prompt") or ""
    answers = rec.get("answers") or [""]
    mean_answer = sum(len(a.split()) for a in answers) / max(len(answers), 1)
    return int(round(len(prompt.split()) + mean_answer))


# --------------------------------------------------------------------------------------- writing


@dataclasses.dataclass
class ShardEntry:
    name: str  # path relative to the index folder
    num_samples: int
    bytes: int


class ShardSetWriter:
    """Writes the samples of one split into ``pattern`` (``%06d`` = shard number), rolling over at
    ``samples_per_shard`` samples or ``max_bytes``; :meth:`close` returns the shard entries."""

    def __init__(self, pattern: str, index_dir: str, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
                 max_bytes: int = DEFAULT_MAX_SHARD_BYTES):
        if samples_per_shard < 1:
            raise ConfigError("--samples-per-shard must be >= 1")
        try:
            pattern % 0
        except TypeError:
            raise ConfigError(f"shard pattern {pattern!r} needs one %d field for the shard number (e.g. train-%06d.tar)") from None
        self.pattern = pattern
        self.index_dir = index_dir
        self.samples_per_shard = samples_per_shard
        self.max_bytes = max_bytes
        self.entries: list[ShardEntry] = []
        self.samples: dict[str, dict[str, list]] = {}
        self._tar: tarfile.TarFile | None = None
        self._file = None
        self._path = ""
        self._count = 0
        self._bytes = 0
        self._keys: set[str] = set()

    def _open(self) -> None:
        self._path = self.pattern % len(self.entries)
        os.makedirs(os.path.dirname(os.path.abspath(self._path)), exist_ok=True)
        self._file = AtomicFile(self._path, "wb")
        self._tar = tarfile.open(fileobj=self._file.file, mode="w|", format=tarfile.USTAR_FORMAT)
        self._count = 0
        self._bytes = 0
        name = os.path.relpath(os.path.abspath(self._path), os.path.abspath(self.index_dir))
        self.samples[name] = {"ids": [], "len": []}

    def _close_current(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._file.commit()
        name = os.path.relpath(os.path.abspath(self._path), os.path.abspath(self.index_dir))
        self.entries.append(ShardEntry(name, self._count, os.path.getsize(self._path)))
        self._tar = self._file = None

    def write(self, key: str, record: dict[str, Any], members: dict[str, bytes]) -> None:
        """One sample: its json record and media members ({ext: bytes})."""
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r}")
        self._keys.add(key)
        size = sum(len(v) for v in members.values())
        if self._tar is not None and (self._count >= self.samples_per_shard or (self._count and self._bytes + size > self.max_bytes)):
            self._close_current()
        if self._tar is None:
            self._open()
        items = {"json": json.dumps(record, ensure_ascii=False).encode("utf-8"), **members}
        for ext in sorted(items):
            data = items[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = 0  # reproducible shards
            info.mode = 0o444
            self._tar.addfile(info, io.BytesIO(data))
        self._count += 1
        self._bytes += size
        name = list(self.samples)[-1]
        self.samples[name]["ids"].append(record["id"])
        self.samples[name]["len"].append(text_length(record))

    def roll(self) -> None:
        """End the current shard now (the next sample starts a new one)."""
        self._close_current()

    def close(self) -> list[ShardEntry]:
        self._close_current()
        return self.entries

    def abort(self) -> None:
        if self._tar is not None:
            with contextlib.suppress(Exception):
                self._tar.close()
            self._file.abort()
            self._tar = None


def _locked(path: str) -> filelock.FileLock:
    """An exclusive lock on ``path`` across processes (``.NAME.lock`` beside it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return filelock.FileLock(os.path.join(os.path.dirname(os.path.abspath(path)), "." + os.path.basename(path) + ".lock"))


def _atomic_json(path: str, data: Any, indent: int | None = 1) -> None:
    write_json(path, data, indent=indent, ensure_ascii=False)


def update_index(index_dir: str, split: str, entry: dict[str, Any], samples: dict[str, dict[str, list]]) -> str:
    """Add/replace ``split`` in ``index_dir/index.json`` (created when missing; safe across processes)
    and write ``<split>-samples.json``. Returns the index path."""
    path = os.path.join(index_dir, INDEX_NAME)
    samples_file = f"{split}-samples.json"
    _atomic_json(os.path.join(index_dir, samples_file), samples, indent=None)
    with _locked(path):
        index = {"format": FORMAT, "splits": {}}
        if os.path.exists(path):
            index = read_json(path, "index")
            index.setdefault("splits", {})
        index["format"] = FORMAT
        entry = dict(entry)
        entry["samples_file"] = samples_file
        entry["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        index["splits"][split] = entry
        _atomic_json(path, index)
    return path


def read_json(path: str, what: str = "json") -> Any:
    """Read a local or remote JSON file; errors name the file."""
    try:
        with open_url(path) as fh:
            return json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path!r} does not exist") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{what} file {path!r} is not valid JSON: {err}") from None


# --------------------------------------------------------------------------------------- reading


def is_local(url: str) -> bool:
    scheme = urlparse(url).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(url: str) -> str:
    return urlparse(url).path if url.startswith("file:") else url


def open_url(url: str):
    """Open a local path or any URL webdataset's ``gopen`` accepts (pipe:, http(s), ...) for reading."""
    if is_local(url):
        return open(local_path(url), "rb")
    from webdataset.gopen import gopen

    return gopen(url, "rb")


def split_member(name: str) -> tuple[str | None, str | None]:
    """'dir/abc.f001.jpg' → ('dir/abc', 'f001.jpg') as webdataset splits keys and extensions."""
    m = re.match(r"^((?:.*/|)[^./]+)\.([^/]*)$", name)
    if not m:
        return None, None
    return m.group(1), m.group(2).lower()


class ShardReadError(Exception):
    pass


def member_problem(info: tarfile.TarInfo) -> str | None:
    """Why a tar member has no place in a shard (a link, a device, an absolute or ``..`` name), or None.

    Shards are read into memory, never extracted, so such members cannot write outside the data folder; they
    are still never read as samples, and ``scaling data inspect`` reports them as problems."""
    name = info.name
    if info.issym():
        return f"member {name!r} is a symbolic link (to {info.linkname!r})"
    if info.islnk():
        return f"member {name!r} is a hard link (to {info.linkname!r})"
    if not (info.isreg() or info.isdir()):
        return f"member {name!r} is not a regular file (device, fifo or other special file)"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"member {name!r} has an absolute name"
    if ".." in name.replace("\\", "/").split("/"):
        return f"member {name!r} has '..' in its name (it points outside the archive)"
    return None


def iter_members(url: str, on_problem: Callable[[str], None] | None = None) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """(tar, member) for each regular file with a plain relative name; local files are read with seeks (skipping
    is cheap). Any other member is passed over; ``on_problem(message)`` hears about it (:func:`member_problem`)."""

    def usable(info: tarfile.TarInfo) -> bool:
        problem = member_problem(info)
        if problem and on_problem is not None:
            on_problem(problem)
        return problem is None and info.isreg()

    if is_local(url):
        tar = tarfile.open(local_path(url), mode="r:")
        try:
            while True:
                info = tar.next()
                if info is None:
                    break
                tar.members = []  # keep memory flat on large shards
                if usable(info):
                    yield tar, info
        finally:
            tar.close()
    else:
        stream = open_url(url)
        abandoned = False
        try:
            tar = tarfile.open(fileobj=stream, mode="r|*")
            for info in tar:
                if usable(info):
                    yield tar, info
                tar.members = []
        except GeneratorExit:  # the reader stopped early (it has what it wanted)
            abandoned = True
            raise
        finally:
            close_stream(stream, abandoned)


def close_stream(stream, abandoned: bool = False) -> None:
    """Close a remote stream. A stream ``abandoned`` before its end is closed without checking the exit
    status of its command: a ``pipe:`` command (curl, aws s3 cp, cat) that still writes when the pipe
    closes fails (curl: exit 23), which is expected then. A stream read to the end still reports a
    failing command (webdataset's ``Pipe`` raises ``OSError``)."""
    if not abandoned:
        stream.close()
        return
    if hasattr(stream, "ignore_errors"):  # webdataset.gopen.Pipe
        stream.ignore_errors = True
    with contextlib.suppress(OSError):
        stream.close()


def read_positions(url: str, positions: Iterable[int] | None = None, select: str | None = None) -> Iterator[tuple[int, dict | None, str]]:
    """Yield ``(position, sample, key)`` for the wanted sample positions of a shard, in order.

    ``positions`` (sorted; None = all) are sample indices within the shard; other samples are skipped
    without reading their bytes (local shards) and reading stops after the last wanted one. A sample
    is ``{"__key__", "__url__", ext: bytes, ...}``; ``select`` (a regex on extensions) reads only some
    members. A shard that cannot be opened or ends early yields ``(position, None, reason)`` for each
    wanted position it could not deliver (when ``positions`` is given).
    """
    wanted = None if positions is None else list(positions)
    if wanted is not None and not wanted:
        return
    last = wanted[-1] if wanted is not None else None
    wanted_set = set(wanted) if wanted is not None else None
    sel = re.compile(select) if select else None
    pos = -1
    key = None
    current: dict | None = None
    delivered = set()

    def emit():
        if current is not None and (wanted_set is None or pos in wanted_set):
            delivered.add(pos)
            return True
        return False

    members = iter_members(url)
    try:
        for tar, info in members:
            k, ext = split_member(info.name)
            if k is None or os.path.basename(k).startswith("__"):
                continue
            if k != key:
                if emit():
                    yield pos, current, key
                pos += 1
                key = k
                current = None
                if last is not None and pos > last:
                    return
                if wanted_set is None or pos in wanted_set:
                    current = {"__key__": k, "__url__": url}
            if current is not None and (sel is None or sel.match(ext) or ext == "json"):
                fh = tar.extractfile(info)
                current[ext] = fh.read() if fh is not None else b""
        if emit():
            yield pos, current, key
    except (OSError, tarfile.TarError, EOFError) as err:
        reason = f"{type(err).__name__}: {err}"
        if wanted is not None:
            for p in wanted:
                if p not in delivered:
                    yield p, None, f"{url}#{p} ({reason})"
            return
        raise ShardReadError(f"cannot read shard {url}: {reason}") from err
    finally:
        members.close()
    if wanted is not None:
        for p in wanted:
            if p not in delivered:
                yield p, None, f"{url}#{p} (shard has fewer samples than its index says)"


def count_samples(url: str) -> tuple[int, list[str], list[int]]:
    """Scan a shard: (number of samples, ids, text lengths), reading only the json members."""
    n, ids, lens = 0, [], []
    for _, sample, key in read_positions(url, None, select=r"^json$"):
        n += 1
        rec = (read_record(sample)[0] if sample and "json" in sample else None) or {}  # a bad one: its key
        ids.append(str(rec.get("id", key)))
        lens.append(text_length(rec) if rec else 0)
    return n, ids, lens


def parse_json(sample: dict) -> dict[str, Any]:
    raw = sample.get("json")
    if raw is None:
        raise ValueError(f"sample {sample.get('__key__')} has no json member")
    return json.loads(raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw)


# --------------------------------------------------------------------------------------- sources


@dataclasses.dataclass
class ShardRef:
    """One shard of a split as the loader sees it."""

    url: str
    name: str
    num_samples: int
    ids: list[str] | None = None
    lengths: list[int] | None = None


@dataclasses.dataclass
class SplitSource:
    shards: list[ShardRef]
    meta: dict[str, Any]  # the split's index entry (dataset, task, modality, features, ...)
    index_path: str | None

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)


def expand_urls(pattern: str) -> list[str]:
    import braceexpand

    return list(braceexpand.braceexpand(pattern))


def _join(base: str, name: str) -> str:
    if is_local(base):
        return os.path.join(os.path.dirname(local_path(base)), name)
    return base.rsplit("/", 1)[0] + "/" + name


def _exists(url: str) -> bool:
    if is_local(url):
        return os.path.exists(local_path(url))
    if url.startswith("pipe:"):
        return False
    try:
        fh = open_url(url)
        try:
            return len(fh.read(1)) == 1
        finally:
            fh.close()
    except Exception:  # noqa: BLE001 - any failure means "no index there"
        return False


def _url_key(url: str) -> str:
    return os.path.abspath(local_path(url)) if is_local(url) else url


def _named_paths(url: str) -> list[str]:
    """The ``/name`` tails a shard URL may end a shard name with, longest first.

    A shard name counts only as a whole word: ``https://host/coco/train-000000.tar`` and the ``pipe:``
    forms ``pipe:curl -s https://host/coco/train-000000.tar`` or ``pipe:aws s3 cp s3://b/coco/train-000000.tar -``
    (arguments after the name) all name ``/train-000000.tar`` and ``/coco/train-000000.tar``.
    """
    command = url[len("pipe:"):] if url.startswith("pipe:") else url
    tails = []
    for word in command.split():
        word = word.strip("'\"")
        tails += [word[i:] for i, ch in enumerate(word) if ch == "/" and i + 1 < len(word)]
    return sorted(tails, key=len, reverse=True)


def _index_candidates(url: str) -> list[str]:
    if url.startswith("pipe:"):
        return []
    if is_local(url):
        d = os.path.dirname(os.path.abspath(local_path(url)))
        return [os.path.join(d, INDEX_NAME), os.path.join(os.path.dirname(d), INDEX_NAME)]
    base = url.rsplit("/", 1)[0]
    return [base + "/" + INDEX_NAME, base.rsplit("/", 1)[0] + "/" + INDEX_NAME]


def _load_samples_file(index_path: str, entry: dict[str, Any]) -> dict[str, dict[str, list]] | None:
    name = entry.get("samples_file")
    if not name:
        return None
    path = _join(index_path, name)
    if not _exists(path):
        return None
    return read_json(path, "samples")


def refuse_commands(source: str, index: str | None, allow_pipe: bool, what: str = "data") -> None:
    """A ConfigError when ``source`` or ``index`` names a URL that runs a shell command (``pipe:``, after
    ``::`` splitting and brace expansion, in any case) and the user has not enabled them (``data.allow_pipe``)."""
    from scaling.config.stored import is_command_url, source_urls

    urls = source_urls(source) + (source_urls(str(index)) + [str(index)] if index else [])
    commands = list(dict.fromkeys(u for u in urls if is_command_url(u)))
    if not commands:
        return
    if not allow_pipe:
        raise ConfigError(
            f"{what}: {commands[0]!r} is a pipe: source, a shell command, and pipe: sources are off: set "
            f"data.allow_pipe=true in your own config or command line if you trust it (a checkpoint's stored "
            f"config never enables them; `scaling eval --data 'pipe:...'` enables its own argument)")
    odd = [u for u in commands if not u.startswith("pipe:")]
    if odd:
        raise ConfigError(f"{what}: {odd[0]!r}: write a pipe: source as 'pipe:COMMAND' (lower case, nothing before it)")


def resolve_split(source: str, split: str, index: str | None = None, need_ids: bool = False, what: str = "data",
                  allow_pipe: bool = False, scan: bool = True) -> SplitSource:
    """Resolve a config source string (see :mod:`scaling.config.data`) to its shards and counts.

    Shards found in an index get their counts from it; shards without one are scanned (json members
    only) with a warning (``scan=False``: given 0 samples, ``need_ids`` leaves their ids None). ``need_ids`` also
    loads per-sample ids and text lengths. A ``pipe:`` URL anywhere
    in ``source`` or ``index`` is refused unless ``allow_pipe`` (:func:`refuse_commands`).
    """
    import logging

    refuse_commands(source, index, allow_pipe, what)
    log = logging.getLogger(__name__)
    shards: list[ShardRef] = []
    meta: dict[str, Any] = {}
    index_path_used = None
    for part in [p.strip() for p in source.split("::") if p.strip()]:
        ref, _, sub_split = part.partition("#")
        sub_split = sub_split or split
        is_index = ref.endswith(".json") or (is_local(ref) and os.path.isdir(local_path(ref)))
        if is_index:
            path = os.path.join(local_path(ref), INDEX_NAME) if is_local(ref) and os.path.isdir(local_path(ref)) else ref
            idx = read_json(path, "index")
            splits = idx.get("splits", {})
            if sub_split not in splits:
                raise ConfigError(f"{what}: index {path!r} has no split {sub_split!r}; it has {sorted(splits)} (use '{ref}#SPLIT')")
            entry = splits[sub_split]
            samples = _load_samples_file(path, entry) if need_ids else None
            for sh in entry["shards"]:
                info = (samples or {}).get(sh["name"], {})
                shards.append(ShardRef(_join(path, sh["name"]), sh["name"], int(sh["num_samples"]), info.get("ids"), info.get("len")))
            meta = meta or entry
            index_path_used = index_path_used or path
            continue
        urls = expand_urls(ref)
        if not urls:
            raise ConfigError(f"{what}: {ref!r} expands to no shard")
        cand = [index] if index else _index_candidates(urls[0])
        entry_by_name: dict[str, tuple[dict, dict | None, str, dict]] = {}
        for c in cand:
            if c and _exists(c):
                idx = read_json(c, "index")
                for _sname, sentry in idx.get("splits", {}).items():
                    samples = _load_samples_file(c, sentry) if need_ids else None
                    for sh in sentry.get("shards", []):
                        item = (sh, (samples or {}).get(sh["name"]), c, sentry)
                        entry_by_name[_url_key(_join(c, sh["name"]))] = item
                        entry_by_name.setdefault("/" + sh["name"], item)
                break
        for url in urls:
            hit = entry_by_name.get(_url_key(url))
            if hit is None:
                tail = [k for k in _named_paths(url) if k in entry_by_name]
                hit = entry_by_name[tail[0]] if tail else None
            if hit is not None:
                sh, info, ipath, sentry = hit
                info = info or {}
                shards.append(ShardRef(url, sh["name"], int(sh["num_samples"]), info.get("ids"), info.get("len")))
                meta = meta or sentry
                index_path_used = index_path_used or ipath
            elif not scan:
                shards.append(ShardRef(url, os.path.basename(url), 0, None, None))
            else:
                log.warning("%s: no index entry for shard %s; counting its samples by reading it (write an index with "
                            "`scaling data inspect --write-index` to skip this)", what, url)
                try:
                    n, ids, lens = count_samples(url)
                except (ShardReadError, OSError) as err:
                    log.warning("%s: cannot read shard %s (%s); it is skipped", what, url, err)
                    n, ids, lens = 0, [], []
                shards.append(ShardRef(url, os.path.basename(url), n, ids, lens))
    if not shards:
        raise ConfigError(f"{what}: source {source!r} names no shards")
    if need_ids and scan:
        for sh in shards:
            if sh.ids is None or len(sh.ids) != sh.num_samples:
                log.warning("%s: shard %s has no per-sample ids in its index; scanning it", what, sh.url)
                try:
                    n, sh.ids, sh.lengths = count_samples(sh.url)
                except (ShardReadError, OSError):
                    sh.ids, sh.lengths = [f"{sh.name}#{i}" for i in range(sh.num_samples)], [0] * sh.num_samples
                    continue
                if n != sh.num_samples:
                    log.warning("%s: shard %s holds %d samples, its index says %d", what, sh.url, n, sh.num_samples)
                    sh.num_samples = n
    return SplitSource(shards, meta, index_path_used)


# --------------------------------------------------------------------------------------- pre-flight checks

PLACEHOLDER_PREFIX = "/path/to/"  # the placeholders of the shipped configs (configs/*.yaml, marked >>> SET)
REMOTE_PREFIXES = ("pipe:", "http://", "https://", "s3://", "gs://")


def _listed(urls: list[str], limit: int = 3) -> str:
    shown = ", ".join(urls[:limit])
    return shown + (f", ... ({len(urls)} in all)" if len(urls) > limit else "")


def missing_local_shards(shards: list[ShardRef]) -> list[str]:
    """URLs of the local shards that do not exist (remote shards are not looked at)."""
    return [sh.url for sh in shards if is_local(sh.url) and not os.path.exists(local_path(sh.url))]


def all_shards_missing_error(shards: list[ShardRef], source: str, what: str = "data") -> ConfigError | None:
    """A ConfigError when every shard of a resolved split is a local file that does not exist, else None.

    Some missing shards are tolerated (their samples are skipped and counted); none at all is a
    misconfiguration that would otherwise end in DataLoader worker tracebacks."""
    missing = missing_local_shards(shards)
    if not shards or len(missing) < len(shards):
        return None
    return ConfigError(
        f"{what}={source!r}: none of its {len(shards)} shard file(s) exists (missing: {_listed(missing)}). "
        f"The files were moved or deleted, or the source points at the wrong place: re-create them with "
        f"`scaling data convert`, or set {what} to where the shards are; check a shard set with "
        f"`scaling data inspect DIR`")


def check_source(source: str, split: str, index: str | None = None, what: str = "data", allow_pipe: bool = False) -> list[str]:
    """Problems of a split source (see :mod:`scaling.config.data`) visible without reading any shard.

    Refused: a ``/path/to/`` placeholder, a local index (folder or ``.json``) that does not exist or
    lacks the split, and a local source (file, folder, brace pattern) of which no shard file exists.
    Remote sources (``pipe:``, ``http(s)://``, ``s3://``, ``gs://``) and registered sources
    (:mod:`scaling.data.sources`) are not checked.
    Sources are resolved as :func:`resolve_split` does; indexes are read, shards are not.
    """
    problems: list[str] = []
    try:
        refuse_commands(str(source), index, allow_pipe, what)
    except ConfigError as err:
        return err.problems
    for part in [p.strip() for p in str(source).split("::") if p.strip()]:
        ref, _, sub_split = part.partition("#")
        if ref.startswith(PLACEHOLDER_PREFIX):
            problems.append(
                f"{what}={part!r} is a placeholder of the shipped configs: set it to your shards, e.g. "
                f"{what}=/data/shards/coco{'#' + sub_split if sub_split else ''} (the folder holding index.json) or "
                f"{what}='/data/shards/coco/{sub_split or split}-{{000000..000031}}.tar'"
                + ("" if what == "data.train" else f", or {what}=null to leave it out"))
            continue
        if ref.startswith(REMOTE_PREFIXES) or not checks_paths(ref) or not is_local(ref):
            continue
        path = local_path(ref)
        if os.path.isdir(path) and not os.path.exists(os.path.join(path, INDEX_NAME)):
            tars = sorted(n for n in os.listdir(path) if n.endswith(".tar"))
            hint = (f" it holds {len(tars)} .tar file(s): write the index with `scaling data inspect {ref} --write-index`, "
                    f"or give them as a pattern, e.g. {what}='{os.path.join(ref, tars[0])}'") if tars else (
                " it holds no shards either: create them with `scaling data convert`")
            problems.append(f"{what}={part!r}: the folder has no {INDEX_NAME};{hint}")
            continue
        if ref.endswith(".json") or os.path.isdir(path):
            if not os.path.exists(path):
                problems.append(f"{what}={part!r}: the index file {path!r} does not exist; point {what} at a shard folder "
                                f"(with its {INDEX_NAME}) or an existing index, created by `scaling data convert`")
                continue
            try:
                shards = resolve_split(part, split, index, what=what, allow_pipe=allow_pipe).shards
            except ConfigError as err:
                problems += err.problems
                continue
            err = all_shards_missing_error(shards, part, what)
            if err is not None:
                problems += err.problems
            continue
        urls = expand_urls(ref)
        missing = [u for u in urls if not os.path.exists(local_path(u))]
        if urls and len(missing) == len(urls):
            what_missing = "does not exist (no such file or folder)" if len(urls) == 1 else (
                f"matches no existing file (none of its {len(urls)} shards exists: {_listed(missing)})")
            problems.append(
                f"{what}={part!r} {what_missing}. Set {what} to converted shards: their folder (holding {INDEX_NAME}) "
                f"or a pattern like '/data/shards/coco/{split}-{{000000..000031}}.tar' (create them with "
                f"`scaling data convert`; check them with `scaling data inspect DIR`)")
    return problems


def check_index_path(index: str | None, what: str = "data.index") -> list[str]:
    """``data.index`` (an explicit index.json): a placeholder or a missing local file is a problem."""
    if not index:
        return []
    if str(index).startswith(PLACEHOLDER_PREFIX):
        return [f"{what}={index!r} is a placeholder: set it to the shards' index.json, or {what}=null to find it next to the shards"]
    if is_local(index) and not index.startswith(REMOTE_PREFIXES) and not os.path.isfile(local_path(index)):
        return [f"{what}={index!r} does not exist: set it to the shards' index.json (written by `scaling data convert` "
                f"or `scaling data inspect DIR --write-index`), or {what}=null to find it next to the shards"]
    return []
