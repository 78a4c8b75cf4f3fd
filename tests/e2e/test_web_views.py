"""The dashboard's job views at real sizes, in Debian's headless Chromium: the Dead
view paged by the server with an honest header, tracebacks fetched when a row is
unfolded, bulk retry, run now and delete of delayed jobs, cancel of a running
job, pause and resume of a queue, a layout that holds at 420 px with a
2,000-character message; and, without a browser, gzip, the shared snapshot, a
chunked body over the limit, read-only refusals. Outcomes are checked with
mpqctl, as an operator would."""
from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from mpqueue.brokers import PushItem
from mpqueue.core import envelope as jobmod
from tests.e2e.test_web import (Session, broker, browser, chromium, console_errors, css,  # noqa: F401
                                pytestmark, request, web, write_config)
from tests.support import wait_for


def mpqctl(config, *args) -> dict:
    out = subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--config", str(config), *args, "--json"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def fail_many(broker, n: int, queue="default", task="m:flaky", message=lambda i: f"boom {i}") -> list[str]:
    """n jobs moved to the failed store in n steps of the clock's millisecond, oldest first."""
    ids = []
    for i in range(n):
        job_id, env = jobmod.encode(task, [i])
        broker.push(queue, [PushItem(env, 0, 0)])
        [res], _ = broker.reserve(queue, "node:1", 1, 30)
        error = {"type": "error", "message": f"ValueError: {message(i)}", "at": time.time() + i / 1000,
                 "traceback": f"Traceback (most recent call last):\n  File \"m.py\", line {i}\nValueError: {message(i)}"}
        assert broker.fail(queue, job_id, res.token, json.dumps(error))
        ids.append(job_id)
        start = time.time()       # the failed store orders by the broker's ms: one failure per ms
        wait_for(lambda: time.time() - start > 0.0015, 1, 0.0005, what="the clock to move on")
    return ids


def open_page(driver, dash):
    driver.get(dash.url + "/")
    wait_for(lambda: text_of(driver, "#showing") or css(driver, "#job-list p.empty"), 15, 0.1, what="the job view")


def text_of(driver, selector) -> str:
    """The text of every element `selector` matches, read in one step (the page redraws
    rows while a test reads them: element by element, one may go stale in between)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.innerText).join(' ')", selector)


def click(driver, selector) -> None:
    """A real click on the first match, found again if a redraw replaced it meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException

    def once() -> bool:
        try:
            css(driver, selector)[0].click()
        except (StaleElementReferenceException, IndexError):
            return False
        return True
    wait_for(once, 10, 0.05, what=f"a click on {selector}")


def showing(driver) -> str:
    return text_of(driver, "#showing")


def row_ids(driver) -> list[str]:
    keys = driver.execute_script(
        "return [...document.querySelectorAll('#job-list article.job')].map((a) => a.dataset.key)")
    return [k.split("|", 2)[2] for k in keys]


def test_the_dead_view_pages_newest_first_says_so_and_fetches_a_traceback_only_when_unfolded(
        web, browser, broker, redis_url, tmp_path):
    # Given: 120 failed jobs, 7 of them of another task
    ids = fail_many(broker, 113)
    ids += fail_many(broker, 7, task="m:report")
    config = write_config(tmp_path, redis_url)
    dash = web(config)
    # When: the page opens
    open_page(browser, dash)
    # Then: it shows the newest 50, and says so
    wait_for(lambda: showing(browser) == "showing 1–50 of 120, newest first", 10, 0.1, what="the header")
    assert row_ids(browser) == ids[::-1][:50]
    # And: the poll carries no traceback; a row's traceback comes when it is unfolded
    state = json.loads(request(dash.url + "/api/state")[1])
    assert "Traceback" not in json.dumps(state) and state["view"]["rows"][0]["has_traceback"] is True
    newest = f'#job-list article[data-key="dead|default|{ids[-1]}"]'
    click(browser, newest + " summary")
    wait_for(lambda: "ValueError: boom 6" in text_of(browser, newest + " pre.traceback"), 10, 0.05,
             what="the traceback fetched")
    # When: the next page is asked for, then the last
    click(browser, "#next")
    wait_for(lambda: showing(browser) == "showing 51–100 of 120, newest first", 10, 0.1, what="page 2")
    assert row_ids(browser) == ids[::-1][50:100]
    click(browser, "#next")
    wait_for(lambda: showing(browser) == "showing 101–120 of 120, newest first", 10, 0.1, what="page 3")
    assert css(browser, "#next")[0].get_attribute("disabled") is not None
    # When: filtered by task
    css(browser, "#task-filter")[0].send_keys("report")
    wait_for(lambda: showing(browser) == "showing 1–7 of 7 found, newest first", 10, 0.1, what="the filter")
    assert row_ids(browser) == ids[::-1][:7]
    # Then: mpqctl sees the same failed store
    assert len(mpqctl(config, "failed", "default", "--limit", "500")) == 120
    assert console_errors(browser) == []


