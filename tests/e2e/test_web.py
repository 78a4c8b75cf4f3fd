"""The web dashboard end to end: a real `mpqueue run` service, a real `mpqueue web`
subprocess on a free port, and Debian's headless Chromium driven by selenium
(chromium and chromium-driver; .ci/run installs them). The job views at real
sizes are in test_web_views.py; docs/screenshots.py makes the pictures in docs/.
"""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from mpqueue.brokers import open_broker
from mpqueue.producer.client import Client
from tests.support import BROKERS, broker_url_for, free_port, wait_for
from tests.support import TASKS as SUPPORT_TASKS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Without the background-networking flags Chromium reaches for the network, which is closed here.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]

# The tasks of tests/support.py (r(): the test Redis), and the dashboard's own.
TASKS = SUPPORT_TASKS + '''
@mpqueue.task(queue="default", timeout=300)
def linger(tag, seconds=120):
    """Runs until the test pushes to test:release:<tag> (short waits: no long socket read)."""
    r().rpush("test:starts", tag)
    for _ in range(seconds):
        if r().blpop(f"test:release:{tag}", 1):
            break
    return tag

@mpqueue.task(queue="default", retries=0)
def flaky(tag):
    """Fails its first run (no retry: to the failed store), succeeds when run again."""
    if r().incr(f"test:flaky:{tag}") == 1:
        raise ValueError(f"{tag} fails on its first run")
    r().rpush("test:runs", tag)
    return tag

@mpqueue.task(queue="default", retries=0)
def hostile(message):
    raise ValueError(message)

@mpqueue.task(queue="default")
def send_email(n):
    return n
'''

pytestmark = pytest.mark.skipif(
    not os.environ.get("CI") and not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


# -- the dashboard process
class Web:
    """`mpqueue web --config FILE --listen 127.0.0.1:PORT ...` in a subprocess."""

    def __init__(self, config_path: Path, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = config_path.parent / f"web-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mpqueue.ops.cli", "web", "--config", str(config_path),
             "--listen", f"127.0.0.1:{self.port}", *args],
            env={**os.environ, **(env or {})}, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_for(self._answers, 20, 0.05, what="the dashboard to listen")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"mpqueue web exited ({self.proc.returncode}):\n{self.log()}")
        return request(self.url + "/favicon.ico")[0] == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def web():
    started = []

    def start(config_path, *args, **kw):
        started.append(Web(Path(config_path), *args, **kw))
        return started[-1]
    yield start
    for w in started:
        w.stop()


def request(url, data=None, headers=None, opener=None, method=None):
    """(status, body text) of one HTTP request; errors are answers too."""
    body = json.dumps(data).encode() if isinstance(data, (dict, list)) else data
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None, ""


class Session:
    """A client with the dashboard's cookie and CSRF token, as its own page has them."""

    def __init__(self, web: Web):
        self.web = web
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        status, page = request(web.url + "/", opener=self.opener)
        assert status == 200, page
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def post(self, path, data, csrf=True, origin="self"):
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        if origin:
            headers["Origin"] = self.web.url if origin == "self" else origin
        return request(self.web.url + path, data, headers, self.opener)


def write_config(tmp_path: Path, broker_url: str, web_section: dict | None = None, name: str = "dash") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "broker": broker_url, "imports": ["json"],
                                    "log": {"format": "text"}, "web": web_section or {},
                                    "queues": {"default": {"workers": 1}}}))
    return path


def failed_job(broker, broker_url, message="boom", task="m:flaky", queue="default") -> str:
    """A job moved to the failed store through the broker, as a worker would."""
    job_id = Client(broker_url, broker=broker).push(queue, task, [message], priority=9)
    [res], _ = broker.reserve(queue, "node:1", 1, 30)
    error = {"type": "error", "message": f"ValueError: {message}", "attempts": 1, "at": time.time(),
             "traceback": f"Traceback (most recent call last):\nValueError: {message}"}
    assert broker.fail(queue, job_id, res.token, json.dumps(error))
    return job_id


@pytest.fixture
def broker(redis_url):
    b = open_broker(redis_url)
    yield b
    b.close()


@pytest.fixture(params=BROKERS)
def any_broker_url(request):
    """Tests of the dashboard's reads and writes run on each broker."""
    return broker_url_for(request)


# -- the browser
@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()          # chromium and chromedriver with it


@pytest.fixture
def browser(chromium):
    """The module's browser with no cookie and an empty console log."""
    chromium.get("about:blank")
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})      # every site's, not just the page's
    chromium.get_log("browser")
    yield chromium
    chromium.get("about:blank")


