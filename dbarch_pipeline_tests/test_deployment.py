"""docker-compose.yml agrees with the code: the user-code server loads the definitions module on the
port and host the docker workspace names; the webserver and daemon load that workspace and run the
image the user-code service builds; DAGSTER_PG_URL is what dagster.yaml reads; every DBARCH_* and
secret variable is one the code reads; the store database is created at init; the demo target has
pg_stat_statements; ports are valid. No Docker needed: the files are parsed."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from urllib.parse import urlsplit

import pytest
import yaml

from dbarch_pipeline.llm import gemini
from dbarch_pipeline.resources import github
from dbarch_pipeline.settings import PROJECT_ROOT

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
USER_CODE, WEBSERVER, DAEMON = "dbarch_user_code", "dagster_webserver", "dagster_daemon"
DAGSTER_SERVICES = (USER_CODE, WEBSERVER, DAEMON)
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _option(service: str, *flags: str) -> str:
    command = SERVICES[service]["command"]
    for i, arg in enumerate(command):
        if arg in flags:
            return command[i + 1]
    raise AssertionError(f"{service}'s command has none of {flags}: {command}")


def _env(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _resolved(value: str) -> str:
    """The value with ${VAR:-default} replaced by its default (what runs when VAR is unset)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def _docker_workspace() -> dict:
    path = PROJECT_ROOT / _option(WEBSERVER, "-w", "--workspace")
    return yaml.safe_load(path.read_text())["load_from"][0]["grpc_server"]


def _package_source() -> str:
    return "\n".join(p.read_text() for p in (PROJECT_ROOT / "dbarch_pipeline").rglob("*.py"))


def _dockerfile() -> str:
    return (PROJECT_ROOT / SERVICES[USER_CODE]["build"]["dockerfile"]).read_text()


def test_user_code_serves_the_definitions_module():
    module = _option(USER_CODE, "-m", "--module-name")
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    assert module == "dbarch_pipeline.definitions" == pyproject["tool"]["dagster"]["module_name"]
    assert workspace["load_from"][0]["python_module"]["module_name"] == module
    assert importlib.util.find_spec(module) is not None
    assert SERVICES[USER_CODE]["command"][:3] == ["dagster", "code-server", "start"]


def test_code_server_is_where_the_docker_workspace_looks():
    grpc = _docker_workspace()
    assert int(_option(USER_CODE, "-p", "--port")) == grpc["port"]
    assert _option(USER_CODE, "-h", "--host") == "0.0.0.0"
    assert grpc["host"] == USER_CODE in SERVICES
    local = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    assert grpc["location_name"] == local["location_name"]


@pytest.mark.parametrize("service", [WEBSERVER, DAEMON])
def test_webserver_and_daemon_load_the_docker_workspace_from_the_image(service):
    workspace = _option(service, "-w", "--workspace")
    assert workspace == _option(WEBSERVER, "-w", "--workspace")
    assert (PROJECT_ROOT / workspace).is_file()
    dockerfile = _dockerfile()
    workdir = re.search(r"^WORKDIR\s+(\S+)", dockerfile, re.MULTILINE).group(1)
    # the relative path is resolved from the image's WORKDIR, where the Dockerfile must put the file
    assert re.search(rf"^COPY\s+{re.escape(workspace)}\s+{re.escape(workdir)}/{re.escape(workspace)}\s*$",
                     dockerfile, re.MULTILINE), f"{workspace} is not copied to {workdir}/{workspace}"


def test_webserver_and_daemon_run_the_image_the_user_code_service_builds():
    built = SERVICES[USER_CODE]["image"]
    assert SERVICES[USER_CODE]["build"]["context"] == "."
    assert (PROJECT_ROOT / SERVICES[USER_CODE]["build"]["dockerfile"]).is_file()
    assert SERVICES[WEBSERVER]["image"] == SERVICES[DAEMON]["image"] == built
    assert _env(USER_CODE)["DAGSTER_CURRENT_IMAGE"] == built
    for service in (WEBSERVER, DAEMON):
        assert "build" not in SERVICES[service]
        assert USER_CODE in SERVICES[service]["depends_on"]


