"""Every command in the shell blocks of docs/runbook.md and docs/dlq.md exists and runs.

An operator copies these commands in the middle of an incident; a misspelt make target, a subcommand
that was renamed or an option that never existed costs minutes then. So every simple command of every
```sh block (pipelines and `&&` lists split, `NAME=value` prefixes, redirections and `sudo`/`env`
wrappers removed) is checked by what it invokes - without touching Kafka, PostgreSQL or the service:

* the project's programs (`.venv/bin/l0-service`, `.venv/bin/l0-dlq`, `.venv/bin/l0-producer`, bare
  `l0-*` inside a container, `python3 gen_orders.py`, `.venv/bin/python cmd/dlq.py`, `python3 -m
  json.tool`) run with the documented arguments plus `--help`: exit 0, so argparse accepted the
  subcommand and every value it parsed before the help; and every option of the documented command is
  named in that help text (argparse would ignore an unknown one before `--help`). A `SECTION_KEY=value`
  prefix must be a setting whose value the settings loader accepts;
* `make TARGET`: a rule of the Makefile, and `make -n TARGET` (a dry run) succeeds;
* `scripts/NAME.sh ARG`: exists, is executable and parses (`bash -n`); a script with a usage line
  exits 2 printing it when given an unknown argument, and ARG is one of the alternatives it lists
  (`status` itself asks the network, so a unit test does not run it: tests/e2e/test_make_targets.py
  starts and checks the stack through the same scripts);
* other tools (`curl`, `psql`, `grep`, ...): known, and on PATH - except `promtool`, which
  scripts/install-prometheus.sh installs, and `docker`, present only on Docker hosts: when missing they
  are checked for form only. `curl` URLs of the service name one of its routes; a `grep` of `/metrics`
  output matches a series the service exports; a `grep` for log events names events the code logs;
  `psql -c` queries read tables the migrations create; `docker compose` names services of
  docker-compose.yml and the command run inside the `app` container is checked like the above.

`test_the_checker_catches` proves each of these checks fails on a broken command.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase

from internal.cache.lru import OrderCache
from internal.config import ConfigError, load_settings
from internal.config.loader import env_name
from internal.config.settings import Settings
from internal.domain.outcomes import Outcome
from internal.pkg.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "runbook.md"
DOCUMENTS = (RUNBOOK, ROOT / "docs" / "dlq.md")
SHELL_FENCES = {"sh", "bash", "shell", "console"}
TIMEOUT_S = 60

PIPE = "|"
SEPARATORS = {";", "&&", "||", "&", "(", ")", ";;"}
REDIRECTIONS = {">", ">>", "<", "<<", "<<<", ">&", "&>", "<&", ">|", "&>>"}
WRAPPERS = {"sudo", "env", "nohup", "setsid", "time", "exec"}
BUILTINS = {"export", "cd"}
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::?-(?P<default>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)")

PYTHONS = {"python", "python3", ".venv/bin/python", ".venv/bin/python3"}
# Tools the documents may use besides the project's own programs. Each must be on PATH, except those
# named here with why they may be missing on a machine that runs these tests.
TOOLS = {"curl", "psql", "pg_isready", "grep", "tail", "head", "promtool", "docker"}
INSTALLED_BY_PROJECT = {"promtool": "scripts/install-prometheus.sh"}
OPTIONAL_TOOLS = {"docker": "present only where the Docker Compose stack runs (docs/docker.md)"}
REPOSITORY_DIRS = {"bench", "cmd", "configs", "docs", "internal", "scripts", "sql", "templates", "tests"}
SERVICE_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost)(?::(?P<port>\d+))?(?P<path>/[^\s?#]*)?")
# The local Prometheus of `make up-metric` (scripts/prometheus.sh, default PROMETHEUS_PORT) and the paths
# of its HTTP API the documents may use.
PROMETHEUS_PORT = "9090"
PROMETHEUS_PATHS = {
    "/",
    "/alerts",
    "/targets",
    "/api/v1/alerts",
    "/api/v1/rules",
    "/api/v1/targets",
    "/api/v1/query",
}
# Tables a query may read besides those of sql/: yoyo's bookkeeping and PostgreSQL's catalogue.
YOYO_TABLES = {"_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock"}
# docker compose subcommands the documents may use, and the options among theirs that take a value.
COMPOSE_SUBCOMMANDS = {"ps", "logs", "exec", "run", "restart", "up", "down", "stop", "start", "build", "top"}
COMPOSE_VALUE_OPTIONS = {"--tail", "--scale", "-e", "--env", "-u", "--user", "-w", "--workdir", "--index"}
COMPOSE_EXEC = {"exec", "run"}
# Label values for a realistic /metrics page (every labelled metric gets these children).
SAMPLE_LABELS: dict[str, tuple[str, ...]] = {
    "method": ("GET",),
    "route": ("/api/orders/{order_uid}", "/readyz"),
    "status": ("200", "404", "503"),
    "outcome": tuple(outcome.value for outcome in Outcome),
    "reason": tuple(outcome.value for outcome in Outcome if outcome.dead_lettered),
    "topic": ("orders",),
    "partition": ("0", "1"),
    "op": ("write_batch", "get_order"),
    "group": ("invalid · items[].price · must be at least 0",),
}


# --------------------------------------------------------------------------------------- the commands


@dataclass(frozen=True)
class Command:
    """One simple command of a documented shell line."""

    where: str  # docs/runbook.md:42
    argv: tuple[str, ...]  # program and arguments, as written (variables not expanded)
    env: tuple[tuple[str, str], ...]  # NAME=value prefixes
    upstream: tuple[tuple[str, ...], ...]  # the commands before it in its pipeline
    variables: tuple[tuple[str, str], ...]  # shell variables the document set before this line

    def expand(self, token: str) -> str:
        """The token with the document's variables substituted (a default, else "0", when unset)."""
        known = dict(self.variables)

        def value(match: re.Match[str]) -> str:
            name = match["braced"] or match["bare"]
            return known.get(name) or match["default"] or "0"

        return VARIABLE.sub(value, token)

    @property
    def args(self) -> list[str]:
        return [self.expand(token) for token in self.argv[1:]]

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.argv)}"


