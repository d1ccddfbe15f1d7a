"""``python -m lightning_fer serve`` (issue 37): the JSON API on real photos, a real short video and
each bad upload; one shared model behind a bounded queue; uploads removed after the answer; and
the page in a real headless Chromium where one is installed."""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import REPO
from PIL import Image
from skimage import data as skdata

pytest.importorskip("fastapi", reason='serve needs its extra: pip install "lightning-fer[serve]"')
pytest.importorskip("httpx", reason="the API tests drive the app through Starlette's TestClient (httpx)")
from fastapi.testclient import TestClient  # noqa: E402

import lightning_fer  # noqa: E402
from lightning_fer import zoo  # noqa: E402
from lightning_fer.serve import ServeLimits, create_app  # noqa: E402

pytestmark = pytest.mark.skipif("fer2013" not in zoo.names(), reason="the shipped fer2013 model is not installed")


@pytest.fixture(scope="module")
def predictor():
    from lightning_fer.predict.video import VideoOptions

    return lightning_fer.Predictor("fer2013", video=VideoOptions(fps=5))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("uploads")
    cv2.imwrite(str(d / "astronaut.jpg"), skdata.astronaut()[:, :, ::-1])
    good = (d / "astronaut.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[:3000])
    (d / "text.jpg").write_text("not a photo")
    Image.new("1", (14000, 14000)).save(d / "bomb.png")
    face = cv2.resize(skdata.astronaut()[20:230, 120:330, ::-1], (150, 150), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(d / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (480, 270))
    for i in range(10):
        img = np.full((270, 480, 3), 100, np.uint8)
        img[40:190, 40 + 4 * i:190 + 4 * i] = face
        writer.write(img)
    writer.release()
    (d / "empty.mp4").write_bytes(b"")
    header_only = cv2.VideoWriter(str(d / "noframes.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (480, 270))
    header_only.release()  # a container with no frame in it
    if not (d / "noframes.mp4").is_file() or not (d / "noframes.mp4").stat().st_size:
        (d / "noframes.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")  # a header alone
    return {p.name: p for p in d.iterdir()}


def _post(client, path: Path, content_type: str):
    return client.post("/predict", files={"file": (path.name, path.read_bytes(), content_type)})


def test_health_models_docs_and_the_page(predictor):
    client = TestClient(create_app(predictor, model_name="fer2013"))
    assert client.get("/health").json()["status"] == "ok"
    names = [m["name"] for m in client.get("/models").json()["models"]]
    assert names == zoo.names()
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text and "fer2013" in page.text


def test_a_photo_gives_analyze_s_faces_and_predict_s_rows(predictor, files, tmp_path, monkeypatch):
    client = TestClient(create_app(predictor, model_name="fer2013"))
    answer = _post(client, files["astronaut.jpg"], "image/jpeg").json()
    (face,) = answer["faces"]
    (mine,) = lightning_fer.analyze(str(files["astronaut.jpg"]))
    assert face["label"] == mine["label"] == "happy"
    assert face["probabilities"] == pytest.approx(mine["probabilities"], abs=1e-6)
    # the CSV is the one predict writes for the same file
    from lightning_fer.cli import main

    monkeypatch.chdir(tmp_path)
    main(["predict", "--pretrained", "fer2013", "--data.predict.path", str(files["astronaut.jpg"]),
          "--data.predict.output", "cli.csv", "--data.predict.runtime", "eager"])
    cli = list(csv.DictReader(open("cli.csv", newline="")))
    served = list(csv.DictReader(io.StringIO(answer["csv"])))
    assert list(served[0]) == list(cli[0])
    for key in cli[0]:
        if key.startswith("p_"):
            assert float(served[0][key]) == pytest.approx(float(cli[0][key]), abs=1e-3)


def test_a_short_video_gives_tracks(predictor, files):
    client = TestClient(create_app(predictor, model_name="fer2013"))
    answer = _post(client, files["clip.mp4"], "video/mp4").json()
    assert answer["video"] and len(answer["faces"]) >= 2
    assert {f["track"] for f in answer["faces"]} == {0} and all("time" in f for f in answer["faces"])


@pytest.mark.parametrize(("name", "content_type", "status", "says"), [
    ("text.jpg", "image/jpeg", 422, "not an image"),
    ("truncated.jpg", "image/jpeg", 422, "cannot decode"),
    ("bomb.png", "image/png", 413, "decompression bomb"),
    ("empty.mp4", "video/mp4", 422, "empty upload"),
    ("noframes.mp4", "video/mp4", 422, "video"),
    ("astronaut.jpg", "text/plain", 415, "content type 'text/plain' is not accepted"),
])
def test_each_bad_upload_is_a_4xx_with_a_one_line_reason(predictor, files, name, content_type, status, says):
    client = TestClient(create_app(predictor, model_name="fer2013"))
    r = _post(client, files[name], content_type)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert says in detail and "\n" not in detail and "Traceback" not in r.text


def test_a_config_of_an_ensemble_is_served(files, tmp_path):
    """serve --config: a model built as predict builds it (here a soft vote of two shipped members)."""
    from lightning_fer.serve import make_predictor, parser

    cfg = tmp_path / "ensemble.yaml"
    cfg.write_text("""model:
  class_path: lightning_fer.EnsembleModule
  init_args:
    members: ["pretrained:fer2013", "pretrained:fer2013"]
    strategy: {class_path: lightning_fer.ensemble.SoftVote}
    views: [face]
    flip: true
data:
  class_path: lightning_fer.FERDataModule
  init_args: {source: folder, root: nowhere, image_size: 48, channels: 1}
""")
    predictor, name = make_predictor(parser().parse_args(["--config", str(cfg)]))
    client = TestClient(create_app(predictor, model_name=name))
    (face,) = _post(client, files["astronaut.jpg"], "image/jpeg").json()["faces"]
    assert name == "ensemble" and face["label"] == "happy"


def test_limits_are_configurable(predictor, files):
    client = TestClient(create_app(predictor, ServeLimits(max_upload_mb=0.01, max_pixels=10_000, max_video_seconds=0.5),
                                   "fer2013"))
    assert _post(client, files["astronaut.jpg"], "image/jpeg").status_code == 413  # 0.01 MB
    client = TestClient(create_app(predictor, ServeLimits(max_pixels=10_000, max_video_seconds=0.5), "fer2013"))
    r = _post(client, files["astronaut.jpg"], "image/jpeg")
    assert r.status_code == 413 and "over the limit of 10,000" in r.json()["detail"]
    r = _post(client, files["clip.mp4"], "video/mp4")
    assert r.status_code == 413 and "lasts 1.0 s" in r.json()["detail"]


def test_a_full_queue_answers_503_and_uploads_leave_no_file(predictor, files, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    app = create_app(predictor, ServeLimits(max_queue=1), "fer2013")
    client = TestClient(app)
    service = app.state.service
    first: dict = {}
    with service.lock:  # the model is busy: the first request waits in the queue
        t = threading.Thread(target=lambda: first.update(r=_post(client, files["astronaut.jpg"], "image/jpeg")))
        t.start()
        deadline = time.time() + 30
        while service.waiting < 1 and time.time() < deadline:
            time.sleep(0.05)
        busy = _post(client, files["astronaut.jpg"], "image/jpeg")
        assert busy.status_code == 503 and "busy" in busy.json()["detail"]
    t.join(60)
    assert first["r"].status_code == 200 and first["r"].json()["faces"][0]["label"] == "happy"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("lightning_fer_serve_")]  # removed after the answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser():
    selenium = pytest.importorskip("selenium", reason="the page test drives a browser through Selenium")
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("no Chromium and chromedriver here (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        opts.add_argument(a)
    del selenium
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_the_page_in_a_real_browser_labels_the_astronaut_happy(files, tmp_path):
    browser = _browser()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "lightning_fer", "serve", "--pretrained", "fer2013", "--port", str(port)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "LIGHTNING_FER_HOME": str(tmp_path / "home")})
    try:
        import httpx

        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        browser.get(f"http://127.0.0.1:{port}/")
        browser.find_element(By.ID, "files").send_keys(str(files["astronaut.jpg"]))
        WebDriverWait(browser, 60).until(ec.text_to_be_present_in_element((By.ID, "results"), "happy"))
        assert browser.find_elements(By.CSS_SELECTOR, "#results canvas")  # the photo with its box
        assert "Download the rows" in browser.find_element(By.ID, "results").text
        shot = os.environ.get("LIGHTNING_FER_SCREENSHOT")
        if shot:  # benchmarks/serve_load.py --screenshot: the README's picture
            browser.save_screenshot(shot)
    finally:
        browser.quit()
        server.terminate()
        server.wait(20)
