"""An operator's day on the installed package, each step asserted: the .deb built
from this tree, installed with apt, its units run unchanged (User=mpqueue,
PrivateUsers=, ProtectProc=invisible, ProtectSystem=strict and all) by a real
systemd 252, on Debian's own python3 and libraries. The only changes to the
units are the drop-ins the docs (docs/howto/systemd.md) tell operators to write (tests/debian/dropins.py).

Instances: `orders` on a Redis with a password (through LoadCredential=), with
metrics, a dashboard and a log file; `mail` on the embedded SQLite broker (for
mpqueue.target); `frozen` on SQLite with a short watchdog."""
import json
import os
import re
import secrets
import stat
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.debian import acceptance as acc
from tests.debian.dropins import CREDENTIALS
from tests.support import free_port, wait_for

pytestmark = pytest.mark.deb

ORDERS, MAIL, FROZEN = "mpqueue@orders.service", "mpqueue@mail.service", "mpqueue@frozen.service"
WEB = "mpqueue-web@orders.service"
# What an operator in group mpqueue sets to read the instance's credentials (docs/howto/systemd.md: Secrets).
OPERATOR_ENV = {"MPQUEUE_CREDENTIALS_DIR": CREDENTIALS}


class Day:
    def __init__(self, host, redis, metrics_port, web_port, token):
        self.host, self.redis = host, redis
        self.metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        self.web = f"http://127.0.0.1:{web_port}"
        self.token = token


@pytest.fixture(scope="module")
def day(packages):
    before = acc.installed_packages()
    host = redis = None
    try:
        acc.sh("apt-get", "install", "-y", "-q", str(packages["new"]))
        acc.install_task_code()
        acc.add_users()
        redis = acc.PasswordRedis()
        token = secrets.token_hex(24)
        acc.write_secret(Path(CREDENTIALS) / "redis-password", redis.PASSWORD)
        acc.write_secret(Path(CREDENTIALS) / "web-token", token)
        metrics_port, web_port = free_port(), free_port()
        common = {"path": [str(acc.CODE_DIR)], "imports": ["shoptasks"], "shutdown_timeout": 10, "lease_grace": 2}
        acc.write_config("orders", {
            "broker": f"redis://127.0.0.1:{redis.port}/0",
            "broker_password_file": "${CREDENTIALS_DIRECTORY}/redis-password", **common,
            "log": {"level": "info", "file": "/var/log/mpqueue/orders/orders.log"},
            "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
            "web": {"listen": f"127.0.0.1:{web_port}", "token_file": "${CREDENTIALS_DIRECTORY}/web-token"},
            "queues": {"default": {"workers": 3}}})
        acc.write_config("mail", {"broker": "sqlite:///var/lib/mpqueue/mail/queue.db", **common,
                                  "queues": {"default": {"workers": 2}}})
        # a short lease (timeout 5 s + lease_grace 2 s), so the job a killed supervisor held comes back soon
        acc.write_config("frozen", {"broker": "sqlite:///var/lib/mpqueue/frozen/queue.db", **common,
                                    "queues": {"default": {"workers": 2, "timeout": 5, "retry_delay": 0}}})
        host = acc.Host(acc.scratch())
        yield Day(host, redis, metrics_port, web_port, token)
    finally:
        if host is not None:
            host.stop()
        if redis is not None:
            redis.stop()
        acc.clean_machine(before)


def push(day, name, task, *args, user=None, env=None) -> str:
    return day.host.mpqctl(name, "push", "default", f"shoptasks:{task}", "--args", json.dumps(list(args)),
                           user=user, env=env)["id"]