def console_errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def css(driver, selector):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def text_of(driver, selector) -> str:
    return " ".join(e.text for e in css(driver, selector))


def queue_cells(driver, queue) -> list[str]:
    return [td.text for td in css(driver, f'#queues tr[data-key="q|{queue}"] td')]


def no_alert(driver) -> bool:
    from selenium.common.exceptions import NoAlertPresentException
    try:
        driver.switch_to.alert  # noqa: B018 - the property raises when no dialog is open
    except NoAlertPresentException:
        return True
    return False


# -- the tests
def test_the_page_shows_pushed_running_scheduled_and_failed_jobs_and_retry_runs_a_failed_one(
        service, web, browser, rdb, redis_url):
    # Given: a service whose two default workers are busy, three jobs waiting behind them,
    # a delayed job, and a job of the emails queue that failed
    svc = service({"queues": {"default": {"workers": 2, "prefetch": 1}, "emails": {"workers": 1}}},
                  tasks=TASKS, name="shop").start()
    client = Client(redis_url)
    holds = [client.push("default", "testtasks:linger", [tag]) for tag in ("a", "b")]
    wait_for(lambda: rdb.llen("test:starts") == 2, 15, what="both workers busy")
    for n in range(3):
        client.push("default", "testtasks:send_email", [n])
    later = client.push("default", "testtasks:send_email", [99], delay=600)
    flaky = client.push("emails", "testtasks:flaky", ["f1"])
    wait_for(lambda: client.broker.counts("emails")["failed"] == 1, 15, what="the flaky job failed")
    dash = web(svc.config_path)

    # When: the dashboard is opened
    browser.get(dash.url + "/")
    # Then: it shows the counts, the running jobs with their task, the delayed and the failed job
    wait_for(lambda: queue_cells(browser, "default")[1:5] == ["3", "1", "2", "0"], 15, 0.1,
             what=f"default's counts on the page: {queue_cells(browser, 'default')}")
    assert queue_cells(browser, "emails")[4] == "1"
    wait_for(lambda: all(h in text_of(browser, "#nodes") for h in holds), 10, 0.1, what="the running jobs")
    assert "testtasks:linger" in text_of(browser, "#nodes") and "busy" in text_of(browser, "#nodes")
    row = f'#jobs article[data-key="dead|emails|{flaky}"]'
    assert "f1 fails on its first run" in text_of(browser, row) and "error" in text_of(browser, row + " .badge")
    css(browser, row + " summary")[0].click()
    wait_for(lambda: "ValueError" in text_of(browser, row + " pre.traceback"), 5, 0.05, what="the traceback")
    assert "Traceback (most recent call last)" in text_of(browser, row + " pre.traceback")
    css(browser, '#jobs .tab[data-view="scheduled"]')[0].click()
    wait_for(lambda: later in text_of(browser, "#job-list"), 10, 0.1, what="the delayed job in the Scheduled view")
    css(browser, '#jobs .tab[data-view="dead"]')[0].click()
    wait_for(lambda: css(browser, row), 10, 0.1, what="the Dead view again")

    # When: Retry is clicked on the failed job
    css(browser, row + ' button[data-action="retry"]')[0].click()
    # Then: the page says so; the job leaves the failed store, runs, and is done
    wait_for(lambda: "Requeued 1 job(s) of emails" in text_of(browser, "#flash"), 10, 0.05, what="the outcome")
    wait_for(lambda: rdb.lrange("test:runs", 0, -1) == ["f1"], 15, what="the retried job ran")
    wait_for(lambda: (client.broker.find("emails", flaky) or {}).get("state") == "done", 10, what="done")
    wait_for(lambda: not css(browser, row), 10, 0.1, what="the failed row gone")
    # And: the action was logged with who did it
    assert f"dashboard: retry 1 job(s) [{flaky}] of queue emails by 127.0.0.1: 1 requeued" in dash.log()
    assert console_errors(browser) == []
    for tag in ("a", "b"):
        rdb.rpush(f"test:release:{tag}", "go")


