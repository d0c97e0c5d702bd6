"""Static checks of the container and deployment files: Dockerfile, .dockerignore, docker-compose.yml,
.env.example, the Prometheus configuration and the Grafana provisioning.

No Docker engine runs where these tests run, so nothing here builds an image or starts a container. The
files are parsed and checked against each other and against the service itself: its settings
(``internal.config``), where it looks for migrations, the metrics it exports.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shlex
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from internal.config.aliases import DSN_PARTS, ENV_ALIASES
from internal.config.loader import env_name, load_settings
from internal.config.settings import Settings
from internal.pkg.metrics import METRIC_NAMES, Metrics
from internal.pkg.paths import migrations_dir, project_home, templates_dir

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
PORTS_FILE = ROOT / "docker-compose.ports.yml"  # publishes Kafka and PostgreSQL, on request (.env)
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS_DIR = ROOT / "configs" / "prometheus"
GRAFANA_DIR = ROOT / "configs" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "orders.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "datasource.yml"

SERVICES = {"kafka", "postgres", "migrate", "app", "producer", "prometheus", "grafana"}
IMAGE_SERVICES = ("migrate", "app", "producer")  # the services that run the project's own image
# The one host path docker-compose.yml may mount although it is not in the repository: mock.json is
# generated (gen_orders.py, `make gen`) and git-ignored, and only the `producer` service mounts it, which
# runs on request (--profile producer) after the user generated the file (docs/docker.md).
GENERATED_HOST_PATHS = {"mock.json"}
# The series the service exports: its metrics (internal/pkg/metrics.py, docs/metrics.md) and, for each
# histogram, the _bucket/_sum/_count series Prometheus stores. Dashboards and alerts may query only these,
# plus the series Prometheus makes itself for every target.
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
HISTOGRAMS = {family.name for family in Metrics("test").registry.collect() if family.type == "histogram"}
SERVICE_METRICS = set(METRIC_NAMES) | {
    f"{name}{suffix}" for name in HISTOGRAMS for suffix in HISTOGRAM_SERIES
}
PROMETHEUS_SERIES = {"up"}
APP_CONTAINER_PORT = 8080
# Where the image's venv keeps installed packages (python:3.<minor>-slim, venv at /opt/venv).

SECTIONS = [section.name for section in dataclasses.fields(Settings)]
SETTING_ENV_NAMES = {
    env_name(section, item.name)
    for section in SECTIONS
    for item in dataclasses.fields(getattr(Settings(), section))
}
# ${NAME}, ${NAME:-default}, ${NAME-default} and $NAME; a default may hold references itself
# (${A:-${B:-x}}, compose v2.18+); `$$` is a literal `$` (compose's escape).
BRACED_BODY = re.compile(r"([A-Za-z_]\w*)(?:(:?-)(.*))?", re.DOTALL)
BARE = re.compile(r"\$([A-Za-z_]\w*)")
# The original Go service's variable names: compose and .env.example may name them without defining them.
ORIGINAL_NAMES = {alias.original for alias in ENV_ALIASES} | set(DSN_PARTS)


# ----------------------------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} must hold a mapping"
    return cast(dict[str, Any], data)


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments between them. Quotes and trailing comments are refused
    because tools disagree about them (compose, `set -a; . ./.env`, python-dotenv)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=([^\s'\"#]*)", line)
        assert match, f"{path.name}:{number}: not a KEY=VALUE line without quotes or spaces: {line!r}"
        key, value = match.groups()
        assert key not in values, f"{path.name}:{number}: {key} is defined twice"
        values[key] = value
    return values


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


def references(text: str) -> Iterator[tuple[int, int, str, str | None, str | None]]:
    """(start, end, name, operator or None, default text or None) of each outermost reference."""
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                assert j < len(text), f"unclosed ${{ in {text!r}"
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            match = BRACED_BODY.fullmatch(text[i + 2 : j - 1])
            assert match, f"not a reference compose reads this way: {text[i:j]!r}"
            yield i, j, match[1], match[2], match[3]
            i = j
        elif bare := BARE.match(text, i):
            yield i, bare.end(), bare[1], None, None
            i = bare.end()
        else:
            i += 1


def variable_references(node: Any) -> list[tuple[str, str | None]]:
    """(name, default or None) of every variable compose substitutes in the values of ``node``, nested
    ones too; a default is given as it reads with no variable set."""
    found = []
    for text in strings_in(node):
        for _start, _end, name, op, default in references(text):
            found.append((name, interpolate(default or "", {}) if op else None))
            found += variable_references(default or "")
    return found


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's substitution: ${NAME:-default} takes the default when NAME is unset or empty."""
    out, last = [], 0
    for start, end, name, op, default in references(text):
        out.append(text[last:start].replace("$$", "$"))
        value = env.get(name)
        if op == ":-":
            value = value or interpolate(default or "", env)
        elif op == "-":
            value = interpolate(default or "", env) if value is None else value
        out.append(value or "")
        last = end
    out.append(text[last:].replace("$$", "$"))
    return "".join(out)


