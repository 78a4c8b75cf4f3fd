"""The Redis password: from a systemd credential, never from a world-readable YAML."""
import pytest

from mpqueue.core import redis_url
from mpqueue.core.config import ConfigError, load_config


def write(tmp_path, broker, extra="", mode=0o640):
    path = tmp_path / "orders.yaml"
    path.write_text(f"broker: {broker}\nimports: [shop.tasks]\nqueues: {{emails: {{}}}}\n{extra}")
    path.chmod(mode)
    return path


def test_a_password_in_a_world_readable_yaml_is_refused(tmp_path):
    path = write(tmp_path, "redis://:s3cret@127.0.0.1:6379/0", mode=0o644)
    with pytest.raises(ConfigError, match=r"orders.yaml: broker: the URL holds a password but the file is "
                                          r"readable by other users \(mode 0644\)"):
        load_config(path)


def test_a_password_in_a_private_yaml_is_accepted(tmp_path):
    assert load_config(write(tmp_path, "redis://:s3cret@127.0.0.1:6379/0", mode=0o600)).broker \
        == "redis://:s3cret@127.0.0.1:6379/0"


def test_password_comes_from_a_systemd_credential(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "redis-password").write_text("p@ss/word\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = write(tmp_path, "redis://app@127.0.0.1:6379/2",
                 "broker_password_file: ${CREDENTIALS_DIRECTORY}/redis-password\n", mode=0o644)
    assert load_config(path).broker == "redis://app:p%40ss%2Fword@127.0.0.1:6379/2"


def test_a_credential_joins_a_sentinel_url_listing_an_ipv6_sentinel(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("p[w]@x\n")
    path = write(tmp_path, "redis+sentinel://h1:26379,[::1]:26380,h3:26379/mymaster/1",
                 "broker_password_file: pw\n", mode=0o644)
    broker = load_config(path).broker
    assert broker == "redis+sentinel://:p%5Bw%5D%40x@h1:26379,[::1]:26380,h3:26379/mymaster/1"
    assert redis_url.parse(broker).password == "p[w]@x"


def test_an_unset_credentials_directory_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = write(tmp_path, "redis://127.0.0.1:6379/0", "broker_password_file: ${CREDENTIALS_DIRECTORY}/pw\n")
    with pytest.raises(ConfigError, match="names an unset variable"):
        load_config(path)


def test_a_password_given_twice_is_refused(tmp_path):
    (tmp_path / "pw").write_text("x")
    path = write(tmp_path, "redis://:a@127.0.0.1:6379/0", "broker_password_file: pw\n", mode=0o600)
    with pytest.raises(ConfigError, match="has a password already"):
        load_config(path)