def test_the_package_runs_on_debians_python_and_installing_starts_nothing(day):
    run = day.host.run
    assert Path("/usr/bin/mpqueue").read_text().startswith("#!/usr/bin/python3\n")
    where = run("/usr/bin/python3", "-c", "import mpqueue, redis, click, flask, prometheus_client, croniter; "
                "print(mpqueue.__file__, redis.__file__, click.__file__, flask.__file__)").stdout.split()
    assert all(p.startswith("/usr/lib/python3/dist-packages/") for p in where), where
    assert acc.user_exists() and Path("/usr/lib/sysusers.d/mpqueue.conf").exists()
    etc = os.stat("/etc/mpqueue")
    assert (stat.S_IMODE(etc.st_mode), etc.st_gid) == (0o750, acc.grp.getgrnam("mpqueue").gr_gid)
    # the man pages built from docs/ (the units' Documentation=man:mpqueue(1) names the first)
    for page in ("man1/mpqueue.1.gz", "man1/mpqctl.1.gz", "man5/mpqueue.yaml.5.gz"):
        assert Path("/usr/share/man", page).exists()
    # and every file the installed units name in Documentation= is there (the HTML site)
    for unit in Path("/lib/systemd/system").glob("mpqueue*"):
        docs = re.findall(r"file://(\S+)", "\n".join(line for line in unit.read_text().splitlines()
                                                  if line.startswith("Documentation=")))
        assert docs and all(Path(d).is_file() for d in docs), (unit, docs)
    # with the generated key reference, and Sphinx's JavaScript linked to Debian's (dh_sphinxdoc)
    assert "prefetch" in Path("/usr/share/doc/mpqueue/html/reference/man/mpqueue.yaml.html").read_text()
    assert Path("/usr/share/doc/mpqueue/html/_static/searchtools.js").is_symlink()
    assert run("/usr/bin/mpqueue", "check", "--config", "/etc/mpqueue/example.yaml").returncode == 0
    # installing enabled and started nothing
    assert [str(p) for p in Path("/etc/systemd/system").rglob("mpqueue*")] == []
    assert acc.mpqueue_processes() == []


def test_start_returns_after_ready_status_shows_workers_and_the_journal_has_one_json_line_per_event(day):
    host = day.host
    host.ctl("start", ORDERS)
    # Type=notify: `systemctl start` returned, so READY=1 came; the supervisor runs as mpqueue
    assert host.prop(ORDERS, "ActiveState") == "active"
    assert os.stat(f"/proc/{host.main_pid(ORDERS)}").st_uid == acc.pwd.getpwnam("mpqueue").pw_uid
    assert len(host.workers(ORDERS)) == 3
    wait_for(lambda: re.search(r"\b3/3 workers\b", host.prop(ORDERS, "StatusText")), 15, interval=0.2,
             what="STATUS= with the workers")
    assert "broker ok" in host.prop(ORDERS, "StatusText"), host.prop(ORDERS, "StatusText")
    # Every line the service wrote is one JSON object; systemd's own lines are not ours
    ours = [e for e in host.journal_entries(ORDERS) if e.get("SYSLOG_IDENTIFIER") != "systemd"]
    assert ours, host.journal(ORDERS)
    for entry in ours:
        event = json.loads(entry["MESSAGE"])
        assert event["service"] == "orders" and event["message"], event
    assert any(json.loads(e["MESSAGE"])["message"].startswith("started") for e in ours)
    # `mpqueue check` agrees (the log directory exists now that the unit made it)
    assert host.run("/usr/bin/mpqueue", "check", "orders").returncode == 0
    assert host.run("/usr/bin/mpqueue", "check", "orders", user=acc.OPERATOR, env=OPERATOR_ENV).returncode == 0
    # and the unit and the package agree on /etc/mpqueue's mode (one owner for it)
    assert "ConfigurationDirectory" not in host.journal(ORDERS)
    assert stat.S_IMODE(os.stat("/etc/mpqueue").st_mode) == 0o750


def test_the_readmes_quick_start_on_the_package_works_with_the_example_copied_unchanged(day):
    # docs/packaging.md, In short: cp example.yaml NAME.yaml, start, push, status. (`start`, not
    # `enable --now`: enabling would write links into this machine's own /etc/systemd.)
    host = day.host
    Path("/etc/mpqueue/shop.yaml").write_bytes(Path("/etc/mpqueue/example.yaml").read_bytes())
    try:
        host.ctl("start", "mpqueue@shop.service")
        job = host.mpqctl("shop", "push", "default", "mpqueue.examples.tasks:add", "--args", "[1, 2]")["id"]
        wait_for(lambda: host.mpqctl("shop", "job", job).get("result") == 3, 20, interval=0.2,
                 what="the quick start's job done")
        assert host.mpqctl("shop", "status")["queues"]["default"]["done_total"] == 1
        assert Path("/var/lib/mpqueue/shop/queue.db").exists()      # the embedded broker, in the state directory
    finally:
        host.ctl("stop", "mpqueue@shop.service", check=False)
        Path("/etc/mpqueue/shop.yaml").unlink()


