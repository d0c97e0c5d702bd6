"""The original service's make targets, each run for real and judged by its effect.

Every target runs against this test's own topic and schema (the ``service_env`` overrides reach the
programs through the environment), with its pid files and logs under the test's own state directory
(``L0_STATE_DIR``) and its orders file in tmp (``MOCK``), so the checkout's own .local and mock.json are
never touched. What a test starts in the background it stops (``make stop``), and the fixture stops it
again whatever happened. ``make clean`` runs in a copy of the Makefile and scripts, through a
pseudo-terminal: it must never delete the real checkout's data, nor stop the shared PostgreSQL.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from internal.pkg.kafka_offsets import partition_ends
from tests.conftest import Topics
from tests.e2e.helpers import make_input, table_counts, wait_committed_to_end
from tests.service_proc import ROOT, free_port
from tests.support import wait_until

pytestmark = pytest.mark.e2e
ORIGINAL_TARGETS = [
    "gen",
    "up-kafka",
    "up-psql",
    "migrate",
    "up-prod",
    "up-app",
    "up-metric",
    "run-all",
    "clean",
    "loc-build",
    "loc-runs",
    "loc-runp",
    "test",
]


def make(*args: str, env: dict[str, str], timeout_s: float = 180, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"make {' '.join(args)} exited {result.returncode}:\n{output[-3000:]}"
    return output


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback only
            return int(answer.status)
    except OSError:
        return 0


def pid_alive(pid_file: Path) -> bool:
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


@pytest.fixture
def target_env(service_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a make target bound to this test's topic, schema, ports and state directory."""
    env = {
        **os.environ,
        **service_env,
        "L0_STATE_DIR": str(tmp_path / "state"),
        "PROMETHEUS_PORT": str(free_port()),
        "MOCK": str(tmp_path / "mock.json"),
    }
    yield env
    # Whatever the test left running in the background: producer, service, Prometheus.
    subprocess.run(
        [str(ROOT / "scripts" / "run.sh"), "stop"], env=env, capture_output=True, timeout=90, check=False
    )
    subprocess.run(
        [str(ROOT / "scripts" / "prometheus.sh"), "down"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_help_lists_every_target_of_the_original() -> None:
    listed = re.findall(r"^  (\S+)\s", make("help", env=dict(os.environ)), flags=re.MULTILINE)
    assert set(ORIGINAL_TARGETS) <= set(listed), sorted(set(ORIGINAL_TARGETS) - set(listed))


def test_run_all_starts_every_part_and_a_second_run_starts_nothing_new(
    target_env: dict[str, str], topics: Topics, kafka_brokers: str, schema_dsn: str
) -> None:
    state = Path(target_env["L0_STATE_DIR"])
    mock = Path(target_env["MOCK"])
    port, prometheus = target_env["HTTP_PORT"], f"http://127.0.0.1:{target_env['PROMETHEUS_PORT']}"
    output = make("run-all", "ORDERS=40", f"MOCK={mock}", env=target_env)

    # gen, migrate: the orders file and the schema.
    orders = json.loads(mock.read_text(encoding="utf-8"))
    assert len(orders) == 40
    table_counts(schema_dsn)  # raises unless the migrations created the tables in the test's schema
    # up-kafka, up-psql: both answered (the broker and server of this machine, shared).
    assert "kafka: " in output
    assert "postgres: " in output
    # up-prod: every order of the file reached the test's topic, from the background producer.
    wait_until(
        lambda: sum(partition_ends(kafka_brokers, topics.orders).values()) == 40,
        timeout_s=30,
        what="40 messages",
    )
    # up-app: the service is ready and stores what it is sent; the rest is dead-lettered.
    assert http_status(f"http://127.0.0.1:{port}/readyz") == 200
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 40, timeout_s=60, services=[])
    assert 0 < table_counts(schema_dsn)["orders"] <= 40
    # up-metric: Prometheus scrapes the service.
    assert wait_until(lambda: target_health(prometheus) == ["up"], timeout_s=30, what="the scrape target up")
    # run-all ends with every URL.
    for url in (f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/api/orders/", f"{prometheus}/"):
        assert url in output, url
    for word in ("/healthz", "/readyz", "/metrics", "Grafana"):
        assert word in output, word
    pids = {name: (state / name).read_text() for name in ("service.pid", "prometheus/prometheus.pid")}

    again = make("run-all", "ORDERS=40", f"MOCK={mock}", env=target_env)
    assert "service: already running" in again
    assert "prometheus: already running" in again
    assert pids == {name: (state / name).read_text() for name in pids}

    stopped = make("stop", env=target_env)
    assert "service: stopped" in stopped
    assert "prometheus: stopped" in stopped
    assert not any(pid_alive(state / name) for name in pids)
    assert http_status(f"http://127.0.0.1:{port}/healthz") == 0
    assert "not running" in make("stop", env=target_env)


def target_health(prometheus: str) -> list[str]:
    with urllib.request.urlopen(f"{prometheus}/api/v1/targets", timeout=5) as answer:  # noqa: S310
        return [t["health"] for t in json.load(answer)["data"]["activeTargets"]]


def test_up_kafka_and_up_psql_twice(target_env: dict[str, str]) -> None:
    for _ in range(2):
        output = make("up-kafka", "up-psql", env=target_env)
        assert re.search(r"kafka: (already running|a broker this checkout did not start)", output), output
        assert "postgres: " in output
    ready = ["pg_isready", "-q", "-d", target_env["POSTGRES_DSN"]]  # the server the targets were given
    assert subprocess.run(ready, check=False, timeout=10).returncode == 0


def test_loc_runp_sends_the_file_at_the_original_default_rate(
    target_env: dict[str, str], topics: Topics, kafka_brokers: str, tmp_path: Path
) -> None:
    data = make_input(tmp_path, 3, invalid_rate=0.0, seed=41)
    output = make("loc-runp", f"MOCK={data.path}", env=target_env)
    assert f"-file {data.path} in the background" in output  # no -rps: the producer's default, 1 per second
    log = Path(target_env["L0_STATE_DIR"]) / "producer.log"
    wait_until(
        lambda: "delivered=3" in log.read_text(encoding="utf-8"), timeout_s=30, what="the producer's summary"
    )
    assert sum(partition_ends(kafka_brokers, topics.orders).values()) == 3
    elapsed = float(re.search(r"elapsed=([\d.]+)s", log.read_text(encoding="utf-8")).group(1))  # type: ignore[union-attr]
    assert elapsed >= 1.9  # three messages at one per second: paced, not sent at once


def test_loc_runs_serves_in_the_foreground_until_ctrl_c(target_env: dict[str, str]) -> None:
    port = target_env["HTTP_PORT"]
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "loc-runs"],
        cwd=ROOT,
        env=target_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        wait_until(
            lambda: proc.poll() is None and http_status(f"http://127.0.0.1:{port}/readyz") == 200,
            timeout_s=60,
            what="the foreground service to be ready",
            interval_s=0.2,
        )
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground process group
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert '"event": "stopped"' in output
    assert '"clean": true' in output
    assert http_status(f"http://127.0.0.1:{port}/healthz") == 0


def test_loc_build_makes_a_wheel_whose_entry_points_import(
    target_env: dict[str, str], tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    output = make("loc-build", f"DIST={dist}", env=target_env)
    (wheel,) = dist.glob("l0_orders-*.whl")
    for script in ("l0-service", "l0-producer", "l0-dlq"):
        assert f"wheel: {script} = " in output, output
    assert "imports from the wheel" in output
    assert not (ROOT / "build").exists()  # a stale build/ would leak old files into the next wheel
    assert wheel.stat().st_size > 10_000


# ------------------------------------------------------------------------------------------ make clean

CLEANED = (
    ".venv/bin/python",
    ".local/service.log",
    "mock.json",
    "dist/x.whl",
    "build/lib/x",
    ".pytest_cache/x",
)


@pytest.fixture
def checkout_copy(tmp_path: Path) -> Path:
    """The Makefile and scripts in a directory of their own, with something in every path clean deletes."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    shutil.copy2(ROOT / "Makefile", copy / "Makefile")
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    shutil.copytree(ROOT / "configs" / "kafka", copy / "configs" / "kafka")
    (copy / "keep.txt").write_text("not generated\n", encoding="utf-8")
    fill(copy)
    return copy


def fill(copy: Path) -> None:
    for name in CLEANED:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text("x", encoding="utf-8")


def clean_env(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"L0_STATE_DIR", "KAFKA_STATE_DIR", "MOCK"}}
    # A server "not managed here": postgres.sh down must not stop the PostgreSQL other tests share.
    return {**env, "POSTGRES_DSN": "postgresql://nobody@127.0.0.1:1/none", "PG_MANAGED": "0"}


def make_clean_in_terminal(copy: Path, *args: str, answer: str | None) -> str:
    """``make clean`` with a pseudo-terminal as stdin and stdout; ``answer`` is typed at the prompt."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "clean", *args],
        cwd=copy,
        env=clean_env(copy),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: every holder of the terminal closed it
                break
            if not chunk:
                break
            seen += chunk
            if answer is not None and b"[y/N]" in seen:
                os.write(controller, answer.encode() + b"\n")
                answer = None
        assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
    return seen.decode(errors="replace")


def test_clean_from_a_terminal_asks_and_no_keeps_everything(checkout_copy: Path) -> None:
    output = make_clean_in_terminal(checkout_copy, answer="n")
    assert "[y/N]" in output
    assert "nothing deleted" in output
    assert all((checkout_copy / name).exists() for name in CLEANED)


def test_clean_from_a_terminal_deletes_after_yes(checkout_copy: Path) -> None:
    output = make_clean_in_terminal(checkout_copy, answer="y")
    assert "[y/N]" in output
    assert "not managed here" in output  # the shared PostgreSQL was left alone
    assert not any((checkout_copy / name).exists() for name in CLEANED)
    assert (checkout_copy / "keep.txt").exists()
    assert (checkout_copy / "Makefile").exists()


def test_clean_yes_1_and_clean_without_a_terminal_do_not_ask(checkout_copy: Path) -> None:
    output = make_clean_in_terminal(checkout_copy, "YES=1", answer=None)
    assert "[y/N]" not in output
    assert not any((checkout_copy / name).exists() for name in CLEANED)
    fill(checkout_copy)
    result = subprocess.run(
        ["make", "--no-print-directory", "clean"],
        cwd=checkout_copy,
        env=clean_env(checkout_copy),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "[y/N]" not in result.stdout + result.stderr
    assert not any((checkout_copy / name).exists() for name in CLEANED)