def shell_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, logical line) of the commands in the document's shell blocks. A block whose lines
    start with `$ ` is a transcript: only those lines are commands."""
    fence: str | None = None
    block: list[tuple[int, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            if stripped.startswith("```"):
                fence = stripped[3:].strip().split(" ")[0].lower()
                block = []
            continue
        if stripped != "```":
            block.append((number, line))
            continue
        if fence in SHELL_FENCES:
            yield from _logical_lines(block)
        fence = None
    assert fence is None, f"{path.name}: a code block is not closed"


def _logical_lines(block: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    transcript = any(line.lstrip().startswith("$ ") for _, line in block)
    pending = ""
    start = 0
    for number, raw in block:
        line = raw
        if transcript and not pending:
            if not raw.lstrip().startswith("$ "):
                continue
            line = raw.lstrip()[2:]
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text and not text.startswith("#"):
            yield start, text


def split_line(line: str) -> list[list[list[str]]]:
    """The line's lists (split at ; && || &) of pipelines (split at |) of words, redirections removed."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    lists: list[list[list[str]]] = [[[]]]
    skip_next = False
    for index, token in enumerate(tokens):
        if skip_next:
            skip_next = False
        elif token in SEPARATORS:
            lists.append([[]])
        elif token == PIPE:
            lists[-1].append([])
        elif token in REDIRECTIONS:
            skip_next = True  # its target
        elif token.isdigit() and index + 1 < len(tokens) and tokens[index + 1] in REDIRECTIONS:
            pass  # the file descriptor of 2>&1
        else:
            lists[-1][-1].append(token)
    return [[stage for stage in pipeline if stage] for pipeline in lists if any(pipeline)]


def commands_of(path: Path) -> list[Command]:
    """The document's commands; a shell variable set in a block holds until the next `## ` section."""
    where = path.relative_to(ROOT).as_posix()
    text = path.read_text(encoding="utf-8").splitlines()
    sections = [number for number, line in enumerate(text, start=1) if line.startswith("## ")]
    variables: dict[str, str] = {}
    found = []
    for number, line in shell_lines(path):
        if sections and number > sections[0]:
            while sections and number > sections[0]:
                sections.pop(0)
            variables = {}
        for pipeline in split_line(line):
            upstream: list[tuple[str, ...]] = []
            for words in pipeline:
                env, argv = _strip_prefixes(words)
                if not argv or argv[0] == "export":
                    assigned = env + [_assignment(w) for w in argv[1:] if ASSIGNMENT.match(w)]
                    variables.update(assigned)  # NAME=value alone sets a shell variable
                    if not argv:
                        continue
                command = Command(
                    f"{where}:{number}",
                    tuple(argv),
                    tuple(env),
                    tuple(upstream),
                    tuple(variables.items()),
                )
                found.append(command)
                upstream.append(command.argv)
    return found