def test_the_redis_password_reaches_the_service_as_a_credential_never_through_the_yaml(day):
    assert "pw" not in Path("/etc/mpqueue/orders.yaml").read_text()
    creds = day.host.run("ls", "/run/credentials/mpqueue@orders.service").stdout.split()
    assert creds == ["redis-password"]
    # the service reached the password-protected Redis with it: its records are there
    wait_for(lambda: day.redis.client.keys("mpq:*"), 10, what="the service's keys in Redis")


@pytest.mark.parametrize("who", ["root", "operator"])
def test_mpqctl_works_for_root_and_for_an_operator_in_group_mpqueue(day, who):
    # root finds the credential where systemd keeps it while the unit runs; an operator
    # in group mpqueue points MPQUEUE_CREDENTIALS_DIR at the same file (docs/howto/systemd.md: Secrets)
    user, env = (None, None) if who == "root" else (acc.OPERATOR, OPERATOR_ENV)
    host = day.host
    job = push(day, "orders", "add", 20, 22, user=user, env=env)
    wait_for(lambda: host.mpqctl("orders", "job", job, user=user, env=env)["state"] == "done", 20, interval=0.2,
             what=f"job pushed by {who} done")
    assert host.mpqctl("orders", "job", job, user=user, env=env)["result"] == 42
    status = host.mpqctl("orders", "status", user=user, env=env)
    assert "default" in status["queues"] and [n["service"] for n in status["nodes"]] == ["orders"]
    failing = push(day, "orders", "fail", f"failed on purpose by {who}", user=user, env=env)
    wait_for(lambda: any(f["id"] == failing for f in host.mpqctl("orders", "failed", "default", user=user, env=env)),
             20, interval=0.2, what="the failed job listed")
    assert host.mpqctl("orders", "ping", user=user, env=env)["broker"] == "ok"
    metrics = host.run("/usr/bin/mpqctl", "-s", "orders", "metrics", user=user, env=env)
    names = {f.name for f in text_string_to_metric_families(metrics.stdout)}
    assert {"mpqueue_jobs", "mpqueue_broker_up", "mpqueue_build_info"} <= names, names


