"""make bench: run every benchmark and write its output into docs/performance.md.

The generated part sits between two markers in docs/performance.md, under the hand-written analysis,
so a run refreshes the figures without touching the explanations. Each line printed by a benchmark
already carries its same-run reference.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import version

from bench.common import ROOT, machine, say

DOC = ROOT / "docs" / "performance.md"
BEGIN = "<!-- make bench: begin -->"
END = "<!-- make bench: end -->"
RUNS = (("Ingest", "bench.ingest"), ("HTTP and warm-up", "bench.http"), ("How cost grows", "bench.scale"))


def run(module: str) -> str:
    say(f"== {module}")
    done = subprocess.run(
        [sys.executable, "-m", module], capture_output=True, text=True, check=False, cwd=ROOT
    )
    # Without the one-time input file generation and librdkafka's own log lines.
    noise = ("gen_orders:", "generating ", "%")
    lines = [line for line in done.stdout.splitlines() if not line.startswith(noise)]
    print("\n".join(lines), flush=True)
    if done.returncode != 0:
        lines.append(
            f"(exit {done.returncode}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''})"
        )
    return "\n".join(lines)


def main() -> None:
    sections = [f"### {title}\n\n`python -m {module}`\n\n```\n{run(module)}\n```" for title, module in RUNS]
    kafka = (
        (ROOT / "configs" / "kafka" / "pom.xml")
        .read_text(encoding="utf-8")
        .split("<kafka.version>")[1]
        .split("<")[0]
    )
    header = (
        f"## Latest `make bench` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n\n"
        f"Machine: {machine()}, {platform.platform()}. Apache Kafka {kafka}, confluent-kafka "
        f"{version('confluent-kafka')}, psycopg {version('psycopg')}, pydantic {version('pydantic')}, "
        f"uvicorn {version('uvicorn')}, starlette {version('starlette')}.\n"
    )
    generated = "\n\n".join([header, *sections])
    text = DOC.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN) + len(BEGIN)] + "\n" + generated + "\n" + text[text.index(END) :]
    else:
        text = text.rstrip() + f"\n\n{BEGIN}\n{generated}\n{END}\n"
    DOC.write_text(text, encoding="utf-8")
    say(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
