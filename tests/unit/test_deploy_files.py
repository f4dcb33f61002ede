"""The docker compose stack, read without Docker: its services, its environment, its commands.

Docker does not run on the test machines, so each piece is checked where it can be: the
compose file's shape, that .env.example names every variable GuestGate reads, that every
command the services run exists here, that gunicorn serves /healthz with the compose file's
own command and healthcheck, and that the installed Synapse accepts both homeserver.yaml.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devtools import processes
from devtools.localpair.config import guest_federation_retry
from ops.health import CHECK_NAMES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
GUESTGATE_SERVICES = ("migrate", "web", "worker", "beat")
BIN = Path(sys.executable).parent

# Every way settings.py reads a variable (guestgate/env.py and its two homeserver helpers).
_SETTINGS_READ = re.compile(
    r"\b(?:env_str|env_int|env_bool|env_list|env_secret|_hs|_hs_secret)\(\s*\"([A-Z0-9_]+)\""
)
# "NAME=value" or "# NAME=default" (a commented-out default) in .env.example.
_ENV_LINE = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=", re.MULTILINE)
_COMPOSE_ONLY_MARKER = "# --- docker compose only"


def settings_variables() -> set[str]:
    sources = [ROOT / "guestgate" / "settings.py", ROOT / "guestgate" / "env.py"]
    return {name for path in sources for name in _SETTINGS_READ.findall(path.read_text())}


def env_example_sections() -> tuple[set[str], set[str]]:
    """Variables for GuestGate, and those only docker-compose.yml reads."""
    text = (ROOT / ".env.example").read_text()
    guestgate, _, compose_only = text.partition(_COMPOSE_ONLY_MARKER)
    return set(_ENV_LINE.findall(guestgate)), set(_ENV_LINE.findall(compose_only))


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **extra}


# -- (a) The services ----------------------------------------------------------------------


def test_every_service_has_an_image_and_something_to_run():
    expected = {
        "postgres",
        "redis",
        "synapse-volumes",
        "synapse-guest",
        "synapse-main",
        "livekit",
        "livekit-jwt",
        "migrate",
        "web",
        "worker",
        "beat",
    }
    assert set(SERVICES) == expected
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
    for name in ("redis", "synapse-guest", "synapse-main", *GUESTGATE_SERVICES):
        assert SERVICES[name]["command"], name
    assert SERVICES["synapse-volumes"]["entrypoint"][0] == "chown"


def test_guestgate_services_are_built_here_and_run_what_they_should():
    for name in GUESTGATE_SERVICES:
        assert SERVICES[name]["build"] == "."
    assert SERVICES["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert SERVICES["web"]["command"][:2] == ["gunicorn", "guestgate.wsgi"]
    assert SERVICES["worker"]["command"][:4] == ["celery", "-A", "guestgate", "worker"]
    assert SERVICES["beat"]["command"][:4] == ["celery", "-A", "guestgate", "beat"]


def test_web_worker_beat_and_migrate_share_one_environment():
    first = SERVICES["web"]
    for name in GUESTGATE_SERVICES:
        assert SERVICES[name]["env_file"] == first["env_file"] == ".env"
        assert SERVICES[name]["environment"] == first["environment"]
    environment = first["environment"]
    assert environment["DATABASE_URL"].startswith("postgres://guestgate:${POSTGRES_PASSWORD")
    assert "@postgres:5432/guestgate" in environment["DATABASE_URL"]
    assert environment["CELERY_BROKER_URL"] == "redis://redis:6379/0"


def test_the_calls_focus_is_livekit_and_its_jwt_service_which_guestgate_is_given():
    livekit, jwt = SERVICES["livekit"], SERVICES["livekit-jwt"]
    assert livekit["image"].startswith("livekit/livekit-server:")
    assert jwt["image"].startswith("ghcr.io/element-hq/lk-jwt-service:")
    keys = livekit["environment"]["LIVEKIT_KEYS"]
    assert "${LIVEKIT_KEY" in keys and "${LIVEKIT_SECRET" in keys
    assert set(jwt["environment"]) == {
        "LIVEKIT_URL",
        "LIVEKIT_KEY",
        "LIVEKIT_SECRET",
        "LIVEKIT_FULL_ACCESS_HOMESERVERS",
    }
    for name in ("LIVEKIT_KEY", "LIVEKIT_SECRET"):
        assert jwt["environment"][name].startswith("${" + name)
    # Browsers call the JWT service, so GuestGate is given its public URL, not a compose name.
    focus = SERVICES["web"]["environment"]["GUESTGATE_LIVEKIT_SERVICE_URLS"]
    assert focus.startswith("${LIVEKIT_JWT_PUBLIC_URL")
    assert "7882:7882/udp" in livekit["ports"]


def test_exactly_one_beat():
    assert SERVICES["beat"]["deploy"]["replicas"] == 1


def test_web_worker_and_beat_wait_for_the_migrations_and_migrate_runs_once():
    for name in ("web", "worker", "beat"):
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["redis"] == {"condition": "service_healthy"}
    assert SERVICES["migrate"]["restart"] == "no"


def test_redis_keeps_tasks_and_never_evicts_them():
    command = SERVICES["redis"]["command"]
    assert command[0] == "redis-server"
    assert " ".join(command).count("--appendonly yes") == 1
    assert " ".join(command).count("--maxmemory-policy noeviction") == 1


def test_stateful_services_keep_their_data_in_named_volumes_and_have_healthchecks():
    volumes = set(COMPOSE["volumes"])
    for name, mount in (
        ("postgres", "/var/lib/postgresql/data"),
        ("redis", "/data"),
        ("synapse-guest", "/data"),
        ("synapse-main", "/data"),
    ):
        service = SERVICES[name]
        named = [v.split(":")[0] for v in service["volumes"] if v.endswith(":" + mount)]
        assert named and named[0] in volumes, name
        assert service["healthcheck"]["test"], name
    assert "/healthz" in "\n".join(SERVICES["web"]["healthcheck"]["test"])


def test_both_synapses_use_the_official_image_and_their_config_folder():
    for role in ("guest", "main"):
        service = SERVICES[f"synapse-{role}"]
        assert service["image"].startswith("matrixdotorg/synapse:")
        assert f"./deploy/synapse/{role}:/config:ro" in service["volumes"]
        assert service["environment"]["SYNAPSE_CONFIG_PATH"] == "/config/homeserver.yaml"
        config = yaml.safe_load((ROOT / f"deploy/synapse/{role}/homeserver.yaml").read_text())
        assert config["app_service_config_files"] == ["/config/guestgate-appservice.yaml"]
        assert int(config["default_room_version"]) >= 7  # knocking
        assert config["rc_federation"]["concurrent"] > 3  # P9
    main = yaml.safe_load((ROOT / "deploy/synapse/main/homeserver.yaml").read_text())
    assert main["rc_invites"]["per_room"]["burst_count"] > 10  # P9


def test_the_guest_synapse_backs_off_from_main_briefly_as_the_local_pair_does():
    guest = yaml.safe_load((ROOT / "deploy/synapse/guest/homeserver.yaml").read_text())
    # Synapse's default, 10 minutes and doubling, kept guests out long after an outage of main.
    assert guest["federation"] == guest_federation_retry()["federation"]


def test_every_file_the_stack_mounts_is_here():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"


# -- (b) The environment -------------------------------------------------------------------


def test_env_example_names_every_variable_guestgate_reads_and_no_other():
    guestgate, _ = env_example_sections()
    read = settings_variables()

    assert len(read) > 40  # the pattern still finds them
    assert guestgate - read == set(), "in .env.example but not read by settings.py"
    assert read - guestgate == set(), "read by settings.py but missing from .env.example"


def test_compose_only_variables_are_exactly_those_the_compose_file_uses():
    guestgate, compose_only = env_example_sections()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))

    assert compose_only == used - guestgate
    assert compose_only.isdisjoint(settings_variables())


# -- (c) The commands exist ----------------------------------------------------------------


def test_gunicorn_is_installed_and_the_app_loads():
    import gunicorn  # noqa: F401

    from guestgate.wsgi import application

    assert (BIN / "gunicorn").exists()
    assert callable(application)


@pytest.mark.parametrize("subcommand", ["worker", "beat"])
def test_celery_commands_exist(subcommand):
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "guestgate", subcommand, "--help"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    if subcommand == "beat":
        assert "--schedule" in result.stdout


def test_migrate_command_exists():
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--help"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--noinput" in result.stdout


# -- (d) gunicorn serves /healthz, as the compose file runs it -----------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def gunicorn_url(tmp_path: Path) -> Iterator[str]:
    """web's own command, on a free local port, with one worker and nowhere homeservers."""
    port = _free_port()
    nowhere = f"http://127.0.0.1:{_free_port()}"
    command = list(SERVICES["web"]["command"])
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    command[command.index("--workers") + 1] = "1"
    env = subprocess_env(
        GUESTGATE_VAR_DIR=str(tmp_path / "var"),
        GUESTGATE_ALLOWED_HOSTS="127.0.0.1,web",
        GUEST_HS_URL=nowhere,
        MAIN_HS_URL=nowhere,
        DATABASE_URL=f"sqlite:///{tmp_path / 'healthz.sqlite3'}",
    )
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = processes.spawn([str(BIN / command[0]), *command[1:]], env=env, log=log)
    processes.wait_until_ready(
        process, lambda: _listening(port), what="gunicorn", log_path=log_path
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.stop(process)


def test_gunicorn_serves_healthz_as_json(gunicorn_url: str):
    request = urllib.request.Request(f"{gunicorn_url}/healthz", headers={"Host": "web"})
    try:
        response = urllib.request.urlopen(request, timeout=15)
    except urllib.error.HTTPError as error:  # 503: the homeservers are nowhere
        response = error
    body = json.load(response)

    assert response.status in (200, 503)
    assert response.headers["Content-Type"] == "application/json"
    assert body["status"] in ("ok", "degraded", "down")
    assert set(body["checks"]) == set(CHECK_NAMES)
    for check in body["checks"].values():
        assert isinstance(check["ok"], bool) and isinstance(check["detail"], str)
    assert body["checks"]["main_homeserver"]["ok"] is False  # nowhere, as arranged


def test_web_healthcheck_passes_while_the_database_works(gunicorn_url: str):
    """The compose file's own healthcheck script, pointed at this gunicorn."""
    test = SERVICES["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    script = test[3].replace("http://127.0.0.1:8000", gunicorn_url)

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)

    assert result.returncode == 0, result.stderr


# -- Synapse accepts both homeserver.yaml ---------------------------------------------------


@pytest.mark.parametrize("role", ["guest", "main"])
def test_synapse_accepts_the_homeserver_config(role: str, tmp_path: Path):
    """The installed Synapse loads the file as the image would (with /config and /data here),
    with the registration `appservice_registration` writes."""
    pytest.importorskip("synapse")
    config_dir, data_dir = tmp_path / "config", tmp_path / "data"
    config_dir.mkdir()
    data_dir.mkdir()
    text = (ROOT / f"deploy/synapse/{role}/homeserver.yaml").read_text()
    (config_dir / "homeserver.yaml").write_text(
        text.replace("/config/", f"{config_dir}/").replace("/data/", f"{data_dir}/")
    )
    registration = subprocess.run(
        [sys.executable, "manage.py", "appservice_registration", role]
        + (["--url", "http://web:8000"] if role == "main" else []),
        cwd=ROOT,
        env=subprocess_env(GUEST_HS_SERVER_NAME="guests.example.org"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert registration.returncode == 0, registration.stderr
    (config_dir / "guestgate-appservice.yaml").write_text(registration.stdout)
    load = (
        "from synapse.config.homeserver import HomeServerConfig\n"
        "c = HomeServerConfig.load_or_generate_config('check', ['-c', "
        f"{str(config_dir / 'homeserver.yaml')!r}])\n"
        "print(c.server.server_name, c.server.default_room_version.identifier)\n"
    )

    # Not from inside site-packages/synapse (P10); Synapse makes the signing key itself.
    result = subprocess.run(
        [sys.executable, "-c", load],
        cwd=config_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    server_name = "guests.example.org" if role == "guest" else "example.org"
    assert result.stdout.splitlines()[-1].split() == [server_name, "12"]
    assert (data_dir / "signing.key").exists()