def test_mpqctl_refuses_a_user_outside_group_mpqueue_in_one_line(day):
    for args in (("status",), ("push", "default", "shoptasks:add", "--args", "[1, 2]"), ("ping",)):
        result = day.host.run("/usr/bin/mpqctl", "-s", "orders", *args, user=acc.OUTSIDER, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, (args, result.returncode, result.stderr)
        assert lines[0].startswith("mpqctl: ") and "Permission denied" in lines[0], lines
        assert "Traceback" not in result.stderr


def test_reload_with_a_job_in_flight_replaces_every_worker_and_runs_the_job_once(day):
    host = day.host
    job = push(day, "orders", "run", "reload-in-flight", 4)
    wait_for(lambda: host.mpqctl("orders", "job", job)["state"] == "running", 20, interval=0.1,
             what="the job running")
    main, old = host.main_pid(ORDERS), host.workers(ORDERS)
    # When: systemctl reload (ExecReload= of the installed unit)
    result = host.ctl("reload", ORDERS, check=False)
    # Then it succeeded and returned only once the new workers serve
    assert result.returncode == 0, result.stderr + host.journal(ORDERS)[-2000:]
    assert len(host.workers(ORDERS) - old) == 3
    assert host.main_pid(ORDERS) == main and host.prop(ORDERS, "ActiveState") == "active"
    # and the job in flight finished on its old worker, once; then every old worker left
    acc.wait_done(host, "orders", [job])
    wait_for(lambda: not (host.workers(ORDERS) & old), 20, interval=0.2, what="every old worker gone")
    assert acc.runs("orders").count("reload-in-flight") == 1
    assert host.mpqctl("orders", "job", job)["attempts"] == 1


def test_a_reload_with_a_bad_config_fails_and_the_old_workers_keep_serving(day):
    host = day.host
    config = Path("/etc/mpqueue/orders.yaml")
    good = config.read_text()
    workers = host.workers(ORDERS)
    try:
        config.write_text(good.replace("workers: 3", "workers: -3"))
        result = host.ctl("reload", ORDERS, check=False)
        assert result.returncode != 0
        wait_for(lambda: "queues.default.workers" in host.journal(ORDERS), 10, what="the reason in the journal")
        assert host.prop(ORDERS, "ActiveState") == "active" and host.workers(ORDERS) == workers
        # (the operator's tools read the file too: they push with the good copy)
        copy = day.host.tmp / "orders-good.yaml"
        copy.write_text(good)
        def mpqctl(*args):
            return json.loads(host.run("/usr/bin/mpqctl", "--config", str(copy), "--json", *args).stdout)
        job = mpqctl("push", "default", "shoptasks:add", "--args", "[1, 2]")["id"]
        wait_for(lambda: mpqctl("job", job)["state"] == "done", 20, interval=0.2, what="a job done meanwhile")
    finally:
        config.write_text(good)
    assert host.ctl("reload", ORDERS, check=False).returncode == 0


def test_reloading_mpqueue_target_reloads_every_instance(day):
    host = day.host
    host.ctl("start", MAIL)
    before = {unit: host.workers(unit) for unit in (ORDERS, MAIL)}
    result = host.ctl("reload", "mpqueue.target", check=False)
    assert result.returncode == 0, result.stderr
    for unit, old in before.items():
        wait_for(lambda: host.prop(unit, "ActiveState") == "active" and host.workers(unit)
                 and not (host.workers(unit) & old), 30, interval=0.2, what=f"every worker of {unit} replaced")
    acc.wait_done(host, "mail", [push(day, "mail", "add", 2, 3)])


def test_restarting_mpqueue_target_restarts_every_instance(day):
    host = day.host
    before = {unit: host.prop(unit, "MainPID") for unit in (ORDERS, MAIL)}
    host.ctl("restart", "mpqueue.target")
    wait_for(lambda: all(host.prop(u, "ActiveState") == "active" and host.prop(u, "MainPID") != before[u]
                         for u in before), 30, interval=0.2, what="both instances restarted")


def test_journal_priorities_let_p_err_show_only_errors(day):
    host = day.host

    def errors():       # this run of the unit only
        return host.run("journalctl", "--no-pager", "-o", "cat", "-p", "err",
                        f"_SYSTEMD_INVOCATION_ID={host.prop(ORDERS, 'InvocationID')}", check=False).stdout
    push(day, "orders", "fail", "kaboom in the journal")
    wait_for(lambda: "kaboom in the journal" in errors(), 30, interval=0.2, what="the failure in journalctl -p err")
    assert "started" not in errors()                     # info lines stay out


def test_an_invalid_config_fails_the_start_with_exit_78_and_no_restart_loop(day):
    host = day.host
    acc.write_config("broken", {"broker": "sqlite:///var/lib/mpqueue/broken/queue.db", "imports": ["json"],
                                "queues": {"default": {"workers": 1}}, "bogus": 1})
    unit = "mpqueue@broken.service"
    try:
        assert host.ctl("start", unit, check=False).returncode != 0
        assert host.prop(unit, "ActiveState") == "failed" and host.prop(unit, "ExecMainStatus") == "78"
        assert "bogus" in host.prop(unit, "StatusText"), host.prop(unit, "StatusText")
        assert host.prop(unit, "NRestarts") == "0"        # RestartPreventExitStatus=78
    finally:
        host.ctl("reset-failed", unit, check=False)
        Path("/etc/mpqueue/broken.yaml").unlink()


def scrape(day) -> dict:
    with urllib.request.urlopen(day.metrics, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_prometheus_scrapes_the_metrics_endpoint_the_yaml_names(day):
    acc.wait_done(day.host, "orders", [push(day, "orders", "add", i, i) for i in range(4)])

    def done():
        return sum(v for (name, labels), v in scrape(day).items()
                   if name == "mpqueue_jobs_total" and ("outcome", "done") in labels)
    wait_for(lambda: done() >= 4, 15, interval=0.5, what="4 done jobs counted")
    samples = scrape(day)
    assert samples[("mpqueue_broker_up", ())] == 1
    assert any(name == "mpqueue_build_info" for name, _ in samples)


def _web(day, path, method="GET", headers=None, data=None, opener=None):
    request = urllib.request.Request(day.web + path, method=method, headers=headers or {},
                                     data=urllib.parse.urlencode(data).encode() if data is not None else None)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    opener = opener or urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


def test_the_dashboard_unit_serves_with_its_token_credential_and_refuses_a_post_without_csrf(day):
    host = day.host
    started = host.ctl("start", WEB, check=False)
    assert started.returncode == 0 and host.prop(WEB, "ActiveState") == "active", host.journal(WEB)
    assert os.stat(f"/proc/{host.main_pid(WEB)}").st_uid == acc.pwd.getpwnam("mpqueue").pw_uid
    bearer = {"Authorization": f"Bearer {day.token}"}
    # Without the token: sent to the login form; with it, the page and the state
    assert _web(day, "/")[0] == 303
    assert _web(day, "/api/state")[0] == 401
    status, page, _ = _web(day, "/", headers=bearer)
    assert status == 200 and "orders" in page and "/static/dashboard.js" in page
    state = json.loads(_web(day, "/api/state", headers=bearer)[1])
    nodes = state["nodes"]["nodes"]
    assert state["queues"] and [n["service"] for n in nodes] == ["orders"]
    # a live node, though the dashboard's sandbox (ProtectProc=invisible) can't see its supervisor
    assert nodes[0].get("alive") is not False, nodes
    assert [n["alive"] for n in host.mpqctl("orders", "status")["nodes"]] == [True]
    # A browser logs in with the token, then a POST without the session's CSRF token is refused
    import http.cookiejar
    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    status, form, _ = _web(day, "/login", opener=browser)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    origin = {"Origin": day.web}
    status, _, _ = _web(day, "/login", "POST", origin, {"token": day.token, "csrf": csrf}, opener=browser)
    assert status == 303
    assert _web(day, "/api/state", opener=browser)[0] == 200
    body = {"queue": "default", "all": True}
    json_post = {**origin, "Content-Type": "application/json"}
    request = urllib.request.Request(day.web + "/api/retry", method="POST", headers=json_post,
                                      data=json.dumps(body).encode())
    try:
        browser.open(request, timeout=10)
        refused = None
    except urllib.error.HTTPError as exc:
        refused = exc.code
    assert refused == 403
    assert "Traceback" not in host.journal(WEB)


def test_the_log_file_goes_to_the_logs_directory_the_readme_tells_operators_to_add(day):
    log = Path("/var/log/mpqueue/orders/orders.log")
    st = log.stat()
    assert acc.pwd.getpwuid(st.st_uid).pw_name == "mpqueue" and stat.S_IMODE(st.st_mode) & 0o007 == 0
    lines = log.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert all(e["service"] == "orders" for e in events)
    assert any(e["message"].startswith("started") for e in events)
    assert any("reload" in e["message"] for e in events)


def test_stop_with_jobs_in_flight_loses_nothing_and_ends_with_result_success(day):
    host = day.host
    ids = [push(day, "orders", "run", f"stop-{i}", 2) for i in range(6)]
    wait_for(lambda: sum(host.mpqctl("orders", "job", j)["state"] == "running" for j in ids) >= 2, 20,
             interval=0.1, what="jobs running")
    host.ctl("stop", ORDERS)
    assert host.prop(ORDERS, "ActiveState") == "inactive" and host.prop(ORDERS, "Result") == "success"
    host.ctl("start", ORDERS)
    acc.wait_done(host, "orders", ids)
    ran = acc.runs("orders")
    assert [ran.count(f"stop-{i}") for i in range(6)] == [1] * 6, ran


def test_a_frozen_supervisor_is_restarted_by_the_watchdog_and_no_job_is_lost(day):
    host = day.host
    host.ctl("start", FROZEN)
    held = push(day, "frozen", "held_until_killed", "held")
    wait_for(lambda: host.mpqctl("frozen", "job", held)["state"] == "running", 20, interval=0.1,
             what=f"the job running ({host.mpqctl('frozen', 'job', held)})")
    main, old = host.prop(FROZEN, "MainPID"), host.workers(FROZEN)
    host.ctl("kill", "--kill-who=main", "--signal=SIGSTOP", FROZEN)
    pushed_while_frozen = [push(day, "frozen", "run", f"while-frozen-{i}") for i in range(3)]
    wait_for(lambda: host.prop(FROZEN, "NRestarts") == "1" and host.prop(FROZEN, "ActiveState") == "active",
             60, interval=0.2, what="the watchdog's restart")
    assert host.prop(FROZEN, "MainPID") != main and "Watchdog timeout" in host.journal(FROZEN)
    assert not any(Path(f"/proc/{pid}").exists() for pid in old)       # its workers died with it
    # the held job comes back when its lease ends, and runs to the end on its second attempt
    acc.wait_done(host, "frozen", [held, *pushed_while_frozen])
    assert host.mpqctl("frozen", "job", held)["attempts"] == 2
    ran = acc.runs("frozen")
    assert sorted(ran) == sorted(["held"] + [f"while-frozen-{i}" for i in range(3)]), ran
