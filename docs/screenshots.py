"""Regenerate the dashboard's screenshots in docs/ from a running service.

    sudo .venv/bin/python docs/screenshots.py --root /srv/shop

What the pictures show is what an operator's install shows: the service `shop`
installed under --root (its tasks in ROOT/app/shop_tasks.py, a copy of mpqueue
in ROOT/lib, its config ROOT/shop.yaml), a redis-server of the script's own on 127.0.0.1:6379 when that
port is free (else a free port, and the script says so), `mpqueue run` with
three queues and some traffic, failures and retries, `mpqueue web` in front,
and Debian's headless Chromium. Nothing of a developer's checkout or a temp
directory is on the page or in a traceback, provided --root is a neutral path
(the default, a temp directory, is for trying the script out). Everything it
starts is stopped, and --root removed, at the end.

Writes docs/dashboard.png (the page at 1400 px), docs/dashboard-dead.png (the
Dead view: 20 a page of 1,200, three picked, a long message clamped, a traceback unfolded) and
docs/dashboard-narrow.png (the page at 420 px).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, wait_until  # noqa: E402

TASKS = '''"""The shop's tasks."""
import random
import time

import mpqueue


class SMTPServerDisconnected(Exception):
    pass


@mpqueue.task(queue="emails", retries=0)
def send_receipt(order, to):
    time.sleep(0.05)
    if order % 40 == 0:
        raise SMTPServerDisconnected("Connection unexpectedly closed: smtp.example.com:587")
    return order


@mpqueue.task(queue="default", timeout=600)
def resize_image(name, seconds=0.2):
    time.sleep(seconds)
    return name


@mpqueue.task(queue="reports", retries=5, retry_delay=1800)
def sync_stock(warehouse):
    raise ConnectionError(f"warehouse {warehouse}: upstream API answered 503 Service Unavailable")


@mpqueue.task(queue="reports")
def weekly_report(week):
    return week


@mpqueue.task(queue="emails", retries=0)
def import_feed(feed):
    raise ValueError("feed " + feed + ": row 1 has 2,000 characters of junk: " + "ZmFrZS1wYXlsb2Fk" * 124)