def service_env(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    raw = service.get("environment", {})
    assert isinstance(raw, dict), "environment must be a mapping (NAME: value), not a list"
    return {name: interpolate(str(value), env) for name, value in raw.items()}


def looks_like_a_setting(name: str) -> bool:
    return any(name.startswith(f"{section.upper()}_") for section in SECTIONS)


def host_bind_sources(service: dict[str, Any]) -> list[str]:
    """Host paths of the service's bind mounts (short syntax `./a:/b[:ro]` or long syntax)."""
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                sources.append(str(volume["source"]))
        elif str(volume).startswith((".", "/", "~")):
            sources.append(str(volume).split(":")[0])
    return sources


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of the service's short-syntax bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str) and volume.startswith("."):
            host, target = volume.split(":")[:2]
            mounts[target] = host
    return mounts


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not an exec-form (JSON array) instruction: {arguments}"
    return [str(item) for item in value]


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
PROMQL_WORDS |= {"and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords, labels or durations)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


# -------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return cast(dict[str, dict[str, Any]], compose["services"])


@pytest.fixture(scope="module")
def ports_file() -> dict[str, Any]:
    return load_yaml(PORTS_FILE)


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


# ---------------------------------------------------------------------------------------- compose file


def test_compose_defines_every_service(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= SERVICES, f"missing services: {sorted(SERVICES - set(services))}"
    assert services["producer"].get("profiles") == ["producer"]  # runs only on request
    assert all("profiles" not in services[name] for name in SERVICES - {"producer"})


def test_the_project_image_is_one_image(services: dict[str, dict[str, Any]]) -> None:
    images = {(str(services[name].get("build")), services[name].get("image")) for name in IMAGE_SERVICES}
    assert images == {(".", "l0-orders:local")}, "app, migrate and producer must build and share one image"


def test_start_order_migrations_then_service_then_producer(services: dict[str, dict[str, Any]]) -> None:
    migrate, app, producer = services["migrate"], services["app"], services["producer"]
    assert migrate["command"] == ["l0-service", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert app["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "kafka": {"condition": "service_healthy"},
    }
    assert producer["depends_on"] == {"app": {"condition": "service_healthy"}}
    for name in ("kafka", "postgres"):
        assert "test" in services[name]["healthcheck"], f"{name} needs a healthcheck: others wait for it"
    # The one-shot containers have no HTTP server; the image's HEALTHCHECK would only mark them unhealthy.
    assert migrate["healthcheck"] == {"disable": True}
    assert producer["healthcheck"] == {"disable": True}


def test_every_host_path_exists(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            context = ROOT / str(build["context"] if isinstance(build, dict) else build)
            assert (context / "Dockerfile").is_file(), f"{name}: no Dockerfile in build context {context}"
        for source in host_bind_sources(service):
            path = (ROOT / source).resolve()
            relative = path.relative_to(ROOT).as_posix()
            if relative in GENERATED_HOST_PATHS:
                continue
            assert path.exists(), f"{name}: mounts {source}, which is not in the repository"
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/", "~")):
                assert volume.split(":")[0] in (compose.get("volumes") or {}), f"{name}: undeclared {volume}"


def test_generated_host_paths_stay_out_of_git_and_the_image() -> None:
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    dockerignore = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    for path in GENERATED_HOST_PATHS:
        assert path in gitignore
        assert path in dockerignore


def test_producer_mounts_mock_json_read_only(services: dict[str, dict[str, Any]]) -> None:
    (volume,) = services["producer"]["volumes"]
    assert volume["source"] == "./mock.json"
    assert volume["read_only"] is True
    assert volume["bind"] == {"create_host_path": False}  # a missing file fails instead of becoming a dir
    command = services["producer"]["command"]
    assert command[:3] == ["l0-producer", "-file", volume["target"]]


def test_every_compose_variable_is_in_env_example(
    compose: dict[str, Any], ports_file: dict[str, Any], env_example: dict[str, str]
) -> None:
    references = variable_references(compose) + variable_references(ports_file)
    assert references, "the compose file should take its ports and credentials from .env"
    # The original's names are fallbacks of ours, documented in .env.example's header, not defined there
    # (POSTGRES_USER and the like are names of both).
    fallbacks = ORIGINAL_NAMES - set(env_example)
    names = {name for name, _ in references} - fallbacks
    missing = sorted(names - set(env_example))
    assert not missing, f"docker-compose.yml uses variables .env.example does not define: {missing}"
    for name, default in references:
        if name in fallbacks:
            continue
        # The stack must behave the same with a fresh copy of .env.example and without any .env.
        assert default is None or default == env_example[name], f"${{{name}}} defaults to {default!r}"
    unused = set(env_example) - names
    assert unused == {"POSTGRES_DSN"}, "only POSTGRES_DSN (for running outside compose) may be unused"
    for name in fallbacks & {name for name, _ in references}:
        assert name in ENV_EXAMPLE.read_text(encoding="utf-8"), f"{name}: say in .env.example what it does"


def test_environment_values_are_strings(services: dict[str, dict[str, Any]]) -> None:
    # YAML would turn an unquoted `false`, `no` or `on` into a boolean; quoted values reach the container
    # exactly as written.
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            assert isinstance(value, str), f"{name}: quote the value of {key}"


def test_service_containers_use_real_setting_names(services: dict[str, dict[str, Any]]) -> None:
    for name in IMAGE_SERVICES:
        for key in services[name].get("environment", {}):
            if looks_like_a_setting(key) and key not in ORIGINAL_NAMES:
                assert key in SETTING_ENV_NAMES, f"{name}: {key} is not a setting (see config.yaml.example)"


@pytest.mark.parametrize("with_env_file", [True, False], ids=["with-env-example", "without-env-file"])
@pytest.mark.parametrize("name", ["app", "migrate"])
def test_service_container_environment_is_a_valid_configuration(
    services: dict[str, dict[str, Any]], env_example: dict[str, str], name: str, with_env_file: bool
) -> None:
    environ = service_env(services[name], env_example if with_env_file else {})
    settings = load_settings(None, environ)  # raises ConfigError naming the bad key
    dsn = conninfo_to_dict(settings.postgres.dsn)
    assert (dsn["host"], dsn["port"]) == ("postgres", "5432")  # the compose service, its container port
    assert (dsn["user"], dsn["password"], dsn["dbname"]) == (
        env_example["POSTGRES_USER"],
        env_example["POSTGRES_PASSWORD"],
        env_example["POSTGRES_DB"],
    )
    if name == "app":
        assert settings.http.host == "0.0.0.0"  # noqa: S104 - a container must listen on all interfaces
        assert settings.http.port == APP_CONTAINER_PORT
        assert settings.postgres.migrate_on_start is False  # the `migrate` service applies them
        assert settings.kafka.topic == env_example["KAFKA_TOPIC"]
        assert settings.kafka.group_id == env_example["KAFKA_GROUP_ID"]


def test_app_port_is_the_container_port_everywhere(services: dict[str, dict[str, Any]]) -> None:
    (mapping,) = services["app"]["ports"]
    assert (
        mapping
        == f"${{BIND_ADDRESS:-127.0.0.1}}:${{HTTP_PORT:-${{HTTP_SERVER_PORT:-8080}}}}:{APP_CONTAINER_PORT}"
    )
    assert services["app"]["environment"]["HTTP_PORT"] == str(APP_CONTAINER_PORT)
    assert ("EXPOSE", str(APP_CONTAINER_PORT)) in final_stage()


def test_containers_reach_kafka_on_its_in_network_listener(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]["environment"]
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "PLAINTEXT://kafka:9092" in advertised
    assert any(listener.startswith("EXTERNAL://localhost:${KAFKA_PORT") for listener in advertised)
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # the service creates its topics
    assert services["app"]["environment"]["KAFKA_BROKERS"] == "kafka:9092"
    command = services["producer"]["command"]
    assert command[command.index("-brokers") + 1] == "kafka:9092"


# --------------------------------------------------------------------------------------------- .env


def test_env_example_has_a_comment_for_every_variable() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for previous, line in itertools.pairwise(lines):
        if line and not line.startswith("#"):
            assert previous.startswith("# "), f"{line.split('=')[0]}: say what it is on the line above"


def test_env_example_service_settings_are_valid(env_example: dict[str, str]) -> None:
    shared = {key: value for key, value in env_example.items() if key in SETTING_ENV_NAMES}
    assert set(shared) >= {"POSTGRES_DSN", "HTTP_PORT", "LOG_LEVEL", "KAFKA_TOPIC", "KAFKA_GROUP_ID"}
    load_settings(None, shared)  # raises ConfigError naming the bad key
    other = set(env_example) - set(shared)
    assert not {key for key in other if looks_like_a_setting(key)} - {
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
        "POSTGRES_PORT",
        "KAFKA_PORT",
    }, "a variable named like a setting that is not one"


def test_env_example_dsn_matches_the_compose_database(env_example: dict[str, str]) -> None:
    dsn = conninfo_to_dict(env_example["POSTGRES_DSN"])
    assert dsn["user"] == env_example["POSTGRES_USER"]
    assert dsn["password"] == env_example["POSTGRES_PASSWORD"]
    assert dsn["dbname"] == env_example["POSTGRES_DB"]
    assert dsn["port"] == env_example["POSTGRES_PORT"]


# -------------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_is_multi_stage_on_python_311() -> None:
    froms = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]
    assert len(froms) >= 2, "a builder stage and a runtime stage"
    assert all(arguments.split()[0] == "python:3.11-slim" for arguments in froms)
    copies = [arguments for keyword, arguments in final_stage() if keyword == "COPY"]
    assert any(arguments.startswith("--from=") and "/opt/venv" in arguments for arguments in copies)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [arguments for keyword, arguments in final_stage() if keyword == "USER"]
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"


def test_dockerfile_health_check_and_command() -> None:
    stage = final_stage()
    (healthcheck,) = [arguments for keyword, arguments in stage if keyword == "HEALTHCHECK"]
    command = exec_form(healthcheck[healthcheck.index("CMD") + len("CMD") :].strip())
    assert command[:2] == ["python", "-c"]  # slim images have no curl
    assert "urllib.request" in command[2]
    assert "http://127.0.0.1:%s/healthz" in command[2]
    assert "'8080'" in command[2]
    compile(command[2], "<HEALTHCHECK>", "exec")
    (cmd,) = [arguments for keyword, arguments in stage if keyword == "CMD"]
    assert exec_form(cmd) == ["l0-service", "serve"]
    env = " ".join(arguments for keyword, arguments in stage if keyword == "ENV")
    assert "HTTP_HOST=0.0.0.0" in env
    assert f"HTTP_PORT={APP_CONTAINER_PORT}" in env
    assert ("WORKDIR", "/app") in stage


def test_dockerfile_copies_exist_and_reach_the_build_context() -> None:
    ignored = [
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".venv", ".local", ".git", "mock.json", "test-artifacts", ".mypy_cache"} <= set(ignored)
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY" or arguments.startswith("--from="):
            continue
        *sources, _destination = shlex.split(arguments)
        for source in sources:
            if re.search(r"[*?\[]", source):
                continue  # a wildcard source is optional by design (README.m[d])
            path = source.rstrip("/")
            assert (ROOT / path).exists(), f"COPY {source}: not in the repository"
            assert not any(fnmatch(path, pattern) for pattern in ignored), f".dockerignore drops {source}"


def test_image_has_the_data_files_where_the_service_looks() -> None:
    # internal/pkg/paths.py reads sql/ and templates/ under $L0_HOME; the image sets it and copies both.
    env = [arguments for keyword, arguments in final_stage() if keyword == "ENV"]
    assert any(re.search(r"\bL0_HOME=/app\b", e) for e in env), env
    assert ("WORKDIR", "/app") in final_stage()
    for relative in (migrations_dir(), templates_dir()):
        name = relative.relative_to(project_home()).as_posix()
        assert ("COPY", f"{name}/ ./{name}/") in final_stage()


# ------------------------------------------------------------------------------------------ Prometheus


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sum by (status) (rate(http_requests_total[1m]))", {"http_requests_total"}),
        ('up{job="orders-app"} == 0', {"up"}),
        (
            'histogram_quantile(0.99, sum(rate(a_bucket{x=~"y|z"}[5m])) by (le)) > 1e3 and on (job) b',
            {"a_bucket", "b"},
        ),
    ],
)
def test_metric_names_reads_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_prometheus_scrapes_the_app_and_loads_its_rules(services: dict[str, dict[str, Any]]) -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "orders-app"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"] == [{"targets": [f"app:{APP_CONTAINER_PORT}"]}]
    assert config["global"]["scrape_interval"] == "5s"
    mounts = bind_mounts(services["prometheus"])
    config_target = next(target for target, host in mounts.items() if host.endswith("/prometheus.yml"))
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file(), rule_file
        # rule_files are relative to the config file: the rule file must be mounted next to it.
        in_container = str(Path(config_target).parent / rule_file)
        assert mounts.get(in_container) == f"./configs/prometheus/{rule_file}", in_container


def test_alert_rules_are_valid_and_query_known_series() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    rules = [rule for group in load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {"ServiceDown"}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
        assert metric_names(rule["expr"]) <= SERVICE_METRICS | PROMETHEUS_SERIES, rule["expr"]
        assert set(re.findall(r'job="([^"]*)"', rule["expr"])) <= jobs, rule["expr"]
    service_down = next(rule for rule in rules if rule["alert"] == "ServiceDown")
    assert (service_down["expr"], service_down["for"]) == ('up{job="orders-app"} == 0', "1m")


# --------------------------------------------------------------------------------------------- Grafana


def test_grafana_datasource_is_the_compose_prometheus(services: dict[str, dict[str, Any]]) -> None:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    assert (source["type"], source["uid"], source["url"]) == (
        "prometheus",
        "prometheus",
        "http://prometheus:9090",
    )
    assert services["prometheus"]["ports"] == ["${BIND_ADDRESS:-127.0.0.1}:${PROMETHEUS_PORT:-9090}:9090"]


def test_grafana_loads_dashboards_from_the_mounted_directory(services: dict[str, dict[str, Any]]) -> None:
    (provider,) = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml")["providers"]
    assert provider["type"] == "file"
    mounts = bind_mounts(services["grafana"])
    assert mounts[provider["options"]["path"]] == "./configs/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./configs/grafana/provisioning"
    environment = services["grafana"]["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_dashboard_queries_exported_metrics_only() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert (dashboard["uid"], dashboard["title"]) == ("l0-orders", "L0 orders")
    datasource_uid = load_yaml(DATASOURCES)["datasources"][0]["uid"]
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    expressions = []
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == datasource_uid
            expressions.append(target["expr"])
    assert "sum by (status) (rate(http_requests_total[1m]))" in expressions
    assert "sum by (outcome) (rate(consumer_messages_total[1m]))" in expressions
    for expr in expressions:
        unknown = metric_names(expr) - SERVICE_METRICS
        assert not unknown, f"{expr}: not metrics the service exports: {sorted(unknown)}"
