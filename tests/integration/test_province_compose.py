"""deploy/province/compose.yaml, the W100 shape in miniature, checked without Docker (there is no
Docker daemon where this was written): two warnd instances of one county with distinct
`[server] instance` names on one database and one broker, read through warnd's own settings
loader; the fault-injecting provider they send to, run here for real; nginx in front of both;
a healthcheck on every long-running service. With a Docker CLI, `docker compose config` too."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from channels.base import InDoubtSendError, OutboundMessage, error_reason
from channels.sms_tencent import TencentSms
from devtools.faults.provider import build, parser
from warnd.config import Settings, load_settings

PROVINCE = Path(__file__).resolve().parents[2] / "deploy" / "province"
COMPOSE = PROVINCE / "compose.yaml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def warnd_services(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in c["services"].items() if s.get("command") == ["serve"]}


def config_of(service: dict[str, Any]) -> Settings:
    [mount] = [v for v in service["volumes"] if v.endswith(":/etc/warnd/warnd.toml:ro")]
    path = PROVINCE / mount.split(":")[0]
    assert service["environment"]["WARND_CONFIG"] == "/etc/warnd"
    return load_settings(path, env={})


def provider_args(c: dict[str, Any]) -> Any:
    service = c["services"]["provider"]
    assert service["entrypoint"] == ["python", "-m", "devtools.faults.provider"]
    return parser().parse_args(service["command"])  # the real CLI accepts what compose passes


def test_two_instances_of_one_county_share_the_database_the_broker_and_the_provider() -> None:
    c = compose()
    services = c["services"]
    warnd = warnd_services(c)
    assert sorted(warnd) == ["warnd-a", "warnd-b"]
    settings = {name: config_of(s) for name, s in warnd.items()}
    instances = {s.server.instance for s in settings.values()}
    assert len(instances) == 2 and "" not in instances  # distinct, named: several instances of one county
    assert len({s.county.code for s in settings.values()}) == 1
    # One database: the compose's PostgreSQL, with its user, password and database name.
    [url] = {s.database.url for s in settings.values()}
    db = make_url(url)
    env = services["db"]["environment"]
    assert (db.host, db.username, db.password, db.database) == (
        "db", env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"])
    # One broker: loudspeakers on, each instance its own client of one shared group.
    mqtt = [s.speakers.mqtt(s.county.code, s.server.instance) for s in settings.values()]
    assert all(s.speakers.enabled for s in settings.values())
    assert {(m.host, m.port) for m in mqtt} == {("mqtt", 1883)}
    assert len({m.client_id for m in mqtt}) == 2 and len({m.share_group for m in mqtt}) == 1
    # One provider: the fault-injecting simulator, with the credentials warnd signs with.
    args = provider_args(c)
    listen_port = int(args.listen.rpartition(":")[2])
    for s in settings.values():
        assert s.sms.provider == "tencent"
        endpoint = urlsplit(s.sms.tencent.endpoint)
        assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "provider", listen_port)
        t = s.sms.tencent
        assert (t.secret_id, t.secret_key, t.sdk_app_id, t.sign_name) == (
            args.secret_id, args.secret_key, args.sdk_app_id, args.sign_name)
        # Status reports come back through the load balancer with the county's callback token.
        assert args.status_callback == f"http://lb:8080/webhooks/tencent/sms/{t.callback_token}/status"
        assert s.server.host == "0.0.0.0" and s.server.port == 8080
    assert args.accepted_log is not None and (args.share_500, args.late, args.broken) != (0, 0, 0)
    # The two instances run one image: the one deploy/Dockerfile builds.
    build_of = services["provider"]["build"]
    assert (PROVINCE / build_of["context"] / build_of["dockerfile"]).resolve() == (
        PROVINCE.parents[0] / "Dockerfile").resolve()
    assert {s["image"] for s in warnd.values()} == {services["provider"]["image"]}
    for s in warnd.values():
        assert s["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert s["depends_on"]["mqtt"] == {"condition": "service_healthy"}
        assert s["depends_on"]["provider"] == {"condition": "service_healthy"}
    assert services["migrate"]["command"] == ["db", "upgrade"]


def test_nginx_balances_both_instances_and_every_service_has_a_healthcheck() -> None:
    c = compose()
    services = c["services"]
    lb = services["lb"]
    [mount] = [v for v in lb["volumes"] if v.endswith(":/etc/nginx/conf.d/default.conf:ro")]
    conf = (PROVINCE / mount.split(":")[0]).read_text(encoding="utf-8")
    upstream = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", conf, re.M))
    assert upstream == {f"{name}:8080" for name in warnd_services(c)}
    assert re.search(r"listen 8080;", conf) and "proxy_next_upstream error" in conf
    assert lb["ports"] == ["127.0.0.1:8080:8080"]
    for name in ("db", "mqtt", "provider", "warnd-a", "warnd-b", "lb"):
        check = services[name].get("healthcheck", {})
        assert check.get("test") and check.get("retries", 0) > 0, name
    assert "/healthz" in " ".join(services["warnd-a"]["healthcheck"]["test"])
    # Every file the services mount is in the checkout.
    for name, s in services.items():
        for v in s.get("volumes", []):
            source = v.split(":")[0]
            if source.startswith("."):
                assert (PROVINCE / source).is_file(), (name, source)


def test_the_docs_say_the_compose_file_was_not_run_here() -> None:
    text = (PROVINCE.parents[1] / "docs" / "province.md").read_text(encoding="utf-8")
    assert "deploy/province/compose.yaml" in text and "not run" in text
    assert "NOT RUN HERE" in COMPOSE.read_text(encoding="utf-8")


def _msg(key: str) -> OutboundMessage:
    return OutboundMessage(idempotency_key=key, to="+8613800000001", body="【临灾预警】演练", created_at=datetime.now(UTC))


async def test_the_provider_injects_its_faults_and_logs_what_it_accepted(tmp_path: Path) -> None:
    """The provider of the compose file, run here: with every request answered 500 nothing is
    accepted and warnd's Tencent channel is left in doubt; without faults the text is accepted
    and in the accepted log before the answer."""
    log = tmp_path / "accepted.jsonl"

    async def send(extra: list[str], key: str) -> Exception | str:
        args = parser().parse_args(["--listen", "127.0.0.1:0", "--accepted-log", str(log), *extra])
        sim = build(args)
        await sim.start("127.0.0.1", 0)
        channel = TencentSms(secret_id=args.secret_id, secret_key=args.secret_key, sdk_app_id=args.sdk_app_id,
                             sign_name=args.sign_name, template_id="100001", callback_token="c" * 32,
                             endpoint=sim.base_url.removeprefix("http://"), timeout=3)
        try:
            return (await channel.send(_msg(key))).provider_id
        except Exception as e:
            return e
        finally:
            await channel.close()
            await sim.stop()

    failed = await send(["--share-500", "1"], "k-1")
    assert isinstance(failed, InDoubtSendError) and error_reason(failed) == "in_doubt"
    assert not log.exists() or log.read_text(encoding="utf-8") == ""
    accepted = await send([], "k-2")
    assert isinstance(accepted, str)
    [line] = log.read_text(encoding="utf-8").splitlines()
    assert '"k-2"' in line and "演练" in line


def test_docker_compose_reads_the_file() -> None:
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                        timeout=30).returncode != 0:
        pytest.skip("no docker compose here")
    r = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