def _assignment(word: str) -> tuple[str, str]:
    name, _, value = word.partition("=")
    return name, value


def _strip_prefixes(words: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    env: list[tuple[str, str]] = []
    rest = list(words)
    while rest and (ASSIGNMENT.match(rest[0]) or rest[0] in WRAPPERS):
        word = rest.pop(0)
        if ASSIGNMENT.match(word):
            env.append(_assignment(word))
    return env, rest


def documented_commands() -> list[Command]:
    return [command for path in DOCUMENTS if path.is_file() for command in commands_of(path)]


def command(line: str, variables: dict[str, str] | None = None) -> list[Command]:
    """The commands of one shell line, as if documented (for the checker's own tests)."""
    found = []
    for pipeline in split_line(line):
        upstream: list[tuple[str, ...]] = []
        for words in pipeline:
            env, argv = _strip_prefixes(words)
            found.append(
                Command("<test>", tuple(argv), tuple(env), tuple(upstream), tuple((variables or {}).items()))
            )
            upstream.append(tuple(argv))
    return found


# ------------------------------------------------------------------------------------- what is known


@cache
def console_scripts() -> dict[str, str]:
    """name -> "module:function" of pyproject.toml's [project.scripts]."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return dict(project["scripts"])


@cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return frozenset(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", text, flags=re.MULTILINE))


@cache
def service_routes() -> tuple[re.Pattern[str], ...]:
    """The service's route templates (internal/api/app.py, and the console's in dlq_console.py) as
    patterns: {param} (or {param:int}) matches one segment."""
    text = "".join(
        (ROOT / "internal" / "api" / name).read_text(encoding="utf-8")
        for name in ("app.py", "dlq_console.py")
    )
    templates = re.findall(r'Route\("([^"]+)"', text)
    assert "/readyz" in templates, "the routes moved: update service_routes()"
    assert "/dlq" in templates, "the console's routes moved: update service_routes()"
    return tuple(
        re.compile(re.sub(r"\\\{\w+(:\w+)?\\\}", "[^/]+", re.escape(template)) + "$")
        for template in templates
    )


@cache
def metrics_page() -> tuple[str, ...]:
    """The lines of a /metrics page of the service, every labelled metric with sample children."""
    metrics = Metrics("0.1.0")
    metrics.watch_cache(OrderCache(10, 10_000, 1_000).stats)
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            names = metric._labelnames
            missing = [name for name in names if name not in SAMPLE_LABELS]
            assert not missing, f"add sample values for the labels {missing} to SAMPLE_LABELS"
            for values in itertools.product(*(SAMPLE_LABELS[name] for name in names)):
                metric.labels(*values)
    labels = ("method", "route", "status")
    for method, route, status in itertools.product(*(SAMPLE_LABELS[name] for name in labels)):
        metrics.http.record(method, route, int(status), 0.001)  # the HTTP figures are not wrapper metrics
    metrics.watch_partitions(lambda: [("orders", 0, False)])
    return tuple(generate_latest(metrics.registry).decode().splitlines())


@cache
def logged_events() -> frozenset[str]:
    """Event names the code logs: the first string argument of a structlog call."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "internal").rglob("*.py"))
    calls = r"\blog\.(?:debug|info|warning|error|exception|critical)\(\s*\"([a-z_]+)\""
    return frozenset(re.findall(calls, source))


