"""The notifier refuses, at start, a channels file it could not deliver with."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityops.notify import NotifyError, Telegram, Webhook, build_channels, read_secret
from processors.notifications import SecretRef, parse_config

pytestmark = pytest.mark.unit

ROUTES = [{"agency": "BPBD", "kecamatan": "*", "telegram": ["-1001"],
           "webhook": ["https://city.example/hook"]}]


def test_a_route_to_a_channel_without_its_provider_is_refused() -> None:
    config = parse_config({"routes": ROUTES, "providers": {
        "telegram": {"bot_token": {"env": "TG"}}}})
    with pytest.raises(NotifyError, match=r"a route sends to webhook but providers\.webhook is "
                                          r"not configured"):
        build_channels(config, env={"TG": "123:abc"})


def test_secrets_come_from_the_environment_or_a_file_and_must_not_be_empty(
        tmp_path: Path) -> None:
    (tmp_path / "key").write_text("  s3cret \n")
    config = parse_config({"routes": ROUTES, "providers": {
        "telegram": {"bot_token": {"env": "TG"}},
        "webhook": {"hmac_key": {"file": str(tmp_path / "key")}}}})
    channels = build_channels(config, env={"TG": "123:abc"})
    assert isinstance(channels["telegram"], Telegram)
    assert isinstance(channels["webhook"], Webhook)
    assert read_secret(SecretRef(file=str(tmp_path / "key"))) == "s3cret"
    with pytest.raises(NotifyError, match="secret environment variable TG is empty or not set"):
        build_channels(config, env={})
    with pytest.raises(NotifyError, match="secret file /nonexistent/key: No such file"):
        read_secret(SecretRef(file="/nonexistent/key"))
