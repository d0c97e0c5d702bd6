"""wrk runs of the HTTP benchmarks (bench/http.py, bench/search.py): the load, its parsed figures,
the bare reference app and the service process, each answering before it is measured."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.common import CACHE, ROOT, CpuMeter, Service, say, start_service

WRK_SCRIPT = ROOT / "bench" / "wrk_paths.lua"
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str  # wrk's non-2xx and socket error lines, empty when there were none

    def line(self) -> str:
        text = f"{self.rps:>9,.0f} req/s   p50 {self.p50_ms:6.2f} ms   p99 {self.p99_ms:6.2f} ms"
        return text + (f"   ({self.errors})" if self.errors else "")


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * UNITS_MS[match[2]]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    errors = [
        line.strip() for line in output.splitlines() if line.strip().startswith(("Non-2xx", "Socket errors"))
    ]
    return WrkResult(
        float(rps[1]), _duration_ms(p50[1]), _duration_ms(p99[1]), int(total[1]), "; ".join(errors)
    )


def paths_file(name: str, paths: list[str]) -> Path:
    """A file of request paths, one a line, for ``bench/wrk_paths.lua``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"paths-{name}.txt"
    path.write_text("\n".join(paths) + "\n", encoding="ascii")
    return path


def wrk(port: int, paths: Path, seconds: int, threads: int, connections: int) -> WrkResult:
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}",
    ]  # fmt: skip
    done = subprocess.run(
        command,
        env={**os.environ, "WRK_PATHS_FILE": str(paths)},
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    return parse_wrk(done.stdout)


def measure(name: str, port: int, paths: Path, args: argparse.Namespace) -> WrkResult:
    # A short run first: connections opened, code paths, pages and the database's buffers warm.
    wrk(port, paths, args.prime_seconds, args.threads, args.connections)
    result = wrk(port, paths, args.seconds, args.threads, args.connections)
    say(f"  {name:<30}{result.line()}")
    return result


@dataclass(frozen=True)
class Compared:
    """A target measured in windows alternated with its reference: ``result`` and ``reference`` are
    the windows of the median pair, ``ratio`` the median of the pairs' ratios."""

    result: WrkResult
    reference: WrkResult
    ratio: float
    ratios: tuple[float, ...]


def compare(
    name: str,
    target: tuple[int, Path],
    reference: tuple[int, Path],
    args: argparse.Namespace,
    reference_name: str = "bare",
) -> Compared:
    """``target`` (port, paths) next to ``reference`` in ``args.pairs`` alternated windows of
    ``args.seconds`` each (reference, target, reference, ...). This machine's speed swings by a third
    within minutes, and even within one minute: one long run of each, minutes apart, compares two
    machines. The ratio of each pair is taken, and the median reported."""
    for port, paths in (reference, target):  # connections opened, code paths and caches warm
        wrk(port, paths, args.prime_seconds, args.threads, args.connections)
    pairs, meter = [], CpuMeter()
    for _ in range(args.pairs):
        ref = wrk(*reference, args.seconds, args.threads, args.connections)
        got = wrk(*target, args.seconds, args.threads, args.connections)
        pairs.append((got.rps / ref.rps, got, ref))
    pairs.sort(key=lambda pair: pair[0])
    ratio, result, ref = pairs[len(pairs) // 2]
    say(f"  {name:<30}{result.line()}   = {ratio:.2f} x {reference_name} ({ref.rps:,.0f} req/s)   "
        f"pairs {' '.join(f'{r:.2f}' for r, _g, _f in pairs)}; {meter.line()}")  # fmt: skip
    return Compared(result, ref, ratio, tuple(r for r, _g, _f in pairs))


def http_status(port: int, path: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if http_status(port, path)[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not answer 200 on {path} within {timeout_s:.0f}s")


def start_bare(port: int, app: str = "app") -> subprocess.Popen[bytes]:
    """A bare_app.py app (``app``, or ``app_with_headers``) in its own uvicorn process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"bench.bare_app:{app}", "--port", str(port),
         "--log-level", "warning", "--no-access-log", "--no-server-header"],
        cwd=ROOT,
    )  # fmt: skip
    wait_http(port, "/orders/probe", proc, "the bare app")  # both bare apps serve it
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def started_service(dsn: str, topic: str, port: int, group: str, **env: str) -> Service:
    service = start_service(dsn, topic, port, group, **env)
    try:
        wait_http(port, "/readyz", service.proc, f"the service (log: {service.log})")
    except BaseException:
        service.stop()
        raise
    return service


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def add_wrk_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=int, default=4, help="length of each measured wrk window")
    parser.add_argument("--pairs", type=int, default=5, help="alternated reference/target windows per figure")
    parser.add_argument("--prime-seconds", type=int, default=2, help="length of the discarded run before")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--bare-port", type=int, default=18081)