@cache
def tables() -> frozenset[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "sql").glob("*.sql"))
    return frozenset(t.lower() for t in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", text, re.I))


@cache
def compose_services() -> frozenset[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return frozenset(compose["services"])


@cache
def setting_names() -> frozenset[str]:
    return frozenset(
        env_name(section.name, item.name)
        for section in Settings.__dataclass_fields__.values()
        for item in getattr(Settings(), section.name).__dataclass_fields__.values()
    )


# --------------------------------------------------------------------------------------------- checks


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@cache
def run_cached(argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return run(list(argv))


def problems(cmd: Command, inside_container: bool = False) -> list[str]:  # noqa: PLR0911 - one per kind
    """What is wrong with the command; empty when it exists and runs as documented."""
    program = cmd.argv[0]
    name = program.removeprefix("./")
    if name in BUILTINS:
        return []
    if name in PYTHONS:
        return _python(cmd)
    if name.removeprefix(".venv/bin/") in console_scripts():
        if name.startswith(".venv/bin/") or inside_container:
            return _console_script(cmd, name.removeprefix(".venv/bin/"))
        return [f"{program}: run it as .venv/bin/{name} (the venv is not on PATH)"]
    if name.startswith(".venv/bin/"):
        return _venv_tool(cmd, name)
    if name == "make":
        return _make(cmd)
    if name == "bash" and cmd.argv[1:2] and cmd.argv[1].endswith(".sh"):
        return _script(
            Command(cmd.where, cmd.argv[1:], cmd.env, cmd.upstream, cmd.variables), runs_as_bash=True
        )
    if name.startswith("scripts/"):
        return _script(cmd)
    if name in TOOLS:
        return _tool(cmd, name, inside_container)
    return [f"{program}: not a program of the project nor a known tool (TOOLS in {Path(__file__).name})"]


def _help_problems(cmd: Command, argv: list[str], who: str) -> list[str]:
    """Run the program with the documented arguments and --help; check the options it was given."""
    found = []
    result = run_cached((*argv, *cmd.args, "--help"))
    output = result.stdout + result.stderr
    if result.returncode != 0 or "usage" not in output.lower():
        first = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        return [f"{who} with --help exited {result.returncode}: {first[0]}"]
    for token in cmd.args:
        if re.match(r"-{1,2}[A-Za-z]", token):
            option = token.split("=", 1)[0]
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", output):
                found.append(f"{who}: option {option} is not in its --help")
    for name, value in cmd.env:
        found += _setting_problems(name, value)
    return found


def _setting_problems(name: str, value: str) -> list[str]:
    if not any(name.startswith(f"{section.upper()}_") for section in Settings.__dataclass_fields__):
        return []  # not named like a setting (DSN=..., ORDER_UID=...)
    if name not in setting_names():
        return [f"{name}: not a setting (see config.yaml.example)"]
    try:
        load_settings(None, {name: value})
    except ConfigError as exc:
        return [f"{name}={value}: {exc}"]
    return []


def _console_script(cmd: Command, name: str) -> list[str]:
    shim = ROOT / ".venv" / "bin" / name
    if os.access(shim, os.X_OK):
        argv = [str(shim)]
    else:  # a venv installed before the script was declared: run the declared entry point instead
        module, function = console_scripts()[name].split(":")
        code = f"import sys; from {module} import {function}; sys.argv[0] = {name!r}; sys.exit({function}())"
        argv = [sys.executable, "-c", code]
    return _help_problems(cmd, argv, name)


def _venv_tool(cmd: Command, name: str) -> list[str]:
    if not os.access(ROOT / name, os.X_OK):
        return [f"{name}: not installed in the venv"]
    return _help_problems(cmd, [str(ROOT / name)], name)


def _python(cmd: Command) -> list[str]:
    args = cmd.args
    if not args:
        return [f"{cmd.argv[0]}: no script or module"]
    if args[0] == "-m" and len(args) > 1:
        rest = Command(cmd.where, (cmd.argv[0], *cmd.argv[3:]), cmd.env, cmd.upstream, cmd.variables)
        return _help_problems(rest, [sys.executable, "-m", args[1]], f"python -m {args[1]}")
    if args[0] == "-c" and len(args) > 1:
        try:
            compile(args[1], "<documented>", "exec")
        except SyntaxError as exc:
            return [f"python -c: {exc}"]
        return []
    script = ROOT / args[0]
    if not script.is_file():
        return [f"{args[0]}: no such file in the repository"]
    rest = Command(cmd.where, (cmd.argv[0], *cmd.argv[2:]), cmd.env, cmd.upstream, cmd.variables)
    return _help_problems(rest, [sys.executable, str(script)], args[0])


def _make(cmd: Command) -> list[str]:
    targets = [a for a in cmd.args if not a.startswith("-") and "=" not in a]
    if not targets:
        return ["make: name the target (the default one only prints help)"]
    found = []
    for target in targets:
        if target not in make_targets():
            found.append(f"make {target}: no such target in the Makefile")
            continue
        result = run_cached(("make", "-n", target))
        if result.returncode != 0:
            found.append(f"make -n {target} exited {result.returncode}: {result.stderr.strip()}")
    return found


def _script(cmd: Command, runs_as_bash: bool = False) -> list[str]:
    name = cmd.argv[0].removeprefix("./")
    path = ROOT / name
    if not path.is_file():
        return [f"{name}: no such script"]
    if not runs_as_bash and not os.access(path, os.X_OK):
        return [f"{name}: not executable"]
    syntax = run(["bash", "-n", str(path)])
    if syntax.returncode != 0:
        return [f"{name}: bash -n: {syntax.stderr.strip()}"]
    return _script_arguments(cmd, name, path)


def _script_arguments(cmd: Command, name: str, path: Path) -> list[str]:
    usage = re.search(r"usage: \$0 (\S+)", path.read_text(encoding="utf-8"))
    args = cmd.args
    if usage is None:
        # No usage line: a script that takes no argument (the installers). Not run: it installs.
        return [f"{name}: takes no arguments, got {args}"] if args else []
    choices = set(usage.group(1).strip("[]").split("|"))
    probe = run([str(path), "--no-such-subcommand"])
    if probe.returncode != 2 or "usage" not in (probe.stdout + probe.stderr).lower():
        return [f"{name}: an unknown argument should print its usage and exit 2 (got {probe.returncode})"]
    if args and args[0] not in choices:
        return [f"{name} {args[0]}: not one of {sorted(choices)}"]
    return []


def _tool(cmd: Command, name: str, inside_container: bool) -> list[str]:
    found = []
    if not inside_container and shutil.which(name) is None:
        installer = INSTALLED_BY_PROJECT.get(name)
        if installer is not None:
            if not (ROOT / installer).is_file():
                found.append(f"{name}: {installer} is missing")
        elif name not in OPTIONAL_TOOLS:
            found.append(f"{name}: not on PATH")
    for token in cmd.args:
        if "/" in token and token.split("/")[0] in REPOSITORY_DIRS and not (ROOT / token).exists():
            found.append(f"{name}: {token} is not in the repository")
    checks: dict[str, Callable[[Command], list[str]]] = {
        "curl": _curl,
        "grep": _grep,
        "psql": _psql,
        "docker": _docker,
    }
    check = checks.get(name)
    return found + (check(cmd) if check is not None else [])


def _curl(cmd: Command) -> list[str]:
    found = []
    for token in cmd.args:
        match = SERVICE_URL.match(token)
        if match and match["port"] == PROMETHEUS_PORT:
            if (match["path"] or "/") not in PROMETHEUS_PATHS:
                found.append(f"curl {token}: not a path of Prometheus' API the documents use")
        elif match:
            path = match["path"] or "/"
            if not any(route.match(path) for route in service_routes()):
                found.append(f"curl {token}: the service has no route {path}")
    return found


def grep_pattern(args: list[str]) -> tuple[str | None, set[str]]:
    """The pattern and the single-letter flags of a grep command line."""
    flags: set[str] = set()
    pattern: str | None = None
    operands: list[str] = []
    words = iter(args)
    for word in words:
        if word == "-e":
            pattern = next(words, None)
        elif word in {"-m", "-A", "-B", "-C", "-f"}:
            next(words, None)
        elif word.startswith("--"):
            flags.add(word)
        elif word.startswith("-") and len(word) > 1:
            flags.update(word[1:])
        else:
            operands.append(word)
    if pattern is None and operands:
        pattern = operands[0]
    return pattern, flags


def as_python_regex(pattern: str, flags: set[str]) -> re.Pattern[str]:
    if "F" in flags:
        return re.compile(re.escape(pattern))
    if "E" not in flags:  # a basic regular expression: \| \( \) \{ \} \+ \? are the operators
        converted = []
        chars = iter(pattern)
        for char in chars:
            if char == "\\":
                following = next(chars, "")
                converted.append(following if following in "|(){}+?" else "\\" + following)
            elif char in "|(){}+?":
                converted.append("\\" + char)
            else:
                converted.append(char)
        pattern = "".join(converted)
    return re.compile(pattern, re.IGNORECASE if "i" in flags else 0)


def _grep(cmd: Command) -> list[str]:
    pattern, flags = grep_pattern(cmd.args)
    if pattern is None:
        return ["grep: no pattern"]
    try:
        as_python_regex(pattern, flags)
    except re.error as exc:
        return [f"grep {pattern!r}: not a regular expression: {exc}"]
    found = []
    for event in re.findall(r'"event": "\(?([^"]+?)\)?"', pattern):
        unknown = sorted(set(event.split("|")) - logged_events())
        if unknown:
            found.append(f"grep: the code logs no event {unknown}")
    if cmd.upstream and _reads_metrics(cmd.upstream[0]):
        lines = list(metrics_page())
        for stage in [*cmd.upstream[1:], cmd.argv]:
            if stage[0] != "grep":
                break
            stage_pattern, stage_flags = grep_pattern([cmd.expand(t) for t in stage[1:]])
            if stage_pattern is None:
                break
            stage_regex = as_python_regex(stage_pattern, stage_flags)
            lines = [line for line in lines if bool(stage_regex.search(line)) != ("v" in stage_flags)]
        else:
            if not lines:
                found.append(f"grep {pattern!r}: matches no series of the service's /metrics")
    return found


def _reads_metrics(argv: tuple[str, ...]) -> bool:
    return argv[0] == "curl" and any(
        (match := SERVICE_URL.match(token)) is not None and match["path"] == "/metrics" for token in argv
    )


def _psql(cmd: Command) -> list[str]:
    args = cmd.args
    queries = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in {"-c", "--command"}]
    found = []
    for query in queries:
        for name in re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)", query, flags=re.IGNORECASE):
            table = name.lower()
            if table.startswith(("pg_", "information_schema.", "pg_catalog.")):
                continue
            if table not in tables() | YOYO_TABLES:
                found.append(f"psql: no table {table} (sql/ creates {sorted(tables())})")
    return found


def _docker(cmd: Command) -> list[str]:
    args = cmd.args
    if args[:1] != ["compose"]:
        return ["docker: only `docker compose ...` is documented for this project"]
    if len(args) < 2 or args[1] not in COMPOSE_SUBCOMMANDS:
        return [f"docker compose {' '.join(args[1:2])}: not one of {sorted(COMPOSE_SUBCOMMANDS)}"]
    subcommand, words = args[1], iter(args[2:])
    operands: list[str] = []
    for word in words:
        if word in COMPOSE_VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            operands.append(word)
            if subcommand in COMPOSE_EXEC:
                break  # the service; the command inside it follows
    unknown = [name for name in operands if name not in compose_services()]
    if unknown:
        return [f"docker compose {subcommand}: no service {unknown} in docker-compose.yml"]
    if subcommand in COMPOSE_EXEC:
        return _inside_container(cmd, subcommand, operands, list(words))
    return []


def _inside_container(cmd: Command, subcommand: str, service: list[str], inner: list[str]) -> list[str]:
    """`docker compose exec SERVICE COMMAND...`: the command is checked as if run here, less PATH."""
    if not service or not inner:
        return [f"docker compose {subcommand}: name the service and the command"]
    return problems(Command(cmd.where, tuple(inner), (), (), cmd.variables), inside_container=True)


# ---------------------------------------------------------------------------------------------- tests

COMMANDS = documented_commands()


def test_the_documents_have_commands() -> None:
    runbook = [c for c in COMMANDS if c.where.startswith("docs/runbook.md")]
    assert len(runbook) >= 30, "the runbook's sh blocks were not found"


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{c.where} {c.argv[0]}" for c in COMMANDS])
def test_documented_command_exists_and_runs(cmd: Command) -> None:
    assert not problems(cmd), f"{cmd}\n  " + "\n  ".join(problems(cmd))


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if p.is_file()], ids=lambda p: p.name)
def test_variables_are_set_before_use_in_the_same_section(path: Path) -> None:
    for cmd in commands_of(path):
        known = dict(cmd.variables)
        for token in cmd.argv:
            for match in VARIABLE.finditer(token):
                name = match["braced"] or match["bare"]
                assert name in known or match["default"] is not None, f"{cmd}: ${name} is never set above"