def test_a_hostile_task_name_or_error_message_is_shown_as_text_and_never_runs(service, web, browser, redis_url):
    # Given: failed jobs whose task name and error message are HTML with script in it
    svc = service({"queues": {"default": {"workers": 1}}}, tasks=TASKS).start()
    client = Client(redis_url)
    name = "x:<script>window.__pwned=1</script>"
    message = '<img src=x onerror="window.__pwned=2">'
    by_name = client.push("default", name)
    by_message = client.push("default", "testtasks:hostile", [message])
    wait_for(lambda: client.broker.counts("default")["failed"] == 2, 15, what="both jobs failed")
    dash = web(svc.config_path)
    # When: the page shows them
    browser.get(dash.url + "/")
    wait_for(lambda: css(browser, f'#jobs article[data-key="dead|default|{by_message}"]'), 15, 0.1, what="the rows")
    # Then: the text is there exactly as written, and nothing of it became an element or ran
    assert css(browser, f'#jobs article[data-key="dead|default|{by_name}"] code.task')[0].text == name
    assert message in text_of(browser, f'#jobs article[data-key="dead|default|{by_message}"] .message')
    assert css(browser, "main img, main script") == []
    # And: the job lookup shows the name as text too
    css(browser, "#lookup-id")[0].send_keys(by_name)
    css(browser, "#lookup-form button")[0].click()
    wait_for(lambda: name in text_of(browser, "#lookup-result"), 10, 0.1, what="the job found")
    assert browser.execute_script("return window.__pwned === undefined") and no_alert(browser)
    assert console_errors(browser) == []


def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(web, browser, any_broker_url, tmp_path):
    # Given: a failed job and the dashboard
    broker = open_broker(any_broker_url)
    job_id = failed_job(broker, any_broker_url)
    dash = web(write_config(tmp_path, any_broker_url))
    session = Session(dash)
    retry = {"queue": "default", "ids": [job_id]}
    # When / Then: a POST without the CSRF token, or with a foreign Origin, is refused
    assert session.post("/api/retry", retry, csrf=False)[0] == 403
    assert session.post("/api/retry", retry, origin="http://evil.example")[0] == 403
    assert session.post("/api/retry", retry, origin=None)[0] == 403          # no Origin, no Sec-Fetch-Site
    assert request(dash.url + "/api/retry", retry, {"Origin": dash.url})[0] == 403     # no session at all
    # And: a page of another origin (another port of this host: same site, so the cookie goes along)
    # posting a form at the dashboard is refused too
    attacker = Attacker(dash.url + "/api/purge")
    try:
        browser.get(dash.url + "/")               # the victim has a session
        browser.get(attacker.url)
        css(browser, "button")[0].click()
        wait_for(lambda: "cross-origin request refused" in browser.page_source, 10, 0.1, what="the refusal")
    finally:
        attacker.stop()
    assert broker.counts("default")["failed"] == 1
    # When: the same POST comes from the dashboard's own page, with the token
    status, body = session.post("/api/retry", retry)
    # Then: it works (the refusals above were for the reasons given): the job is ready again
    assert (status, json.loads(body)["requeued"]) == (200, 1)
    assert broker.find("default", job_id)["state"] == "ready"
    broker.close()


class Attacker:
    """A page on another port with a form that posts to `target`."""

    def __init__(self, target: str):
        page = (f'<!doctype html><form method="post" action="{target}">'
                '<input type="hidden" name="queue" value="default"><input type="hidden" name="csrf" value="guess">'
                '<button type="submit">win a prize</button></form>').encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_read_only_shows_everything_and_changes_nothing(web, browser, broker, redis_url, tmp_path):
    job_id = failed_job(broker, redis_url)
    dash = web(write_config(tmp_path, redis_url), "--read-only")
    browser.get(dash.url + "/")
    wait_for(lambda: css(browser, f'#jobs article[data-key="dead|default|{job_id}"]'), 15, 0.1, what="the failed job")
    assert css(browser, "button[data-action]") == [] and css(browser, "#read-only")
    status, body = Session(dash).post("/api/purge", {"queue": "default"})
    assert status == 403 and "read-only" in json.loads(body)["error"]
    assert broker.counts("default")["failed"] == 1
    assert console_errors(browser) == []


