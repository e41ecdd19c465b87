"""A real ``scaling serve`` for tests (a subprocess on loopback, a free port) and the client calls that compare it with
``scaling predict``: shared by tests/serve/ (tiny adapters) and tests/demo/ (the demo's own adapter). Importable from
any test as ``serve_helpers`` (pyproject's ``pythonpath`` names tests/support)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``scaling serve --checkpoint run --port <free> *args`` from this checkout, its output collected in ``lines``."""

    def __init__(self, run: str, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scaling", "serve", "--checkpoint", run, "--port", str(self.port), *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"scaling serve exited with {self.proc.returncode}:\n{self.log}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if json.load(r)["ok"]:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"scaling serve did not answer within {timeout:.0f} s:\n{self.log}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def serving(run: str, *args: str):
    """A started :class:`Server` on ``run``, ready to answer; stopped on exit."""
    srv = Server(run, *args)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def multipart(fields: dict[str, tuple[str, bytes] | str]) -> tuple[bytes, str]:
    boundary = "----scalingtest7d1f"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            filename, data = value
            out.write(f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                      "Content-Type: application/octet-stream\r\n\r\n".encode())
            out.write(data)
        else:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode())
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def post(url: str, body: bytes, ctype: str | None) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/v1/generate", data=body, method="POST")
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def post_file(url: str, path: str, **fields) -> tuple[int, dict]:
    with open(path, "rb") as fh:
        body, ctype = multipart({"file": (os.path.basename(path), fh.read()), **{k: str(v) for k, v in fields.items()}})
    return post(url, body, ctype)


def predict_all(run: str, paths: list[str], capsys, *extra: str) -> list[str]:
    """``scaling predict --json`` on ``paths`` (one call, in this process; ``capsys`` reads its output) → their
    predictions, in order."""
    from scaling.cli.main import main

    capsys.readouterr()
    assert main(["predict", "--checkpoint", run, *paths, "--json", *extra]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines() if line.startswith("{")]
    by_file = {o["file"]: o["prediction"] for o in out}
    return [by_file[p] for p in paths]


def predict(run: str, path: str, capsys, *extra: str) -> str:
    return predict_all(run, [path], capsys, *extra)[0]