def test_the_runbook_keeps_the_essential_checks() -> None:
    lines = {shlex.join(c.argv) for c in COMMANDS if c.where.startswith("docs/runbook.md")}
    for expected in (
        "curl -s http://127.0.0.1:8080/readyz",
        "scripts/kafka.sh status",
        "scripts/postgres.sh status",
        "make infra-status",
        ".venv/bin/l0-dlq list --reason conflict --limit 20",
        ".venv/bin/l0-service check-config",
        ".venv/bin/l0-dlq replay --reason db_rejected --dry-run",
    ):
        assert expected in lines, f"the runbook lost `{expected}`"
    assert any(line.startswith("psql ") for line in lines)
    assert any(line.startswith("curl -s http://127.0.0.1:8080/metrics") for line in lines)


BROKEN = [
    ("make infra-statu", "no such target"),
    ("make docs", "no such target"),  # a directory of that name must not pass as a target
    (".venv/bin/l0-dlq lst", "exited 2"),
    (".venv/bin/l0-dlq list --reasn conflict", "option --reasn"),
    (".venv/bin/l0-dlq list --reason conflcit", "exited 2"),
    (".venv/bin/l0-dlq replay --dryrun", "option --dryrun"),
    (".venv/bin/l0-service check-configs", "exited 2"),
    (".venv/bin/l0-servce check-config", "not installed in the venv"),
    ("l0-dlq list", "run it as .venv/bin/l0-dlq"),
    (".venv/bin/l0-producer -fiel mock.json", "option -fiel"),
    ("python3 gen_order.py -n 10", "no such file"),
    ("python3 gen_orders.py --count 10", "option --count"),
    ("CONSUMER_WORKER=4 .venv/bin/l0-service check-config", "not a setting"),
    ("CONSUMER_WORKERS=-1 .venv/bin/l0-service check-config", "must be >= 1"),
    ("scripts/kafka.sh stat", "not one of"),
    ("scripts/kafak.sh status", "no such script"),
    ("scripts/install-prometheus.sh --force", "takes no arguments"),
    ("kubectl get pods", "not a program of the project"),
    ("curl -s http://127.0.0.1:8080/ready", "no route /ready"),
    ("curl -s http://127.0.0.1:9090/api/v1/alert", "not a path of Prometheus"),
    ("curl -s http://127.0.0.1:8080/metrics | grep '^consumer_lagg'", "matches no series"),
    ("curl -s http://127.0.0.1:8080/metrics | grep -E '^(db_up|dbup)' | grep -v db_up", "matches no series"),
    ("curl -s http://127.0.0.1:8080/metrics | grep '^http_requests_total' | grep 'status=\"7'", "no series"),
    ('grep \'"event": "consumer_stoped"\' .local/service.log', "logs no event"),
    ("psql postgresql://x -c 'SELECT count(*) FROM order_items'", "no table order_items"),
    ("promtool check rules configs/prometheus/alert.yml", "not in the repository"),
    ("docker compose restart ap", "no service"),
    ("docker compose exec app l0-dlq lst", "exited 2"),
    ("docker compose exec app l0-dlq list --reasn conflict", "option --reasn"),
]


