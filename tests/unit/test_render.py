from pathlib import Path

from paas.router.render import render_app, render_main


def test_app_block_has_hostnames_and_upstreams() -> None:
    text = render_app("myapp", Path("/p"), 8080, ["myapp.example.com"], ["10.0.0.2:5000", "10.0.0.3:5000"])
    assert "server_name myapp.example.com;" in text
    assert "server 10.0.0.2:5000;" in text and "server 10.0.0.3:5000;" in text
    assert "proxy_pass http://paas-app-myapp;" in text
    assert "listen 8080;" in text


def test_app_without_upstreams_answers_503() -> None:
    text = render_app("myapp", Path("/p"), 80, ["myapp.localhost"], [])
    assert "upstream" not in text and "return 503" in text


def test_main_config_includes_apps_under_prefix() -> None:
    text = render_main(Path("/srv/paas/nginx"), 8081)
    assert "include /srv/paas/nginx/apps/*.conf;" in text
    assert "listen 8081 default_server;" in text
    assert "pid /srv/paas/nginx/nginx.pid;" in text