def test_dagster_storage_url_is_the_variable_dagster_yaml_reads():
    from dbarch_pipeline import dagster_storage

    instance = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    assert instance["storage"]["custom"]["module"] == dagster_storage.__name__
    variable = dagster_storage.PG_URL_ENV   # read first, when the instance loads
    assert variable == "DAGSTER_PG_URL"
    storage = SERVICES["dagster_postgresql"]["environment"]
    for service in DAGSTER_SERVICES:
        url = urlsplit(_resolved(_env(service)[variable]))
        # psycopg2 explicitly: SQLAlchemy would pick psycopg 3 for a bare postgresql:// (see run.py)
        assert url.scheme == "postgresql+psycopg2"
        assert url.hostname == "dagster_postgresql" and url.port == 5432
        assert (url.username, url.password, url.path.lstrip("/")) == (
            storage["POSTGRES_USER"], storage["POSTGRES_PASSWORD"], storage["POSTGRES_DB"])


def test_every_dbarch_variable_is_read_by_the_code():
    source = _package_source()
    names = set()
    for service in SERVICES:
        for key, value in _env(service).items():
            names |= {key} | {m.group(1) for m in INTERPOLATION.finditer(value)}
    dbarch = sorted(n for n in names if n.startswith("DBARCH_"))
    assert dbarch, "no DBARCH_* variable in docker-compose.yml"
    unread = [n for n in dbarch if f'"{n}"' not in source]
    assert not unread, f"docker-compose.yml sets variables no code reads: {unread}"


def test_secret_names_match_the_resources():
    env = _env(USER_CODE)
    assert gemini.API_KEY_ENV == "GEMINI_API_KEY" and gemini.API_KEY_ENV in env
    assert github.TOKEN_ENV == "GITHUB_TOKEN" and github.TOKEN_ENV in env
    # secrets come from the host's environment, never written into the file
    assert _resolved(env[gemini.API_KEY_ENV]) == "" and _resolved(env[github.TOKEN_ENV]) == ""


def test_store_database_is_created_by_the_init_script():
    store = urlsplit(_resolved(_env(USER_CODE)["DBARCH_STORE_DSN"]))
    assert store.hostname == "dagster_postgresql"
    mounts = [v.split(":") for v in SERVICES["dagster_postgresql"]["volumes"] if v.startswith("./")]
    init = [PROJECT_ROOT / src for src, dst, *_ in mounts if dst == "/docker-entrypoint-initdb.d"]
    assert init and init[0].is_dir()
    scripts = "\n".join(p.read_text() for p in sorted(init[0].glob("*.sql")))
    assert re.search(rf"CREATE DATABASE {store.path.lstrip('/')}\b", scripts)
    # pgvector for the store: the image ships it
    assert "pgvector" in SERVICES["dagster_postgresql"]["image"]


def test_demo_target_preloads_and_creates_pg_stat_statements():
    demo = SERVICES["demo_target"]
    assert "demo" in demo["profiles"]
    preload = [a for a in demo["command"] if a.startswith("shared_preload_libraries=")]
    assert preload and "pg_stat_statements" in preload[0].split("=", 1)[1].split(",")
    target = urlsplit(_resolved(_env(USER_CODE)["DBARCH_TARGET_DSN"]))
    assert target.hostname == "demo_target" and target.path.lstrip("/") == demo["environment"]["POSTGRES_DB"]
    assert target.password == demo["environment"]["POSTGRES_PASSWORD"]
    mounts = [v.split(":") for v in demo["volumes"]]
    init = [PROJECT_ROOT / src for src, dst, *_ in mounts if dst == "/docker-entrypoint-initdb.d"]
    assert init and any("CREATE EXTENSION IF NOT EXISTS pg_stat_statements" in p.read_text()
                        for p in init[0].glob("*.sql"))