'''


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, cmd, **kw):
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def setup(root: Path, procs: Procs) -> tuple[str, Path, dict]:
    (root / "app").mkdir(parents=True)
    (root / "app" / "shop_tasks.py").write_text(TASKS)
    # mpqueue itself as installed there too: its frames in a traceback name ROOT/lib, not this checkout
    shutil.copytree(ROOT / "mpqueue", root / "lib" / "mpqueue", ignore=shutil.ignore_patterns("__pycache__"))
    port = 6379 if port_free(6379) else free_port()
    if port != 6379:
        print(f"127.0.0.1:6379 is taken: redis on {port} (the page shows that port)", file=sys.stderr)
    (root / "redis").mkdir()
    procs.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(root / "redis")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    config = root / "shop.yaml"
    config.write_text(yaml.safe_dump({
        "name": "shop", "broker": url, "imports": ["shop_tasks"], "log": {"format": "text"},
        "queues": {"default": {"workers": 2, "concurrency": 2, "prefetch": 2},
                   "emails": {"workers": 2, "concurrency": 4, "prefetch": 4},
                   "reports": {"workers": 1}}}))
    env = {**os.environ, "PYTHONPATH": f"{root / 'app'}:{root / 'lib'}"}
    env.pop("NOTIFY_SOCKET", None)
    return url, config, env


def traffic(url: str, seconds: float) -> None:
    from mpqueue.producer.client import Client
    client = Client(url)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        client.push("emails", "shop_tasks:send_receipt", [n, f"customer{n}@example.com"])
        if n % 3 == 0:
            client.push("default", "shop_tasks:resize_image", [f"product-{n}.jpg"])
        time.sleep(0.08)      # ok: a steady trickle, so the sparklines have a shape
    client.push("emails", "shop_tasks:import_feed", ["partners.csv"])     # the newest failure: a long message
    time.sleep(2)  # ok: a worker takes it


def backlog(url: str) -> None:
    """What a busy afternoon leaves: a backlog, failures, retries and scheduled jobs."""
    from mpqueue.producer.client import Client
    client = Client(url)
    for n in range(400):
        client.push("default", "shop_tasks:resize_image", [f"banner-{n}.png", 30])
    for n in range(1200):
        client.push("emails", "shop_tasks:send_receipt", [40 * n, f"customer{n}@example.com"])
    for w in ("north", "south", "east"):
        client.push("reports", "shop_tasks:sync_stock", [w])
    for week in range(49, 53):
        client.push("reports", "shop_tasks:weekly_report", [week], delay=86400 * (week - 48))


def shoot(web_url: str, out: Path, url: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from mpqueue.brokers import open_broker
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    profile = tempfile.mkdtemp(prefix="mpq-shots-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                 "--disable-background-networking", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    js = driver.execute_script
    try:
        driver.get(web_url + "/")
        wait_until(lambda: js("return document.querySelectorAll('#job-list article.job').length") > 0, 60,
                   "the failed jobs", 0.1)
        broker = open_broker(url)
        broker.pause("reports")
        broker.close()
        time.sleep(3)  # ok: one more poll, so the paused badge shows
        js("document.querySelector('#job-list article.job summary').click()")
        time.sleep(1)  # ok: the traceback's fetch
        height = js("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(height + 100, 1700))
        time.sleep(3)  # ok: one more poll after the resize
        driver.save_screenshot(str(out / "dashboard.png"))
        # The Dead view: 20 a page, three picked for a bulk action, a long message
        # clamped (with "show more") and one traceback unfolded
        driver.set_window_size(1400, 1000)
        js("const s = document.getElementById('view-limit'); s.value = '20';"
           "s.dispatchEvent(new Event('change', {bubbles: true}))")
        wait_until(lambda: js("return document.getElementById('showing').textContent").startswith("showing 1–20"),
                   30, "20 a page", 0.1)
        js("for (const s of document.querySelectorAll('#job-list details[open] summary')) s.click();"
           "for (const c of [...document.querySelectorAll('#job-list input.pick')].slice(2, 5)) c.click();"
           "document.querySelectorAll('#job-list article.job summary')[1].click()")
        time.sleep(1.5)  # ok: the traceback's fetch
        driver.set_window_size(1400, 1500)
        time.sleep(3)  # ok: one more poll
        driver.find_element("id", "jobs").screenshot(str(out / "dashboard-dead.png"))
        # The page at 420 px
        driver.set_window_size(420, 900)
        js("window.scrollTo(0, 0)")
        time.sleep(3)  # ok: one more poll at this width
        height = js("return document.documentElement.scrollHeight")
        driver.set_window_size(420, min(height + 100, 3000))
        time.sleep(3)  # ok: one more poll after the resize
        driver.save_screenshot(str(out / "dashboard-narrow.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="where to install the example service (default: a temp directory)")
    p.add_argument("--out", default=str(DOCS), help="where the PNG files go (default: docs/)")
    p.add_argument("--traffic", type=float, default=35.0, help="seconds of traffic before the pictures")
    args = p.parse_args(argv)
    root = Path(args.root or tempfile.mkdtemp(prefix="mpq-shots-"))
    if args.root and root.exists():
        p.error(f"{root} exists: give a path the script may create and remove")
    procs = Procs()
    try:
        url, config, env = setup(root, procs) if args.root else setup(root / "shop", procs)
        wait_until(lambda: not port_free(int(url.rsplit(":", 1)[1].split("/")[0])), 10, "redis-server", 0.05)
        backlog(url)
        procs.start([sys.executable, "-m", "mpqueue.ops.cli", "run", "--config", str(config)], env=env,
                    cwd=str(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = free_port()
        procs.start([sys.executable, "-m", "mpqueue.ops.cli", "web", "--config", str(config), "--listen",
                     f"127.0.0.1:{port}"], env=env, cwd=str(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        traffic(url, args.traffic)
        shoot(f"http://127.0.0.1:{port}", Path(args.out), url)
    finally:
        procs.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
