"""The dashboard at real sizes: 1,000,000 waiting jobs and 100,000 failed ones.

    .venv/bin/python -m bench.dashboard_scale [--waiting N] [--failed N] [--code DIR] [--sqlite] [--browser]

Starts a redis-server of its own (bench/common.py: a free port, persistence off),
fills it through the broker's own scripts (push.lua in batches; reserve, then
fail.lua per failed job, each failure with a real-sized traceback), starts
`mpqueue web` on it, and times, over --samples requests each (median, min–max):
GET /, GET /api/state as every tab polls it (a cache hit after the first), the
same computed afresh (a page no tab asked for yet: the cost of a refresh), a deep
page of the Dead view, a task filter that must scan, the Retries and Scheduled
views. It also counts the Redis commands of one fresh /api/state (INFO
commandstats), its size plain and gzipped, and the CPU the dashboard spends while
ten tabs poll it every 2.5 s. --code DIR runs the dashboard from another source
tree (e.g. `git archive` of an older commit) for a before/after; views it lacks
are skipped. --sqlite fills an SQLite file the same way and times the same
requests on it. --browser opens the page in headless Chromium and times the
first draw and a page turn.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.common import PrivateRedis, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
TRACEBACK = "Traceback (most recent call last):\n" + "".join(
    f'  File "/srv/shop/app/tasks/mail.py", line {n}, in send_receipt\n    smtp.send(message)\n' for n in range(20)) \
    + "smtplib.SMTPServerDisconnected: Connection unexpectedly closed"


def fill(url: str, waiting: int, failed: int, scheduled: int, retries: int) -> None:
    from mpqueue.brokers import PushItem, open_broker
    from mpqueue.core import envelope as jobmod
    broker = open_broker(url)
    broker.add_queues(["default", "emails", "reports"])
    started = time.monotonic()
    for start in range(0, waiting, 10_000):
        n = min(10_000, waiting - start)
        broker.push("default", [PushItem(jobmod.encode("shop.tasks:resize_image", [f"img-{start + i}.jpg"])[1], 0, 0)
                                for i in range(n)])
    print(f"  {waiting:,} waiting in default: {time.monotonic() - started:.1f} s", file=sys.stderr)
    started = time.monotonic()
    for start in range(0, failed, 1000):
        n = min(1000, failed - start)
        broker.push("emails", [PushItem(jobmod.encode("shop.tasks:send_receipt", [start + i], {"to": f"c{i}@example.com"})[1],
                                0, 0) for i in range(n)])
        reserved, _ = broker.reserve("emails", "bench/1", n, 600)
        for r in reserved:
            error = {"type": "error", "message": "SMTPServerDisconnected: Connection unexpectedly closed",
                     "at": time.time(), "attempts": 1, "traceback": TRACEBACK}
            broker.fail("emails", jobmod.job_id(r.envelope), r.token, json.dumps(error))
    print(f"  {failed:,} failed in emails: {time.monotonic() - started:.1f} s", file=sys.stderr)
    for start in range(0, scheduled, 10_000):
        n = min(10_000, scheduled - start)
        broker.push("reports", [PushItem(jobmod.encode("shop.tasks:weekly_report", [start + i])[1], 0, 3600 + i)
                                for i in range(n)])
    for _ in range(retries):
        broker.push("reports", [PushItem(jobmod.encode("shop.tasks:sync_stock", [])[1], 0, 0)])
        (r,), _ = broker.reserve("reports", "bench/1", 1, 600)
        broker.retry("reports", jobmod.job_id(r.envelope), r.token, 1800,
                     json.dumps({"type": "error", "message": "ConnectionError: upstream down", "at": time.time(),
                                 "traceback": TRACEBACK}))
    broker.close()


class Dashboard:
    def __init__(self, broker_url: str, workdir: Path, code: Path | None):
        import yaml
        self.config = workdir / "shop.yaml"
        self.config.write_text(yaml.safe_dump({"name": "shop", "broker": broker_url, "imports": ["json"],
                                               "log": {"format": "text"},
                                               "queues": {"default": {}, "emails": {}, "reports": {}}}))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(code or ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "mpqueue.ops.cli", "web", "--config", str(self.config),
                                      "--listen", f"127.0.0.1:{self.port}"], env=env, cwd=str(code or ROOT),
                                     stdout=subprocess.DEVNULL, stderr=open(workdir / "web.log", "wb"))
        wait_until(lambda: get(self.url + "/favicon.ico")[0] == 200, 30, "the dashboard", 0.05)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def get(url: str, gzipped: bool = False) -> tuple[int | None, bytes]:
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzipped else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError):
        return None, b""


def timed(urls: list[str]) -> dict:
    ms = []
    for url in urls:
        start = time.perf_counter()
        status, _ = get(url, gzipped=True)
        ms.append((time.perf_counter() - start) * 1000)
        if status != 200:
            return {"status": status}
    return {"median_ms": round(statistics.median(ms), 1), "min_ms": round(min(ms), 1), "max_ms": round(max(ms), 1),
            "n": len(ms)}


def measure(dash: Dashboard, samples: int) -> dict:
    u = dash.url
    fresh = [f"{u}/api/state?limit={20 + n}" for n in range(samples)]      # keys no tab asked for: computed
    out = {
        "GET /": timed([u + "/"] * samples),
        "GET /api/state (shared, as tabs poll)": timed([u + "/api/state"] * samples),
        "GET /api/state (computed afresh)": timed(fresh),
        "Dead, emails, page 2,000 (offset 99,950)": timed(
            [f"{u}/api/state?queue=emails&offset={99_950 - n}" for n in range(samples)]),
        "Dead, filtered by task (scan bounded at 5,000)": timed(
            [f"{u}/api/state?task=no-such-task-{n}" for n in range(samples)]),
        "Retries": timed([f"{u}/api/state?view=retries&limit={20 + n}" for n in range(samples)]),
        "Scheduled": timed([f"{u}/api/state?view=scheduled&limit={20 + n}" for n in range(samples)]),
    }
    return out


def payload(dash: Dashboard) -> dict:
    url = dash.url + "/api/state?limit=51"           # a fresh key
    _, plain = get(url)
    _, zipped = get(url, gzipped=True)               # the same snapshot (shared), compressed if the code can
    return {"plain_bytes": len(plain), "gzip_bytes": len(zipped) if zipped[:2] == b"\x1f\x8b" else None}


def commands_per_poll(rds: PrivateRedis, dash: Dashboard) -> int:
    """Redis commands of one /api/state computed afresh (INFO's own calls taken out)."""
    def total() -> int:
        stats = rds.client.info("commandstats")
        return sum(v["calls"] for v in stats.values())
    get(dash.url + "/api/state?limit=49")          # warm: the broker connection, scripts, the format check
    a = total()
    b = total()
    get(dash.url + "/api/state?limit=48")
    c = total()
    return (c - b) - (b - a)


def ten_tabs(dash: Dashboard, rds, seconds: float) -> dict:
    """% of one core the dashboard spends while ten tabs poll /api/state every 2.5 s,
    and the Redis commands that costs per tab and poll."""
    stop = threading.Event()

    def tab(n):
        stop.wait(n * 0.25)
        while not stop.is_set():
            get(dash.url + "/api/state", gzipped=True)
            stop.wait(2.5)
    threads = [threading.Thread(target=tab, args=(n,), daemon=True) for n in range(10)]
    before, commands, start = dash.cpu_seconds(), redis_commands(rds), time.monotonic()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    out = {"cpu_percent": round(100 * (dash.cpu_seconds() - before) / took, 1)}
    if rds is not None:
        out["redis_commands_per_tab_poll"] = round((redis_commands(rds) - commands) / (took / 2.5 * 10), 1)
    return out


def redis_commands(rds) -> int:
    return int(rds.client.info("stats")["total_commands_processed"]) if rds is not None else 0


def browser(dash: Dashboard) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    profile = tempfile.mkdtemp(prefix="mpq-bench-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    try:
        start = time.perf_counter()
        driver.get(dash.url + "/")
        wait_until(lambda: driver.execute_script(
            "return document.querySelectorAll('#job-list article.job').length") > 0, 30, "the first draw", 0.01)
        first = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        driver.execute_script("document.getElementById('next').click()")
        wait_until(lambda: driver.execute_script(
            "return document.getElementById('showing').textContent.startsWith('showing 51')"), 30, "page 2", 0.01)
        turn = (time.perf_counter() - start) * 1000
        # A busy main thread delays a timer: how late is a 0 ms timeout while the page polls?
        lag = driver.execute_async_script("""
            const done = arguments[0]; let worst = 0, n = 0;
            (function tick() { const t = performance.now(); setTimeout(() => {
              worst = Math.max(worst, performance.now() - t); if (++n < 200) tick(); else done(worst); }, 25); })();""")
        nodes = driver.execute_script("return document.getElementsByTagName('*').length")
        return {"first_draw_ms": round(first), "page_turn_ms": round(turn), "worst_timer_lag_ms": round(lag - 25, 1),
                "dom_elements": nodes}
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def run(broker_url: str, rds: PrivateRedis | None, args, workdir: Path) -> dict:
    dash = Dashboard(broker_url, workdir, Path(args.code).resolve() if args.code else None)
    try:
        get(dash.url + "/api/state")
        result = {"requests": measure(dash, args.samples), "payload": payload(dash)}
        if rds is not None:
            result["redis_commands_per_fresh_poll"] = commands_per_poll(rds, dash)
        result["ten_tabs"] = ten_tabs(dash, rds, args.tabs_seconds)
        if args.browser:
            result["browser"] = browser(dash)
        return result
    finally:
        dash.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--waiting", type=int, default=1_000_000)
    p.add_argument("--failed", type=int, default=100_000)
    p.add_argument("--scheduled", type=int, default=10_000)
    p.add_argument("--retries", type=int, default=500)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--tabs-seconds", type=float, default=20.0)
    p.add_argument("--code", help="run the dashboard from this source tree (before/after)")
    p.add_argument("--sqlite", action="store_true", help="also fill and time an SQLite broker")
    p.add_argument("--browser", action="store_true", help="time the page in headless Chromium")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mpq-bench-dash-"))
    rds = PrivateRedis()
    results = {"settings": {k: v for k, v in vars(args).items() if k != "json"}}
    try:
        print(f"filling redis ({args.waiting:,} waiting, {args.failed:,} failed)", file=sys.stderr)
        fill(rds.url, args.waiting, args.failed, args.scheduled, args.retries)
        results["redis"] = run(rds.url, rds, args, workdir)
        if args.sqlite:
            url = f"sqlite://{workdir}/queue.db"
            print(f"filling sqlite ({args.waiting:,} waiting, {args.failed:,} failed)", file=sys.stderr)
            fill(url, args.waiting, args.failed, args.scheduled, args.retries)
            results["sqlite"] = run(url, None, args, workdir)
    finally:
        rds.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
