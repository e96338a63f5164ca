"""The nginx proxy (deploy/nginx/nginx.conf): its limits are the app's settings, it hides what it
should, ``nginx -t`` accepts it, and, measured against a real ``simscore serve``, it cuts off
slow clients at the configured times and refuses over-size bodies before they reach the app.

The measured test needs an nginx binary (Debian's ``nginx-light``) and takes about 42 s here: the
slow clients run at once, so it lasts about ``client_body_timeout`` (20 s) plus the server's
start and the limit checks' waits for a full rate bucket.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from app.api.middleware import _SAFE_ID
from deploy import nginx_conf, proxy_check, proxy_probes
from tests.deploy.files import compose, compose_env, settings_from_env


@pytest.fixture(scope="module")
def http() -> nginx_conf.Directive:
    return nginx_conf.load().one("http")


def _nginx() -> str:
    nginx = proxy_check.find_nginx()
    if nginx is None:
        pytest.skip("no nginx binary (apt-get install nginx-light)")
    return nginx


def test_parser_reads_blocks_strings_and_comments() -> None:
    config = nginx_conf.parse(
        "a 1; # a comment; b 2;\nhttp { map $x $y { \"~^[a-z]{1,3}$\" $x; default 'q;r'; } }\n"
    )
    assert [(d.name, d.args) for d in config.children] == [("a", ["1"]), ("http", [])]
    mapping = config.one("http").one("map")
    assert [(d.name, d.args) for d in mapping.children] == [
        ("~^[a-z]{1,3}$", ["$x"]),
        ("default", ["q;r"]),
    ]
    with pytest.raises(ValueError, match="unterminated"):
        nginx_conf.parse("http { a 1;")
    assert nginx_conf.seconds("500ms") == 0.5
    assert nginx_conf.size_bytes("1m") == 1 << 20


def test_proxy_limits_are_the_apps_settings(http: nginx_conf.Directive) -> None:
    settings = settings_from_env(compose_env())
    assert nginx_conf.seconds(http.value("client_header_timeout")) == settings.header_timeout_s
    assert nginx_conf.seconds(http.value("client_body_timeout")) == settings.body_timeout_s
    assert nginx_conf.size_bytes(http.value("client_max_body_size")) == settings.max_request_bytes
    locations = {tuple(d.args): d for d in http.one("server").find("location")}
    message = " ".join(locations[("@too_large",)].one("return").args)
    assert str(settings.max_request_bytes) in message


def test_proxy_buffers_uploads_and_hides_its_version(http: nginx_conf.Directive) -> None:
    assert http.value("proxy_request_buffering") == "on"
    assert nginx_conf.size_bytes(http.value("client_body_buffer_size")) >= 64 * 1024
    assert http.value("server_tokens") == "off"
    assert http.value("client_body_temp_path").startswith("/tmp/")
    # Every temporary path is writable on the read-only root (the /tmp tmpfs).
    temp_paths = [d for d in http.children if d.name.endswith("_temp_path")]
    assert len(temp_paths) == 5
    assert all(d.args[0].startswith("/tmp/") for d in temp_paths)
    assert nginx_conf.load().value("pid").startswith("/tmp/")


def test_proxy_limits_each_client_address(http: nginx_conf.Directive) -> None:
    server = http.one("server")
    zones = {d.args[1].split("=")[1].split(":")[0]: d.args[0] for d in http.find("limit_conn_zone")}
    zones |= {d.args[1].split("=")[1].split(":")[0]: d.args[0] for d in http.find("limit_req_zone")}
    conn_zone, conn_limit = server.one("limit_conn").args
    assert zones[conn_zone] == "$binary_remote_addr" and int(conn_limit) > 0
    req_zone = server.one("limit_req").args[0].removeprefix("zone=")
    assert zones[req_zone] == "$binary_remote_addr"
    assert http.value("limit_conn_status") == http.value("limit_req_status") == "429"


def test_proxy_forwards_one_request_id(http: nginx_conf.Directive) -> None:
    mapping = http.one("map")
    assert mapping.args == ["$http_x_request_id", "$simscore_request_id"]
    (pattern,) = [d.name for d in mapping.children if d.name.startswith("~")]
    # The ids nginx passes on are exactly the ones the app accepts as they are.
    assert pattern.removeprefix("~") == _SAFE_ID.pattern.replace("\\-", "-")
    assert mapping.one("default").args == ["$request_id"]
    headers = {tuple(d.args) for d in http.find("proxy_set_header")}
    assert ("X-Request-ID", "$simscore_request_id") in headers
    server = http.one("server")
    assert server.value("proxy_hide_header") == "X-Request-ID"
    assert ["X-Request-ID", "$simscore_request_id", "always"] in [
        d.args for d in server.find("add_header")
    ]


def test_proxy_does_not_serve_metrics(http: nginx_conf.Directive) -> None:
    locations = {tuple(d.args): d for d in http.one("server").find("location")}
    assert locations[("=", "/metrics")].one("return").args[0] == "404"


def test_proxy_listens_where_compose_publishes(http: nginx_conf.Directive) -> None:
    listen = http.one("server").value("listen")
    published = compose()["services"]["proxy"]["ports"][0]
    assert published.endswith(f":{listen}")
    upstream = http.one("upstream")
    assert upstream.value("server") == "simscore:8000"


def test_render_local_changes_only_addresses_and_paths() -> None:
    text = nginx_conf.NGINX_CONF.read_text()
    workdir = Path("/srv/proxy-check")
    rendered = nginx_conf.render_local(
        text, upstream="127.0.0.1:1", listen="127.0.0.1:2", workdir=workdir
    )
    assert "/tmp/" not in rendered and "simscore:8000" not in rendered
    # Every timeout, size and limit directive is untouched.
    keep = re.compile(
        r"^\s*(client_\w+|proxy_\w+_timeout|keepalive\w*|limit_\w+|send_timeout).*$", re.M
    )
    assert keep.findall(text) == keep.findall(rendered)
    with pytest.raises(ValueError, match="not found"):
        nginx_conf.render_local("", upstream="x", listen="y", workdir=workdir)


def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    nginx = _nginx()
    config = tmp_path / "nginx.conf"
    config.write_text(
        nginx_conf.render_local(
            nginx_conf.NGINX_CONF.read_text(),
            upstream="127.0.0.1:8000",
            listen="127.0.0.1:8080",
            workdir=tmp_path,
        )
    )
    tmp_path.chmod(0o755)
    result = subprocess.run(
        [nginx, "-t", "-c", str(config), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_proxy_enforces_its_limits_against_a_real_server() -> None:
    nginx = _nginx()
    limits = proxy_probes.Limits.from_config(nginx_conf.load())
    with proxy_check.running_stack(nginx) as stack:
        results = proxy_check.run_checks(stack, limits)
    failed = [result for result in results if not result.ok]
    assert not failed, proxy_check.table(results)
    assert {result.name for result in results} >= {
        "half-header",
        "half-body",
        "oversize",
        "oversize-chunked",
        "request-id",
        "framing",
    }
