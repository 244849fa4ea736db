"""Helpers for tests that run real server processes: a free port, waiting until a server is ready."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Poll {base}/readyz until 200; fail with the server's log when it exits or never gets ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server at {base} not ready:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def serve_processes(n: int, env: dict[str, str], cwd: Path) -> Iterator[tuple[list[str], list[Path]]]:
    """Run `n` real `cityplus serve` processes (each on a free port, its log in cwd/server<i>.log) until the block
    ends; yields their base URLs and log files once every one answers /readyz."""
    procs: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    logs: list[Path] = []
    try:
        for i in range(n):
            port = free_port()
            log = cwd / f"server{i}.log"
            logs.append(log)
            with log.open("wb") as out:  # the child keeps its own copy of the descriptor
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "cityplus", "serve", "--host", "127.0.0.1", "--port", str(port)],
                    cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT))
            bases.append(f"http://127.0.0.1:{port}")
        for proc, base, log in zip(procs, bases, logs, strict=True):
            wait_ready(base, proc, log)
        yield bases, logs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