@pytest.mark.parametrize(("line", "expected"), BROKEN, ids=[line for line, _ in BROKEN])
def test_the_checker_catches(line: str, expected: str) -> None:
    found = [problem for cmd in command(line) for problem in problems(cmd)]
    assert any(expected in problem for problem in found), f"{line}: expected {expected!r}, got {found}"


@pytest.mark.parametrize(
    "line",
    [
        ".venv/bin/l0-dlq show 3",
        ".venv/bin/python cmd/dlq.py list --reason db_rejected --limit 20",
        "CONSUMER_WORKERS=6 .venv/bin/l0-service --config config.yaml.example check-config",
        "curl -s http://127.0.0.1:8080/metrics | grep '^http_requests_total' | grep 'status=\"5'",
        "curl -s -D - -o /dev/null http://127.0.0.1:8080/api/orders/abc 2>&1 | head -n 5",
        "docker compose exec postgres psql -U orders -d orders -c 'SELECT 1 FROM orders'",
    ],
)
def test_the_checker_passes(line: str) -> None:
    found = [problem for cmd in command(line) for problem in problems(cmd)]
    assert not found, found


def test_commands_are_split_like_a_shell_does() -> None:
    assert split_line("a 'b | c' | d -x 2>&1 && FOO=1 e > out.txt; f") == [
        [["a", "b | c"], ["d", "-x"]],
        [["FOO=1", "e"]],
        [["f"]],
    ]
    (cmd,) = command('curl "http://h/$UID"', {"UID": "42"})
    assert cmd.args == ["http://h/42"]
    assert _strip_prefixes(["sudo", "A=1", "env", "B=2", "prog", "x"]) == (
        [("A", "1"), ("B", "2")],
        ["prog", "x"],
    )