def test_ports_are_valid_and_match_the_commands():
    published = {}
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            host, container = (int(p) for p in str(mapping).split(":")[-2:])
            assert 1 <= host <= 65535 and 1 <= container <= 65535, (name, mapping)
            published[name] = container
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"
    assert published[WEBSERVER] == int(_option(WEBSERVER, "-p", "--port"))
    assert published["demo_target"] == 5432
    assert 1 <= int(_option(USER_CODE, "-p", "--port")) <= 65535


# -- the admin API and the monitoring profile ------------------------------------------------------

def _mounts(service: str) -> dict[str, str]:
    """container path -> local path of a service's bind mounts."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        src, dst, *_ = volume.split(":")
        if src.startswith("./"):
            out[dst] = src
    return out


def _local(service: str, container_path: str):
    """The local file a container path of a bind-mounted service resolves to."""
    for dst, src in sorted(_mounts(service).items(), key=lambda kv: -len(kv[0])):
        if container_path == dst or container_path.startswith(dst.rstrip("/") + "/"):
            return PROJECT_ROOT / src / container_path[len(dst):].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted into {service}")


def test_api_service_serves_on_its_published_port_with_tokens_from_the_host():
    from dbarch_pipeline.api.app import ApiConfig, create_app
    from dbarch_pipeline.api.auth import TOKENS_ENV

    api = SERVICES["dbarch_api"]
    assert api["command"][:2] == ["dbarch", "serve"] and _option("dbarch_api", "--host") == "0.0.0.0"
    port = int(_option("dbarch_api", "--port"))
    assert [int(p.split(":")[-1]) for p in api["ports"]] == [port]
    assert api["image"] == SERVICES[USER_CODE]["image"] and "build" not in api
    env = _env("dbarch_api")
    # the tokens come from the host; without them the server refuses 0.0.0.0 (tested in test_api.py)
    assert TOKENS_ENV in env and _resolved(env[TOKENS_ENV]) == ""
    assert env["DBARCH_STORE_DSN"] == _env(USER_CODE)["DBARCH_STORE_DSN"]
    probe = " ".join(api["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in probe
    paths = set(create_app(ApiConfig(resources={}, warm=False)).openapi()["paths"])
    assert "/healthz" in paths and "/metrics" in paths


def test_prometheus_scrapes_the_api_and_loads_the_alert_rules():
    prometheus = SERVICES["prometheus"]
    assert "monitoring" in prometheus["profiles"]
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config = yaml.safe_load(_local("prometheus", config_flag.split("=", 1)[1]).read_text())
    scrape = next(j for j in config["scrape_configs"] if j["job_name"] == "dbarch")
    host, port = scrape["static_configs"][0]["targets"][0].split(":")
    assert host == "dbarch_api" and int(port) == int(_option("dbarch_api", "--port"))
    assert scrape.get("metrics_path", "/metrics") == "/metrics"
    for rule_file in config["rule_files"]:
        assert _local("prometheus", rule_file).is_file(), rule_file


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard():
    grafana = SERVICES["grafana"]
    assert "monitoring" in grafana["profiles"]
    provisioning = _local("grafana", "/etc/grafana/provisioning")
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    assert [int(p.split(":")[-1]) for p in SERVICES["prometheus"]["ports"]] == [9090]
    provider = yaml.safe_load((provisioning / "dashboards" / "dbarch.yaml").read_text())["providers"][0]
    dashboards = _local("grafana", provider["options"]["path"])
    files = sorted(p.name for p in dashboards.glob("*.json"))
    assert files == ["dbarch.json"]
    dashboard = (dashboards / "dbarch.json").read_text()
    assert f'"uid": "{datasource["uid"]}"' in dashboard