def test_bulk_retry_requeues_the_jobs_selected_on_the_page(web, browser, broker, redis_url, tmp_path):
    # Given: 30 failed jobs, 20 shown a page
    ids = fail_many(broker, 30)
    config = write_config(tmp_path, redis_url)
    dash = web(config)
    open_page(browser, dash)
    click(browser, "#view-limit option[value='20']")
    wait_for(lambda: showing(browser) == "showing 1–20 of 30, newest first", 10, 0.1, what="20 a page")
    # When: every job on the page is selected, one unselected, and "Retry selected" clicked
    click(browser, "#pick-all")
    click(browser, f'#job-list input.pick[data-key="dead|default|{ids[-1]}"]')
    wait_for(lambda: text_of(browser, "#picked") == "19 selected", 5, 0.05, what="19 selected")
    click(browser, '#bulk-actions button[data-action="retry"]')
    # Then: those 19 are ready again, the rest still failed, and the page says so
    wait_for(lambda: "Requeued 19 job(s) of default" in text_of(browser, "#flash"), 10, 0.05, what="the outcome")
    assert broker.counts("default")["failed"] == 11 and broker.counts("default")["ready"] == 19
    assert mpqctl(config, "job", ids[-2])["state"] == "ready"
    assert mpqctl(config, "job", ids[-1])["state"] == "failed"
    wait_for(lambda: showing(browser) == "showing 1–11 of 11, newest first", 10, 0.1, what="the view after")
    assert "retry 19 job(s)" in dash.log() and "by 127.0.0.1: 19 requeued" in dash.log()


def test_a_retry_shows_its_last_error_and_run_now_and_delete_work_on_delayed_jobs(
        web, browser, broker, redis_url, tmp_path):
    # Given: a job waiting out its retry delay (with its last error), and two scheduled jobs
    retrying, env = jobmod.encode("m:sync", ["r"])
    broker.push("default", [PushItem(env, 0, 0)])
    [res], _ = broker.reserve("default", "node:1", 1, 30)
    error = {"type": "error", "message": "ConnectionError: upstream down", "at": time.time(),
             "traceback": "Traceback (most recent call last):\nConnectionError: upstream down"}
    assert broker.retry("default", retrying, res.token, 3600, json.dumps(error))
    later, env = jobmod.encode("m:report", ["weekly"])
    broker.push("default", [PushItem(env, 0, 7200)])
    doomed, env = jobmod.encode("m:report", ["monthly"])
    broker.push("default", [PushItem(env, 0, 9000)])
    config = write_config(tmp_path, redis_url)
    dash = web(config)
    open_page(browser, dash)
    # When: the Retries view is opened
    click(browser, '#jobs .tab[data-view="retries"]')
    row = f'#job-list article[data-key="retries|default|{retrying}"]'
    wait_for(lambda: css(browser, row), 10, 0.1, what="the retry listed")
    # Then: it shows the retry alone, with its last error and attempt
    assert row_ids(browser) == [retrying]
    assert "ConnectionError: upstream down" in text_of(browser, row + " .message")
    assert "attempt 1" in text_of(browser, row)
    click(browser, row + " summary")
    wait_for(lambda: "Traceback" in text_of(browser, row + " pre.traceback"), 10, 0.05, what="its traceback")
    # When: "Run now" is clicked on it
    click(browser, row + ' button[data-action="run_now"]')
    # Then: it is ready, its attempt count kept
    wait_for(lambda: "Made 1 job(s) of default ready" in text_of(browser, "#flash"), 10, 0.05, what="the outcome")
    job = mpqctl(config, "job", retrying)
    assert job["state"] == "ready" and job["attempts"] == 1
    # When: the Scheduled view lists the other two, and Delete is clicked twice on one
    click(browser, '#jobs .tab[data-view="scheduled"]')
    wait_for(lambda: row_ids(browser) == [later, doomed], 10, 0.1, what="the scheduled jobs, next due first")
    delete = f'#job-list article[data-key="scheduled|default|{doomed}"] button[data-action="cancel"]'
    click(browser, delete)
    wait_for(lambda: "Really delete?" in text_of(browser, delete), 5, 0.05, what="the confirmation")
    click(browser, delete)
    # Then: it is cancelled (never runs, its record says so); the other stays
    wait_for(lambda: row_ids(browser) == [later], 10, 0.1, what="the deleted job gone")
    assert mpqctl(config, "job", doomed)["state"] == "cancelled"
    assert mpqctl(config, "job", later)["state"] == "scheduled"
    assert console_errors(browser) == []


