"""A load test of ``python -m lightning_fer serve`` on 127.0.0.1, bounded in count and time: N
requests (default 200) from C clients (default 16) posting real photos, then the latency
percentiles, requests per second and errors, as a table with the machine it ran on; optionally a
screenshot of the page with the astronaut labelled (the README's picture).

    python -m benchmarks.serve_load                       # 200 requests, 16 clients
    python -m benchmarks.serve_load --screenshot benchmarks/results/serve_page.png

The baseline in the same run: the same photo through ``lightning_fer.analyze`` in this process, one
at a time (what the server adds is the HTTP round trip, the upload and the queue).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, table  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _photos(folder: Path) -> list[Path]:
    import cv2
    from skimage import data as skdata

    out = []
    astro = skdata.astronaut()[:, :, ::-1]
    for i, img in enumerate([astro, cv2.flip(astro, 1), cv2.resize(astro, (384, 384))]):
        p = folder / f"photo{i}.jpg"
        cv2.imwrite(str(p), img)
        out.append(p)
    return out


def screenshot(url: str, photo: Path, out: Path) -> None:
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,760"):
        opts.add_argument(a)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        browser.get(url)
        browser.find_element(By.ID, "files").send_keys(str(photo))
        WebDriverWait(browser, 60).until(ec.text_to_be_present_in_element((By.ID, "results"), "happy"))
        time.sleep(0.5)
        browser.save_screenshot(str(out))
    finally:
        browser.quit()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--timeout", type=float, default=600.0, help="stop sending after this many seconds")
    p.add_argument("--model", default="fer2013")
    p.add_argument("--screenshot", default=None, help="also save the page with the astronaut labelled here")
    args = p.parse_args(argv)

    import httpx

    import lightning_fer

    tmp = Path(tempfile.mkdtemp())
    photos = _photos(tmp)
    port = _port()
    server = subprocess.Popen([sys.executable, "-m", "lightning_fer", "serve", "--pretrained", args.model,
                               "--port", str(port), "--max_queue", str(args.clients + 1)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    try:
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
            if time.perf_counter() - t0 > 180:
                raise SystemExit("serve did not start in 180 s")
        started = time.perf_counter() - t0
        httpx.post(url + "/predict", files={"file": ("w.jpg", photos[0].read_bytes(), "image/jpeg")}, timeout=120)
        latencies, errors, lock = [], [], threading.Lock()
        stop = time.perf_counter() + args.timeout

        def one(i: int) -> None:
            if time.perf_counter() > stop:
                return
            photo = photos[i % len(photos)]
            s = time.perf_counter()
            try:
                r = httpx.post(url + "/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")}, timeout=300)
                ok = r.status_code == 200 and r.json()["faces"]
            except httpx.HTTPError as err:
                ok, r = False, err
            with lock:
                (latencies if ok else errors).append(time.perf_counter() - s if ok else str(r))

        t1 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - t1
        if args.screenshot:
            screenshot(url + "/", photos[0], Path(args.screenshot))
    finally:
        server.terminate()
        server.wait(30)
    predictor = lightning_fer.Predictor(args.model)
    predictor.analyze(str(photos[0]))
    base = []
    for i in range(10):
        s = time.perf_counter()
        predictor.analyze(str(photos[i % len(photos)]))
        base.append(time.perf_counter() - s)
    lat = np.array(latencies) * 1000
    rows = [["serve, %d clients" % args.clients, len(latencies), len(errors), f"{np.percentile(lat, 50):.0f}",
             f"{np.percentile(lat, 95):.0f}", f"{len(latencies) / wall:.2f}"],
            ["analyze() in process, 1 at a time", len(base), 0, f"{1000 * np.median(base):.0f}",
             f"{1000 * np.percentile(base, 95):.0f}", f"{len(base) / sum(base):.2f}"]]
    print(f"Machine: {machine()}")
    print(f"serve started (model and detector loaded) in {started:.1f} s; {len(latencies) + len(errors)} requests "
          f"of {args.requests} sent in {wall:.1f} s")
    print(table(["run", "answered", "errors", "p50 ms", "p95 ms", "requests/s"], rows))
    if errors:
        print("errors:", errors[:3])


if __name__ == "__main__":
    main()
