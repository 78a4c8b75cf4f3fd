"""mpqueue.config: YAML -> frozen, validated dataclasses, with one-line errors."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from mpqueue.core import config, schema
from mpqueue.core.config import ConfigError, LogConfig, QueueConfig, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "example.yaml"
MINIMAL = {"broker": "redis://127.0.0.1:6379/0", "imports": ["app.tasks"], "queues": {"default": {}}}


def parse(**changes):
    """MINIMAL with `changes` applied; a value of ... removes the key."""
    data = {k: v for k, v in {**MINIMAL, **changes}.items() if v is not ...}
    return parse_config(data, "orders.yaml", "orders")


def error_of(**changes) -> str:
    with pytest.raises(ConfigError) as info:
        parse(**changes)
    return str(info.value)


def write(tmp_path, text: str, name: str = "orders.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- what a valid file gives ---------------------------------------------------

def test_the_example_file_loads_with_its_two_queues():
    cfg = load_config(EXAMPLE)
    assert (cfg.name, cfg.broker, cfg.imports) == (
        "example", "sqlite:///var/lib/mpqueue/example/queue.db", ("mpqueue.examples.tasks",))
    assert list(cfg.queues) == ["default", "reports"]
    assert (cfg.queues["default"].workers, cfg.queues["default"].mode) == (2, "grab")
    assert (cfg.queues["reports"].workers, cfg.queues["reports"].mode) == (1, "dispatch")
    assert cfg.source == str(EXAMPLE)


def test_a_copy_of_the_example_is_a_service_of_its_own_file_name(tmp_path):
    copy = write(tmp_path, EXAMPLE.read_text())
    cfg = load_config(copy)
    assert (cfg.name, cfg.broker) == ("orders", "sqlite:///var/lib/mpqueue/orders/queue.db")


@pytest.mark.parametrize("url, expected", [
    ("sqlite:queue.db", "sqlite://{dir}/queue.db"),
    ("sqlite:data/{name}.db?synchronous=full", "sqlite://{dir}/data/orders.db?synchronous=full"),
    ("sqlite:///srv/q/{name}/queue.db", "sqlite:///srv/q/orders/queue.db"),
    ("sync://", "sync://"),
])
def test_sqlite_paths_are_anchored_at_the_file_and_name_the_service(tmp_path, url, expected):
    path = write(tmp_path, f"broker: '{url}'\nimports: [app.tasks]\nqueues: {{default: {{}}}}\n")
    assert load_config(path).broker == expected.format(dir=tmp_path)


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///q.db?synchronous=off", "an sqlite: URL whose only option is ?synchronous=normal or ?synchronous=full"),
    ("sync://somewhere", "sync:// with nothing after it"),
    ("postgres://h/db", "a URL with scheme redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster, rediss+cluster, sqlite or sync"),
])
def test_a_bad_broker_url_is_one_line_naming_the_key(url, expected):
    assert error_of(broker=url) == f"orders.yaml: broker: expected {expected}, got {url!r}"


def test_the_example_file_documents_every_key_at_its_default():
    # Given the example, whose values are the built-in defaults except where a queue sets its own
    cfg = load_config(EXAMPLE)
    # Then every setting equals the dataclass default
    assert cfg.log == LogConfig()
    for field in ("path", "on_worker_start", "shutdown_timeout", "max_payload", "lease_grace"):
        assert getattr(cfg, field) == getattr(parse(), field), field
    own = {"workers", "mode", "on_failure"}
    for queue in cfg.queues.values():
        defaults = QueueConfig(name=queue.name)
        for field in dataclasses.fields(QueueConfig):
            if field.name not in own:
                assert getattr(queue, field.name) == getattr(defaults, field.name), field.name


def test_the_example_file_mentions_every_top_level_log_and_queue_key():
    text = EXAMPLE.read_text()
    for key in [*config.TOP_KEYS, *config.LOG_FIELDS, *config.QUEUE_FIELDS]:
        assert f"{key}:" in text, key


def test_a_minimal_mapping_gets_every_default():
    cfg = parse()
    assert cfg.name == "orders"
    assert cfg.queues == {"default": QueueConfig(name="default")}
    assert (cfg.path, cfg.log, cfg.source) == ((), LogConfig(), None)
    assert (cfg.shutdown_timeout, cfg.max_payload, cfg.lease_grace) == (30.0, 1048576, 30.0)


def test_the_parsed_configuration_is_frozen():
    cfg = parse()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.broker = "redis://elsewhere"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.queues["default"].workers = 9


def test_queue_settings_override_defaults_which_override_built_in_values():
    cfg = parse(defaults={"workers": 5, "timeout": 10}, queues={"a": {"workers": 1}, "b": None})
    assert (cfg.queues["a"].workers, cfg.queues["a"].timeout) == (1, 10.0)
    assert (cfg.queues["b"].workers, cfg.queues["b"].timeout, cfg.queues["b"].retries) == (5, 10.0, 3)


def test_queues_keep_the_order_of_the_file(tmp_path):
    path = write(tmp_path, "broker: redis://h\nimports: m\nqueues:\n  zeta:\n  alpha: {}\n  mid:\n")
    assert list(load_config(path).queues) == ["zeta", "alpha", "mid"]


def test_a_queue_may_switch_off_a_hook_set_in_defaults():
    cfg = parse(defaults={"on_failure": "app.hooks:alert"}, queues={"a": {}, "b": {"on_failure": None}})
    assert (cfg.queues["a"].on_failure, cfg.queues["b"].on_failure) == ("app.hooks:alert", None)


def test_path_and_imports_accept_a_single_string():
    cfg = parse(path="/srv/app", imports="app.tasks")
    assert (cfg.path, cfg.imports) == (("/srv/app",), ("app.tasks",))


def test_relative_paths_in_a_file_are_relative_to_the_file(tmp_path):
    path = write(tmp_path, "broker: redis://h\nimports: m\npath: [code, /abs]\nlog: {file: logs/x.log}\nqueues: {q: }\n")
    cfg = load_config(path)
    assert cfg.path == (str(tmp_path / "code"), "/abs")
    assert cfg.log.file == str(tmp_path / "logs" / "x.log")


def test_an_int_is_accepted_where_a_float_is_expected():
    q = parse(queues={"q": {"timeout": 5, "retry_delay": 0}}).queues["q"]
    assert (q.timeout, q.retry_delay) == (5.0, 0.0)
    assert isinstance(q.timeout, float)


def test_retry_delay_is_kept_to_the_millisecond():
    q = parse(queues={"q": {"retry_delay": 0.0014}}).queues["q"]
    assert q.retry_delay == 0.001


def test_enumerated_values_are_case_insensitive_and_stored_lower():
    cfg = parse(log={"level": "WARNING", "format": "Text"}, queues={"q": {"mode": "Dispatch"}})
    assert (cfg.log.level, cfg.log.format, cfg.queues["q"].mode) == ("warning", "text", "dispatch")


def test_a_scheme_added_to_broker_schemes_is_accepted(monkeypatch):
    monkeypatch.setattr(schema, "BROKER_SCHEMES", (*schema.BROKER_SCHEMES, "sqlite"))
    assert parse(broker="sqlite:///var/lib/q.db").broker == "sqlite:///var/lib/q.db"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@h:6380/1", "unix:///run/redis.sock?db=2"])
def test_redis_rediss_and_unix_urls_are_accepted(url):
    assert parse(broker=url).broker == url


# -- what each mistake says ----------------------------------------------------

def test_the_spec_example_message_is_exact():
    assert error_of(queues={"emails": {"workers": "four"}}) == \
        "orders.yaml: queues.emails.workers: expected an integer >= 1, got 'four'"


def test_a_broker_with_another_scheme_names_the_accepted_ones():
    assert error_of(broker="http://x") == \
        "orders.yaml: broker: expected a URL with scheme redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster, rediss+cluster, sqlite or sync, got 'http://x'"


@pytest.mark.parametrize("changes, message", [
    ({"queues": {"q": {"workers": True}}}, "queues.q.workers: expected an integer >= 1, got True"),
    ({"queues": {"q": {"workers": 2.0}}}, "queues.q.workers: expected an integer >= 1, got 2.0"),
    ({"queues": {"q": {"workers": 0}}}, "queues.q.workers: expected an integer >= 1, got 0"),
    ({"queues": {"q": {"concurrency": 0}}}, "queues.q.concurrency: expected an integer from 1 to 1000, got 0"),
    ({"queues": {"q": {"concurrency": 1001}}}, "queues.q.concurrency: expected an integer from 1 to 1000, got 1001"),
    ({"queues": {"q": {"concurrency": "32"}}}, "queues.q.concurrency: expected an integer from 1 to 1000, got '32'"),
    ({"defaults": {"concurrency": 1.5}}, "defaults.concurrency: expected an integer from 1 to 1000, got 1.5"),
    ({"queues": {"q": {"retries": -1}}}, "queues.q.retries: expected an integer >= 0, got -1"),
    ({"queues": {"q": {"mode": "push"}}}, "queues.q.mode: expected one of grab, dispatch, got 'push'"),
    ({"queues": {"q": {"timeout": 0}}}, "queues.q.timeout: expected a number of seconds > 0, got 0"),
    ({"queues": {"q": {"timeout": 0.0004}}}, "queues.q.timeout: expected a number of seconds > 0, got 0.0004"),
    ({"queues": {"q": {"timeout": float("inf")}}}, "queues.q.timeout: expected a number of seconds > 0, got inf"),
    ({"queues": {"q": {"timeout": "120s"}}}, "queues.q.timeout: expected a number of seconds > 0, got '120s'"),
    ({"queues": {"q": {"retry_delay": float("nan")}}}, "queues.q.retry_delay: expected a number of seconds >= 0"),
    ({"queues": {"q": {"backoff": "linear"}}}, "queues.q.backoff: expected one of fixed, exponential, got 'linear'"),
    ({"queues": {"q": {"retry_on_timeout": "yes"}}}, "queues.q.retry_on_timeout: expected true or false, got 'yes'"),
    ({"queues": {"q": {"memory_limit": 0.5}}}, "queues.q.memory_limit: expected an integer >= 0, got 0.5"),
    ({"queues": {"q": {"on_failure": "app.hooks.alert"}}},
     "queues.q.on_failure: expected a 'module:function' name or null, got 'app.hooks.alert'"),
    ({"queues": {"q": {"retry_delay": 10, "max_retry_delay": 5}}},
     "queues.q.max_retry_delay: expected a number of seconds >= retry_delay (10), got 5.0"),
    ({"defaults": {"retry_delay": 10}, "queues": {"q": {"max_retry_delay": 5}}},
     "queues.q.max_retry_delay: expected a number of seconds >= retry_delay (10), got 5.0"),
    ({"defaults": {"workers": "many"}}, "defaults.workers: expected an integer >= 1, got 'many'"),
    ({"defaults": ["workers"]}, "defaults: expected a mapping, got ['workers']"),
    ({"queues": {"q": 3}}, "queues.q: expected a mapping, got 3"),
    ({"queues": {}}, "queues: expected a mapping of one or more queue names to their settings, got {}"),
    ({"queues": ["a", "b"]}, "queues: expected a mapping of one or more queue names to their settings, got ['a'"),
    ({"queues": {"a b": {}}}, "queues.a b: expected a queue name of letters, digits"),
    ({"queues": {"q" * 101: {}}}, "at most 100, got 'qqqq"),
    ({"queues": {2024: {}}}, "queues.2024: expected a queue name of letters, digits, '_', '.' and '-'"),
    ({"name": "my orders"}, "name: expected a name of letters, digits, '_', '.' and '-', got 'my orders'"),
    ({"imports": []}, "imports: expected one or more module names, got []"),
    ({"imports": ["app.tasks", "app/tasks.py"]}, "imports[1]: expected a dotted module name, got 'app/tasks.py'"),
    ({"path": ["/srv", 3]}, "path[1]: expected a directory, got 3"),
    ({"path": {"a": 1}}, "path: expected a list of directories, got {'a': 1}"),
    ({"on_worker_start": "setup"}, "on_worker_start: expected a 'module:function' name or null, got 'setup'"),
    ({"shutdown_timeout": -1}, "shutdown_timeout: expected a number of seconds > 0, got -1"),
    ({"lease_grace": 0}, "lease_grace: expected a number of seconds > 0, got 0"),
    ({"max_payload": 100}, "max_payload: expected an integer >= 1024, got 100"),
    ({"log": {"level": "verbose"}}, "log.level: expected one of debug, info, warning, error, got 'verbose'"),
    ({"log": {"format": "xml"}}, "log.format: expected one of json, text, got 'xml'"),
    ({"log": {"backups": 0}}, "log.backups: expected an integer >= 1, got 0"),
    ({"log": {"max_bytes": 100}}, "log.max_bytes: expected an integer >= 1024, got 100"),
    ({"log": {"file": ""}}, "log.file: expected a non-empty string or null, got ''"),
    ({"log": "debug"}, "log: expected a mapping, got 'debug'"),
    ({"broker": 6379}, "broker: expected a URL with scheme redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster, rediss+cluster, sqlite or sync, got 6379"),
    ({"broker": "redis://h:port/0"}, "broker: expected a redis:// URL with a valid port"),
    ({"broker": "redis:"}, "broker: expected a redis:// URL with a host, e.g. redis://127.0.0.1:6379/0, got 'redis:'"),
])
def test_a_bad_value_is_named_with_its_key_path(changes, message):
    text = error_of(**changes)
    assert text.startswith("orders.yaml: ") and message in text
    assert "\n" not in text


def test_a_misspelt_key_gets_a_suggestion():
    assert error_of(queues={"emails": {"wrokers": 2}}) == \
        "orders.yaml: queues.emails.wrokers: unknown key; did you mean 'workers'?"


def test_an_unknown_key_without_a_close_match_lists_the_allowed_ones():
    text = error_of(log={"colour": True})
    assert text == "orders.yaml: log.colour: unknown key; allowed keys: level, format, file, max_bytes, backups"


def test_a_queue_cannot_be_renamed_through_defaults():
    assert error_of(defaults={"name": "x"}).startswith("orders.yaml: defaults.name: unknown key;")


@pytest.mark.parametrize("key", ["broker", "imports", "queues"])
def test_a_missing_required_key_says_what_it_should_hold(key):
    text = error_of(**{key: ...})
    assert text.startswith(f"orders.yaml: {key}: required key is missing; expected ")


def test_a_top_level_that_is_not_a_mapping_is_refused():
    with pytest.raises(ConfigError, match=r"^orders\.yaml: expected a mapping of settings at the top level, got \[1"):
        parse_config([1, 2], "orders.yaml", "orders")


def test_a_password_in_the_broker_url_never_reaches_the_message():
    text = error_of(broker="http://user:s3cret@h/0")
    assert "s3cret" not in text and "user:***@h" in text


def test_an_invalid_file_name_as_default_name_says_how_to_fix_it(tmp_path):
    path = write(tmp_path, "broker: redis://h\nimports: m\nqueues: {q: }\n", name="my orders.yaml")
    with pytest.raises(ConfigError, match=r"^my orders\.yaml: name: .*set name:.*got 'my orders'$"):
        load_config(path)


# -- files -----------------------------------------------------------------------

def test_invalid_yaml_gives_line_and_column(tmp_path):
    path = write(tmp_path, "broker: redis://h\nqueues:\n  a: {workers: 2\n  b: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith("orders.yaml: invalid YAML: line 4, column ") and "\n" not in text


def test_a_duplicate_key_is_refused_rather_than_silently_replaced(tmp_path):
    path = write(tmp_path, "broker: redis://h\nimports: m\nqueues:\n  a: {}\n  a: {workers: 1}\n")
    with pytest.raises(ConfigError, match=r"^orders\.yaml: invalid YAML: line 5, column 3: duplicate key 'a'$"):
        load_config(path)


def test_yaml_merge_keys_may_override_what_they_merge(tmp_path):
    text = "broker: redis://h\nimports: m\nqueues:\n  a: &base {workers: 2, timeout: 9}\n  b: {<<: *base, workers: 1}\n"
    cfg = load_config(write(tmp_path, text))
    assert (cfg.queues["b"].workers, cfg.queues["b"].timeout) == (1, 9.0)


def test_an_empty_file_says_what_it_should_contain(tmp_path):
    with pytest.raises(ConfigError, match=r"^orders\.yaml: the file is empty; expected a mapping"):
        load_config(write(tmp_path, "# nothing yet\n"))


def test_a_missing_file_names_only_its_base_name(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "orders.yaml")
    assert str(info.value) == "orders.yaml: cannot read the file: No such file or directory"


def test_a_directory_is_not_a_readable_file(tmp_path):
    (tmp_path / "orders.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"^orders\.yaml: cannot read the file: Is a directory$"):
        load_config(tmp_path / "orders.yaml")


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "orders.yaml"
    path.write_bytes(b"broker: \xff\n")
    with pytest.raises(ConfigError, match=r"^orders\.yaml: cannot read the file: not UTF-8 text \(at byte 8\)$"):
        load_config(path)


def test_source_is_the_absolute_path_of_the_file(tmp_path, monkeypatch):
    write(tmp_path, "broker: redis://h\nimports: m\nqueues: {q: }\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("orders.yaml").source == str(tmp_path / "orders.yaml")


# -- config_path_for -----------------------------------------------------------

def test_config_path_for_uses_the_directory_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MPQUEUE_CONFIG_DIR", str(tmp_path))
    assert config.config_path_for("orders") == tmp_path / "orders.yaml"


def test_config_path_for_defaults_to_etc_mpqueue(monkeypatch):
    monkeypatch.delenv("MPQUEUE_CONFIG_DIR", raising=False)
    assert config.config_path_for("orders.v2") == Path("/etc/mpqueue/orders.v2.yaml")


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", "orders yaml", None])
def test_config_path_for_refuses_names_that_could_escape_the_directory(name):
    with pytest.raises(ConfigError, match=r"^service name: expected a name of letters"):
        config.config_path_for(name)


def test_a_yaml_alias_bomb_in_a_value_is_a_one_line_error_not_a_stall(tmp_path):
    # Given ten levels of nine aliases each (9**10 items if expanded) where a number belongs
    levels = ["  - &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("broker: redis://h/0\nimports: [x]\nqueues: {q: {}}\nshutdown_timeout:\n" + "\n".join(levels) + "\n")
    # When it is validated (in a child, so that a regression fails instead of eating the machine)
    code = ("import sys; from mpqueue.core.config import load_config, ConfigError\n"
            "try:\n    load_config(sys.argv[1])\nexcept ConfigError as e:\n    print(e)")
    done = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=60)
    # Then the error is one short line naming the key
    line = done.stdout.strip()
    assert line.startswith("bomb.yaml: shutdown_timeout: expected a number of seconds > 0, got [[1, 1, 1,")
    assert len(line) < 200 and "\n" not in line


@pytest.mark.parametrize("url, expected", [
    ("redis://h/abc", "a redis:// URL whose path is a database number, e.g. redis://host:6379/0"),
    ("redis://h:6379/0?foo=bar", "a redis:// URL whose query options are among db, password, username, "
                                 "client_name, wait_replicas, wait_timeout (not foo)"),
    ("unix:///run/redis.sock?db=x", "a Redis URL whose db option is a database number"),
    ("unix:///run/redis.sock?socket_keepalive=1", "a unix:// URL whose query options are among db, password, "
                                                  "username, client_name, wait_replicas, wait_timeout (not socket_keepalive)"),
    ("redis:///0", "a redis:// URL with a host, e.g. redis://127.0.0.1:6379/0"),
    ("redis+sentinel://h:26379", "a redis+sentinel:// URL naming the master after the sentinels, "
                                 "e.g. redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0"),
    ("redis+sentinel://h:26379/m/x", "a redis+sentinel:// URL naming the master after the sentinels, "
                                     "e.g. redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0"),
    ("redis+sentinel://h1:1,h2/m", "a redis+sentinel:// URL listing HOST:PORT of each seed node, "
                                   "e.g. redis+sentinel://10.0.0.1:26379,10.0.0.2:26379"),
    ("redis+cluster://h:99999", "a redis+cluster:// URL listing HOST:PORT of each seed node, "
                                "e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000"),
    ("redis+cluster://h:7000/0", "a redis+cluster:// URL with no path (a Cluster has one database and no "
                                 "master name), e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000"),
    ("redis+cluster://h:7000?db=1", "a redis+cluster:// URL whose query options are among client_name, "
                                    "wait_replicas, wait_timeout (not db)"),
    ("redis://h/0?wait_replicas=-1", "wait_replicas: a number of replicas from 0 to 100"),
    ("redis://h/0?wait_replicas=1&wait_timeout=nan", "wait_timeout: a number of seconds above 0, at most 60"),
    ("redis://h/0?wait_timeout=inf", "wait_timeout: a number of seconds above 0, at most 60"),
])
def test_a_redis_url_that_could_not_be_served_is_refused_by_check(url, expected):
    assert error_of(broker=url) == f"orders.yaml: broker: expected {expected}, got {url!r}"


@pytest.mark.parametrize("url", ["redis://h:6379/3?password=p&client_name=orders", "unix:///run/redis.sock?db=2",
                                 "rediss://h/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ssl/ca.pem",
                                 "redis+sentinel://h1:26379,[::1]:26380/mymaster/2?sentinel_password=x",
                                 "rediss+sentinel://h1:26379/m?ssl_ca_certs=/etc/ssl/ca.pem&wait_replicas=1",
                                 "redis+cluster://:pw@h1:7000,h2:7001?wait_replicas=1&wait_timeout=0.25"])
def test_the_redis_url_options_every_redis_py_serves_are_accepted(url):
    assert parse(broker=url).broker == url


def test_every_yaml_key_is_named_once_with_its_type_default_check_limits_and_doc():
    # Given the tables of core/schema.py, the one place a YAML key is named
    tables = [(schema.QUEUE_KEYS, schema.QueueConfig, ["name"]), (schema.LOG_KEYS, schema.LogConfig, []),
              (schema.METRICS_KEYS, schema.MetricsConfig, []), (schema.WEB_KEYS, schema.WebConfig, []),
              (schema.SERVICE_KEYS, schema.ServiceConfig, [])]
    for keys, record, extra in tables:
        # Then each config record's fields are its table's keys, in order (a service's source is no key)
        assert [f.name for f in dataclasses.fields(record) if f.name != "source"] == \
            extra + [name for name, key in keys.items() if key.field]
        for name, key in keys.items():
            assert key.doc and key.reload in (schema.RELOAD, schema.RESTART), name
            # and a checked value states its limits, for the reference the docs build
            assert key.section or key.check is None or key.check.expected, name
    assert config.TOP_KEYS == tuple(schema.SERVICE_KEYS)