def test_a_running_job_is_asked_to_stop_and_a_queue_paused_and_resumed_from_the_page(
        web, browser, broker, redis_url, tmp_path):
    # Given: a job held by a consumer (no live node: the unclaimed card lists it)
    running, env = jobmod.encode("m:long", [])
    broker.push("default", [PushItem(env, 0, 0)])
    broker.reserve("default", "node:1/42", 1, 300)
    config = write_config(tmp_path, redis_url)
    dash = web(config)
    open_page(browser, dash)
    cancel = f'#nodes button[data-action="cancel"][data-id="{running}"]'
    wait_for(lambda: css(browser, cancel), 10, 0.1, what="the running job's Cancel")
    # When: Cancel is clicked, and confirmed
    click(browser, cancel)
    wait_for(lambda: "Ask it to stop?" in text_of(browser, cancel), 5, 0.05, what="the confirmation")
    click(browser, cancel)
    # Then: the job is asked to stop (not killed)
    wait_for(lambda: "Asked 1 running job(s) of default to stop" in text_of(browser, "#flash"), 10, 0.05,
             what="the outcome")
    assert broker.cancel_requested("default", running) == "ask"
    # When: Pause is clicked
    pause = '#queues tr[data-key="q|default"] button[data-action="pause"]'
    click(browser, pause)
    # Then: the queue is paused for every node (mpqctl finds it so), and the page says so
    wait_for(lambda: "paused" in text_of(browser, '#queues tr[data-key="q|default"] .badge'), 10, 0.1,
             what="the paused badge")
    assert broker.paused(["default"]) == {"default"}
    assert mpqctl(config, "pause", "default") == {"queue": "default", "paused": True, "changed": False}
    # When: Resume is clicked
    click(browser, '#queues tr[data-key="q|default"] button[data-action="resume"]')
    wait_for(lambda: css(browser, pause), 10, 0.1, what="Pause again")
    assert broker.paused(["default"]) == set()
    # And: a pause by mpqctl shows on the page, with Resume
    assert mpqctl(config, "pause", "default")["changed"] is True
    wait_for(lambda: css(browser, '#queues tr[data-key="q|default"] button[data-action="resume"]'), 10, 0.1,
             what="mpqctl's pause on the page")
    assert mpqctl(config, "resume", "default")["changed"] is True
    log = dash.log()
    assert "dashboard: pause of queue default by 127.0.0.1: done" in log and "resume of queue default" in log
    assert console_errors(browser) == []


def in_view(driver, selector) -> list[dict]:
    """Each visible element's box against the window: nothing clipped or off to the side."""
    return driver.execute_script("""
        return [...document.querySelectorAll(arguments[0])].filter((e) => e.offsetParent !== null).map((e) => {
          const r = e.getBoundingClientRect();
          return {left: r.left, right: r.right, width: innerWidth, text: e.textContent};
        });""", selector)


