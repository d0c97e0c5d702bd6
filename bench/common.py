"""Shared plumbing of the benchmarks: a scratch schema and topic, an input file, the service process.

Benchmarks print each figure next to a reference measured in the same run, because these machines
are noisy; they are not tests and assert nothing about time.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from internal.pkg.kafka_offsets import CommittedOffsets, partition_ends
from internal.pkg.kafka_topics import TopicSpec, delete_topics, ensure_topics
from internal.store import migrations

ROOT = Path(__file__).resolve().parents[1]
# The tree whose service the benchmarks start (cmd/service.py): this one unless BENCH_SERVICE_ROOT
# names another checkout, e.g. the base commit in a worktree, measured by the same benchmark code.
SERVICE_ROOT = Path(os.environ.get("BENCH_SERVICE_ROOT") or ROOT).resolve()
BROKERS = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
DSN = os.environ.get("POSTGRES_DSN", "postgresql://orders:orders@127.0.0.1:5432/orders")
CACHE = ROOT / ".local" / "bench"


def say(text: str) -> None:
    print(text, flush=True)


def machine() -> str:
    with psycopg.connect(DSN) as conn:
        pg = conn.execute("SHOW server_version").fetchone()
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {pg[0] if pg else '?'}"
    )


class CpuMeter:
    """The share of the machine's CPU time the hypervisor gave to others ("steal") and the share left
    idle, since the meter was made. On this VM the steal swings from ~0 to ~30 % within minutes, and
    the latency figures with it: every latency figure is printed next to the steal of its window.

    Given the orders of the window, the line adds the broker's CPU per order too (the project's own
    broker, when it is the one benchmarked): on two cores it shares the machine with the service and
    PostgreSQL, and a drain is limited by what all three together spend per order."""

    def __init__(self) -> None:
        self._start = _cpu_times()
        self._broker = broker_pid()
        self._broker_start = process_cpu_s(self._broker) if self._broker is not None else 0.0

    def line(self, orders: int = 0) -> str:
        now = _cpu_times()
        if not any(now):
            return "CPU steal unknown (no /proc/stat)"
        spent = [b - a for a, b in zip(self._start, now, strict=True)]
        total = sum(spent) or 1
        # /proc/stat: user nice system idle iowait irq softirq steal ...
        text = f"CPU stolen by the host {spent[7] / total:.1%}, idle {spent[3] / total:.1%}"
        if orders and self._broker is not None:
            broker_s = process_cpu_s(self._broker) - self._broker_start
            text += f", the broker {broker_s / orders * 1e6:.1f} us/order"
        return text


def broker_pid() -> int | None:
    """The pid of the broker scripts/kafka.sh runs for this tree when ``BROKERS`` is that broker: one
    local address (the script manages no other), its state directory found as the script finds it,
    and a live Kafka process behind the pid file; None otherwise."""
    managed = re.fullmatch(r"(?:127\.0\.0\.1|localhost):([0-9]+)", BROKERS)
    if managed is None:
        return None
    port = managed.group(1)
    default = ROOT / ".local" / ("kafka" if port == "9092" else f"kafka-{port}")
    state = Path(os.environ.get("KAFKA_STATE_DIR") or default)
    try:
        pid = int((state / "broker.pid").read_text(encoding="ascii").strip())
        listeners = (state / "server.properties").read_text(encoding="utf-8")
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    entries = {e.strip() for line in listeners.splitlines() if line.startswith("listeners=")
               for e in line.removeprefix("listeners=").split(",")}  # fmt: skip
    ours = f"PLAINTEXT://127.0.0.1:{port}" in entries or f"PLAINTEXT://localhost:{port}" in entries
    return pid if ours and b"kafka.Kafka" in command else None


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (all its threads), from /proc/<pid>/stat;
    0.0 when it cannot be read (not Linux, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # The command name (field 2) may hold spaces: the fields after its closing ")" are fixed.
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def backends_cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend in ``pids`` (ours: other clients of the shared
    server are not counted); a backend that is gone is left out."""
    return {pid: process_cpu_s(pid) for pid in pids if Path(f"/proc/{pid}").exists()}


