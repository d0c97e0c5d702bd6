"""Runs the real service (cmd/service.py) as a subprocess against the test's topics and schema."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers

from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class HttpAnswer:
    status: int
    headers: Headers  # case-insensitive, as HTTP header names are
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _headers(items: list[tuple[str, str]]) -> Headers:
    return Headers(raw=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items])


SERVICE = ROOT / "cmd" / "service.py"


class ServiceProcess:
    def __init__(self, env: dict[str, str], log_path: Path, script: Path = SERVICE) -> None:
        self.env = env
        self.port = int(env["HTTP_PORT"])
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "serve"],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout_s: float = 10, method: str = "GET"
    ) -> HttpAnswer:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers=headers or {}, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - loopback only
                return HttpAnswer(response.status, _headers(response.headers.items()), response.read())
        except urllib.error.HTTPError as err:
            return HttpAnswer(err.code, _headers(err.headers.items()), err.read())

    def wait_ready(self, timeout_s: float = 60) -> None:
        def ready() -> bool:
            self.assert_alive()
            try:
                return self.get("/readyz", timeout_s=2).status == 200
            except OSError:
                return False

        wait_until(ready, timeout_s=timeout_s, what=f"the service on port {self.port} to be ready")

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"service exited with {self.proc.returncode}; log tail:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout_s)
        self._log.close()
        return code

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._log.close()

    def log_lines(self) -> list[str]:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_lines()[-n:])


# The type of conftest's start_service fixture: start_service(env, name=..., ready=True, script=...).
StartService = Callable[..., ServiceProcess]