def test_with_a_token_the_browser_logs_in_once_and_scripts_send_it_as_bearer(web, browser, broker, redis_url,
                                                                            tmp_path):
    from selenium.webdriver.common.by import By
    token = "t0ken-" + os.urandom(16).hex()
    (tmp_path / "web-token").write_text(token + "\n")
    (tmp_path / "web-token").chmod(0o600)
    job_id = failed_job(broker, redis_url)
    dash = web(write_config(tmp_path, redis_url, {"token_file": "web-token"}))
    # Given: the browser is sent to the login form
    browser.get(dash.url + "/")
    assert browser.current_url == dash.url + "/login"
    # When: a wrong token is given, then the right one
    browser.find_element(By.ID, "token").send_keys("not-the-token-at-all")
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_for(lambda: "That is not the token." in text_of(browser, "#login-error"), 10, 0.05, what="the refusal")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    # Then: the dashboard shows, on a session cookie scripts can't read, sent to this site only
    row = f'#jobs article[data-key="dead|default|{job_id}"]'
    wait_for(lambda: css(browser, row), 15, 0.1, what="the dashboard after login")
    (cookie,) = [c for c in browser.get_cookies() if c["name"] == f"mpqueue_web_{dash.port}"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and token not in cookie["value"]
    # And: an action from the page is logged as the token's, never with the token itself
    css(browser, row + ' button[data-action="retry"]')[0].click()
    wait_for(lambda: "by 127.0.0.1 (token): 1 requeued" in dash.log(), 10, what="the action logged")
    assert token not in dash.log()
    # And: without the cookie, a script needs Authorization: Bearer
    assert request(dash.url + "/api/state")[0] == 401
    assert request(dash.url + "/api/state", headers={"Authorization": "Bearer wrong"})[0] == 401
    status, body = request(dash.url + "/api/state", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and json.loads(body)["service"] == "dash"
    assert request(dash.url + "/api/purge", {"queue": "default"}, {"Authorization": f"Bearer {token}"})[0] == 200
    # The page itself ran without a console error (the wrong token's 401 aside)
    assert [e for e in console_errors(browser) if "401" not in e["message"]] == []


def run_web(config_path, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpqueue.ops.cli", "web", "--config", str(config_path), *args],
                          capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})}, check=False)


def one_line(result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_dashboard_refuses_to_start_unsafe_or_without_flask_in_one_line(tmp_path, redis_url):
    config = write_config(tmp_path, redis_url)
    # Beyond loopback without a token
    line = one_line(run_web(config, "--listen", f"0.0.0.0:{free_port()}"), 78)
    assert "refusing to listen on 0.0.0.0" in line and "token_file" in line
    # A token file other users can read
    (tmp_path / "open-token").write_text("x" * 32)
    (tmp_path / "open-token").chmod(0o644)
    line = one_line(run_web(write_config(tmp_path, redis_url, {"token_file": "open-token"}, name="open")), 78)
    assert "readable by other users" in line and "x" * 32 not in line
    # A port that is taken
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        assert "cannot listen on 127.0.0.1:" in one_line(run_web(config, "--listen", f"127.0.0.1:{port}"), 1)
    # No Flask
    no_flask = ("import sys; sys.modules['flask'] = None; from mpqueue.ops.cli import main; "
                f"main(['web', '--config', {str(config)!r}])")
    result = subprocess.run([sys.executable, "-c", no_flask], capture_output=True, text=True, timeout=30, check=False)
    assert one_line(result, 78) == "mpqueue web needs Flask: pip install 'mpqueue[web]' or apt install python3-flask"


def test_hostile_requests_get_a_one_line_4xx_and_a_broker_outage_a_503(web, broker, redis_url, tmp_path):
    failed_job(broker, redis_url)
    dash = web(write_config(tmp_path, redis_url))
    session = Session(dash)
    for query, status in (("id=" + "a" * 200, 400), ("id=a%2Ab", 400), ("id=%0a", 400), ("id=", 400),
                          ("id=nope", 404), ("id=nope&queue=..%2F", 400), ("id=nope&queue=other", 404)):
        code, body = request(f"{dash.url}/api/job?{query}")
        assert code == status and list(json.loads(body)) == ["error"], (query, code, body)
    for data, status in (({"queue": "default"}, 400), ({"queue": "default", "ids": "x"}, 400),
                         ({"queue": "default", "ids": [1]}, 400), ({"queue": "../x", "ids": ["a"]}, 400),
                         ({"queue": "unknown", "ids": ["a"]}, 404), ([1, 2], 400), ({"queue": "default",
                          "ids": ["a"] * 1001}, 400)):
        code, body = session.post("/api/delete", data)
        assert code == status and list(json.loads(body)) == ["error"], (data, code, body)
    assert session.post("/api/delete", b"{not json")[0] == 400
    assert session.post("/api/delete", b"x" * (2 << 20))[0] == 413
    assert request(dash.url + "/api/state", method="PUT")[0] in (403, 405)
    assert "Traceback" not in dash.log()
    # A broker that does not answer: the page still loads, the data is a 503 saying why
    down = web(write_config(tmp_path, f"redis://127.0.0.1:{free_port()}/0", name="down"))
    assert request(down.url + "/")[0] == 200
    code, body = request(down.url + "/api/state")
    assert code == 503 and json.loads(body)["error"].startswith("broker unreachable: ")