def backend_pids(group: str) -> list[int]:
    """The server processes of the connections of the service started for ``group`` (its pools'
    connections are named ``<group>-<pool>``)."""
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE starts_with(application_name, %s)", (f"{group}-",)
        ).fetchall()
    return [int(row[0]) for row in rows]


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``backends_cpu_s`` readings (a backend that started in between
    counts from its start; one that ended in between is lost)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _cpu_times() -> list[int]:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()[1:]
    except OSError:  # not Linux: the figures are printed without it
        return [0] * 10
    return [int(x) for x in fields[:10]] + [0] * (10 - len(fields[:10]))


def orders_file(n: int, seed: int = 1) -> Path:
    """A cached file of ``n`` valid generated orders (1-5 items), made once per size and seed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"orders-{n}-{seed}.json"
    if not path.exists():
        say(f"generating {n} orders into {path}")
        subprocess.run(
            [sys.executable, str(ROOT / "gen_orders.py"), "-n", str(n), "--seed", str(seed), "-o", str(path)],
            check=True,
        )
    return path


def read_orders(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        for raw in f:
            line = raw.strip().rstrip(b",")
            if line.startswith(b"{"):
                yield line


@contextmanager
def scratch(partitions: int = 6) -> Iterator[tuple[str, str]]:
    """A migrated schema and an empty topic (+ .dlq) of their own, removed afterwards: (dsn, topic)."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    dsn = make_conninfo(DSN, options=f"-c search_path={name}")
    migrations.apply_pending(dsn)
    try:
        with scratch_topic(partitions) as topic:
            yield dsn, topic
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@contextmanager
def scratch_topic(partitions: int = 6) -> Iterator[str]:
    """An empty topic (+ .dlq) of its own, deleted afterwards."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topics(BROKERS, [TopicSpec(topic, partitions), TopicSpec(f"{topic}.dlq", 1)])
    try:
        yield topic
    finally:
        delete_topics(BROKERS, [topic, f"{topic}.dlq"])


def produce(path: Path, topic: str, rps: int = 0) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "cmd" / "producer.py"), "-file", str(path), "-topic", topic,
         "-brokers", BROKERS, "-rps", str(rps)],
        check=True,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    log: Path

    def events(self) -> Iterator[dict[str, object]]:
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                yield json.loads(line)

    def wait_event(self, event: str, timeout_s: float = 120, poll_s: float = 0.05) -> dict[str, object]:
        """The first log line with this event, once the service wrote it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = next((e for e in self.events() if e.get("event") == event), None)
            if found is not None:
                return found
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the service exited ({self.proc.returncode}) before {event}; see {self.log}"
                )
            time.sleep(poll_s)
        raise TimeoutError(f"no {event} within {timeout_s}s; see {self.log}")

    def cpu_s(self) -> float:
        """The service process's CPU seconds so far (every thread of it)."""
        return process_cpu_s(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def start_service(dsn: str, topic: str, port: int, group: str, **env: str) -> Service:
    log = CACHE / f"service-{group}-{port}.log"  # one file per instance, even in one group
    CACHE.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        "POSTGRES_DSN": dsn,
        "KAFKA_BROKERS": BROKERS,
        "KAFKA_TOPIC": topic,
        "KAFKA_GROUP_ID": group,
        "HTTP_PORT": str(port),
        "CONFIG_FILE": "",
        "LOG_FORMAT": "json",
        # Its pools' connections are named <this>-<pool>: the benchmark finds the service's backends.
        "POSTGRES_APPLICATION_NAME": group,
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SERVICE_ROOT / "cmd" / "service.py")],
            env={**environment, "PYTHONPATH": str(SERVICE_ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Service(proc, log)


def wait_committed(topic: str, group: str, total: int, timeout_s: float = 600, poll_s: float = 0.05) -> float:
    """Block until the group committed every one of ``total`` messages; returns the monotonic time."""
    deadline = time.monotonic() + timeout_s
    partitions = list(partition_ends(BROKERS, topic))
    with CommittedOffsets(BROKERS, group) as committed:  # one client for every question
        while time.monotonic() < deadline:
            done = committed(topic, partitions)
            if sum(max(0, o) for o in done.values()) >= total:
                return time.monotonic()
            time.sleep(poll_s)
    raise TimeoutError(f"group {group} did not commit {total} messages within {timeout_s}s")