def test_at_420_px_the_page_stacks_a_long_message_is_clamped_and_a_traceback_keeps_the_buttons_in_view(
        web, browser, broker, redis_url, tmp_path):
    # Given: a failed job with a 2,000-character message and a wide, long traceback
    long = "x" * 60 + " " + " ".join(f"word{i}" for i in range(330))
    assert len(long) >= 2000
    fail_many(broker, 1, message=lambda i: long)
    [(job_id, _, _)] = broker.failed("default", 1)
    config = write_config(tmp_path, redis_url)
    dash = web(config)
    browser.set_window_size(420, 900)
    try:
        open_page(browser, dash)
        assert browser.execute_script("return innerWidth") <= 420
        row = f'#job-list article[data-key="dead|default|{job_id}"]'
        wait_for(lambda: css(browser, row), 10, 0.1, what="the row")
        # Then: the message shows a few lines, with "show more"
        clamped = browser.execute_script(
            "const m = document.querySelector(arguments[0]); return [m.clientHeight, m.scrollHeight]", row + " .message")
        assert clamped[0] < 80 < clamped[1]
        # And: no button is clipped or off the side, nor is the page wider than the window
        assert browser.execute_script("return document.documentElement.scrollWidth <= innerWidth")
        for box in in_view(browser, "button"):
            assert 0 <= box["left"] and box["right"] <= box["width"], box
        # When: the traceback is unfolded (a long line of 3,000 characters in it)
        click(browser, row + " summary")
        wait_for(lambda: "ValueError" in text_of(browser, row + " pre.traceback"), 10, 0.05, what="the traceback")
        # Then: it scrolls in its own box; Retry and Delete stay in view, the page no wider
        pre = browser.execute_script("const p = document.querySelector(arguments[0]);"
                                     "return [p.scrollWidth, p.clientWidth]", row + " pre.traceback")
        assert pre[0] > pre[1]
        assert browser.execute_script("return document.documentElement.scrollWidth <= innerWidth")
        for box in in_view(browser, row + " button.act"):
            assert 0 <= box["left"] and box["right"] <= box["width"], box
        # When: "show more" is clicked, the whole message shows
        click(browser, row + " button.more")
        assert browser.execute_script(
            "const m = document.querySelector(arguments[0]); return m.clientHeight >= m.scrollHeight",
            row + " .message")
        assert console_errors(browser) == []
    finally:
        browser.set_window_size(1400, 1000)


# -- without a browser
def raw_post(port: int, head: str, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def test_state_is_gzipped_shared_between_tabs_and_an_oversized_chunked_post_is_a_413(
        web, broker, redis_url, tmp_path):
    fail_many(broker, 60, message=lambda i: "m" * 500)
    dash = web(write_config(tmp_path, redis_url))
    # gzip when asked for, the same JSON inside; plain otherwise
    req = urllib.request.Request(dash.url + "/api/state", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in r.headers["Vary"]
        zipped = r.read()
    plain = request(dash.url + "/api/state")[1]
    assert len(zipped) < len(plain) / 4
    # One snapshot per refresh interval for every tab: two polls in a row share it
    first, second = json.loads(gzip.decompress(zipped)), json.loads(plain)
    assert first["now"] == second["now"] and first["view"]["total"] == 60
    # A chunked body over the limit (no Content-Length) is a 413, like a declared one
    session = Session(dash)
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
    answer = raw_post(dash.port, f"POST /api/delete HTTP/1.1\r\nHost: 127.0.0.1:{dash.port}\r\n"
                                 "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n", body)
    assert answer.startswith(b"HTTP/1.1 413") and b"request body over" in answer
    # A small chunked POST goes through to the checks (here: no CSRF token, refused as such)
    small = b'{"queue": "default", "ids": ["x"]}'
    answer = raw_post(dash.port, f"POST /api/delete HTTP/1.1\r\nHost: 127.0.0.1:{dash.port}\r\n"
                                 f"Origin: {dash.url}\r\nTransfer-Encoding: chunked\r\n\r\n",
                      b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))
    assert b" 403 " in answer.split(b"\r\n")[0] and b"CSRF" in answer
    # ... and with the session's cookie and CSRF token, it is read whole and acted on
    jar = next(h.cookiejar for h in session.opener.handlers if hasattr(h, "cookiejar"))
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    answer = raw_post(dash.port, f"POST /api/run_now HTTP/1.1\r\nHost: 127.0.0.1:{dash.port}\r\n"
                                 f"Origin: {dash.url}\r\nCookie: {cookie}\r\nX-CSRF-Token: {session.csrf}\r\n"
                                 "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                      b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))
    assert b" 200 " in answer.split(b"\r\n")[0] and json.loads(answer.partition(b"\r\n\r\n")[2])["moved"] == 0


@pytest.mark.parametrize("path, data", [("/api/run_now", {"queue": "default", "ids": ["a"]}),
                                        ("/api/cancel", {"queue": "default", "ids": ["a"]}),
                                        ("/api/pause", {"queue": "default"}), ("/api/resume", {"queue": "default"})])
def test_read_only_refuses_every_new_action(web, broker, redis_url, tmp_path, path, data):
    dash = web(write_config(tmp_path, redis_url), "--read-only")
    status, body = Session(dash).post(path, data)
    assert status == 403 and "read-only" in json.loads(body)["error"]
    assert broker.paused(["default"]) == set()
