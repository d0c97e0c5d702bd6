"""What the request-head limits (internal/api/request_limits.py) cost a request that is within them.

The same bare app (bench/bare_app.py) runs twice under uvicorn: with its default httptools protocol, and
with the service's bounded protocol (``RequestLimits(...).protocol()``, the defaults of the http
settings). wrk sends the same requests to both in alternated windows (``bench.wrk.compare``); the ratio
is bounded / default, for the JSON-sized and the page-sized body. ``python -m bench.request_limits``.

On a loaded machine the wrk windows swing by more than the cost; ``--instructions`` counts instead
what one request costs the protocol, in process under valgrind (callgrind counts instructions,
the same on a busy machine as on a quiet one): a request with nine typical headers is fed to each
protocol 200 and 2,200 times, and the difference divided by 2,000 is one request's instructions.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
import uvloop

from bench.common import ROOT, machine, say
from bench.wrk import add_wrk_arguments, compare, paths_file, stop, wait_http
from internal.api.request_limits import RequestLimits
from internal.config.settings import HttpSettings

Scope = MutableMapping[str, Any]
REQUEST = (
    b"GET /api/orders/b563feb7b2b84b6test HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120\r\n"
    b"Accept: text/html,application/json;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n"
    b'Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\nIf-None-Match: "abc"\r\n'
    b"Cache-Control: max-age=0\r\n\r\n"
)


def serve(port: int, bounded: bool) -> None:
    """The child process: the bare app, with or without the limits."""
    uvicorn.run(
        "bench.bare_app:app",
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        http=limits().protocol() if bounded else "httptools",
    )


def limits() -> RequestLimits:
    http = HttpSettings()
    return RequestLimits(http.max_request_line_bytes, http.max_headers, http.max_header_bytes)


async def tiny_app(
    _scope: Scope, _receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


class _Transport(asyncio.Transport):
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def feed(bounded: bool, requests: int) -> None:
    """``requests`` requests through one keep-alive connection of the protocol, each answered."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415
    from uvicorn.server import ServerState  # noqa: PLC0415

    protocol_class = limits().protocol() if bounded else HttpToolsProtocol
    loop = uvloop.new_event_loop()  # the service's loop (uvicorn picks uvloop when it is installed)
    config = uvicorn.Config(tiny_app, http=protocol_class, log_level="warning", access_log=False)
    config.load()
    state = ServerState()
    protocol = protocol_class(config, state, {}, loop)
    protocol.connection_made(_Transport())
    for _ in range(requests):
        protocol.data_received(REQUEST)
        while state.tasks:
            loop.run_until_complete(next(iter(state.tasks)))


def instructions(bounded: bool, requests: int) -> int:
    flag = "--bounded" if bounded else "--default"
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-m", "bench.request_limits", "--feed", str(requests), flag],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")
    return int(found.group(1))


def count_instructions() -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed for --instructions (Debian: apt-get install valgrind)")
    per_request = {}
    for bounded in (False, True):
        per_request[bounded] = (instructions(bounded, 2200) - instructions(bounded, 200)) / 2000
    extra = per_request[True] - per_request[False]
    say(f"  instructions per request: default protocol {per_request[False]:,.0f}, "
        f"bounded {per_request[True]:,.0f} (+{extra:,.0f}, {extra / per_request[False]:+.1%})")  # fmt: skip


def start(port: int, bounded: bool) -> subprocess.Popen[bytes]:
    flag = "--bounded" if bounded else "--default"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.request_limits", "--serve", str(port), flag], cwd=ROOT
    )
    wait_http(port, "/orders/probe", proc, f"the bare app ({flag})")
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bounded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--default", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--feed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--instructions", action="store_true", help="count instructions instead (valgrind)")
    add_wrk_arguments(parser)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.bounded)
        return 0
    if args.feed:
        feed(args.bounded, args.feed)
        return 0
    say(f"request limits: {machine()}")
    if args.instructions:
        count_instructions()
        return 0
    ports = args.bare_port, args.bare_port + 1
    default, bounded = start(ports[0], bounded=False), start(ports[1], bounded=True)
    try:
        for name, path in (("JSON-sized", "/api/orders/{}"), ("page-sized", "/orders/{}")):
            paths = paths_file(f"limits-{name}", [path.format(f"uid{i}") for i in range(100)])
            compare(f"{name} bounded", (ports[1], paths), (ports[0], paths), args, "default protocol")
    finally:
        stop(default)
        stop(bounded)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
