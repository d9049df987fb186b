"""The page in a real headless Chromium (selenium) against a live `grounded serve` with the tiny models.

Segment tab, with every role of model: tiny Grounding DINO + SAM, tiny OWLv2 + SAM, tiny SAM 3 (one server
each): the page offers only the options the models honour, then upload a photo, type a prompt, wait for the
overlay and the detection list. Review tab: reject one detection, relabel another, mark the image reviewed;
then `grounded export` lacks / moves them.
Screenshots go to the test's tmp folder. Skips when Chromium, chromedriver or selenium is absent
(`apt-get install chromium chromium-driver`, `pip install selenium`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import CLASSES, REPO, free_port, make_run, review_target

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _skip_reason() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) or shutil.which(Path(path).name)):
            return f"{path} not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install selenium)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _serve(folder: Path, *args: str):
    """A live `grounded serve ARGS` subprocess on a free 127.0.0.1 port; yields its url (a generator fixture body)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "grounded.cli", "serve", "--port", str(port), "--offline", *args]
    log_path = folder / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/v1/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("grounded serve did not start:\n" + log_path.read_text())
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dirs):
    """`grounded serve --run RUN` with tiny Grounding DINO + SAM: (url, run folder)."""
    run = make_run(tmp_path_factory.mktemp("browser"))
    detector, segmenter = tiny_model_dirs
    for url in _serve(run.parent, "--run", str(run), "--detector", str(detector), "--segmenter", str(segmenter),
                      "--box-threshold", "0.2", "--text-threshold", "0"):
        yield url, run


# role -> (whether its models take a text threshold, the backend class that refuses it)
ROLES = {"grounding-dino+sam": (True, ""), "owlv2+sam": (False, "Owlv2Detector"),
         "sam3": (False, "Sam3ConceptSegmenter")}


@pytest.fixture(scope="module", params=list(ROLES))
def role_server(request, tmp_path_factory, tiny_model_dirs, clip_vocab):
    """(role, url) of a live server for each role of model; Grounding DINO + SAM is the `server` above."""
    role = request.param
    if role == "grounding-dino+sam":
        yield role, request.getfixturevalue("server")[0]
        return
    folder = tmp_path_factory.mktemp(role)
    loose = ["--box-threshold", "0", "--max-detections", "5"]  # random weights: keep a few boxes
    if role == "owlv2+sam":
        args = ["--detector", str(request.getfixturevalue("tiny_owlv2_dir")), "--segmenter", str(tiny_model_dirs[1])]
    else:
        pytest.importorskip("torchvision", reason="SAM 3's processor needs torchvision (the backends extra)")
        from grounded.testing.tiny_segmenters import build_tiny_sam3

        args = ["--model", str(build_tiny_sam3(folder / "sam3", clip_vocab))]
    for url in _serve(folder, *args, *loose):
        yield role, url


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=90, what="condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d), message=what)


def _open(driver, url):
    driver.get(url)
    _wait(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1", 30, "page ready")


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory, photo_path) -> Path:
    """The test photo at 600 px on its long side (OWLv2's image processor takes ~20 s on the 1800x1200 one)."""
    from PIL import Image

    image = Image.open(photo_path).convert("RGB")
    image.thumbnail((600, 600))
    path = tmp_path_factory.mktemp("small_photo") / "photo.jpg"
    image.save(path, quality=90)
    return path


def test_segment_tab_uploads_a_photo_and_draws_detections(role_server, browser, small_photo, tmp_path):
    from PIL import Image

    role, url = role_server
    takes_text, refuser = ROLES[role]
    _open(browser, url + "/?tab=segment")
    assert browser.title == "grounded"
    # only the options these models honour are offered; the note says why the others are not
    assert bool(browser.find_elements("id", "seg-text")) == takes_text
    assert browser.find_elements("id", "seg-box") and browser.find_elements("id", "seg-nms")
    note = browser.find_element("id", "seg-refused")
    assert (note.is_displayed() and refuser in note.text) if refuser else not note.is_displayed()

    browser.find_element("id", "seg-file").send_keys(str(small_photo))
    browser.find_element("id", "seg-prompt").send_keys("car . wheel")
    browser.find_element("id", "seg-run").click()
    items = "#seg-list li:not([hidden])"
    _wait(browser, lambda d: int(d.find_element("id", "seg-canvas").get_attribute("data-drawn") or 0) > 0
          and d.find_elements("css selector", items), what="overlay and detection list")
    shown = len(browser.find_elements("css selector", items))
    canvas = browser.find_element("id", "seg-canvas")
    assert (int(canvas.get_attribute("width")), int(canvas.get_attribute("height"))) == Image.open(small_photo).size
    assert "detection(s)" in browser.find_element("id", "seg-message").text
    assert "load on first use" not in browser.find_element("id", "status").text  # the page asked again
    browser.save_screenshot(str(tmp_path / f"segment_{role}.png"))

    # a stricter box threshold filters on the page, without asking the server again
    browser.execute_script("const s = document.getElementById('seg-box'); s.value = 1;"
                           "s.dispatchEvent(new Event('input'));")
    assert "filtered here" in browser.find_element("id", "seg-message").text
    assert len(browser.find_elements("css selector", items)) < shown
    browser.find_element("id", "seg-list")  # still there


def _review_file(run: Path, rel: str) -> dict:
    path = run / "reviews" / f"{rel}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _decision(run: Path, rel: str, index: int) -> dict:
    """A saved decision without its who / when stamps."""
    found = _review_file(run, rel).get("detections", {}).get(str(index), {})
    return {k: v for k, v in found.items() if k not in ("by", "at")}


def test_review_tab_rejects_and_relabels_and_export_applies_it(server, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    url, run = server
    rel, record = review_target(run)
    _open(browser, url + "/")
    assert not browser.find_element("id", "panel-review").get_attribute("hidden")
    entry = browser.find_element("xpath", f"//ul[@id='rv-images']/li[span[@class='file' and text()='{rel}']]")
    entry.click()
    _wait(browser, lambda d: browser.find_element("id", "rv-name").text == rel
          and len(d.find_elements("css selector", "#rv-list li")) == len(record["detections"]), 30, "detections listed")

    browser.find_element("css selector", "#rv-list li[data-index='0'] button.reject").click()
    _wait(browser, lambda d: _decision(run, rel, 0) == {"status": "rejected"}, 30, "reject saved")
    new_class = (record["detections"][1]["class_id"] + 1) % len(CLASSES)
    Select(browser.find_element("css selector", "#rv-list li[data-index='1'] select.relabel")).select_by_value(str(new_class))
    _wait(browser, lambda d: _decision(run, rel, 1).get("class_id") == new_class,
          30, "relabel saved")
    browser.find_element("tag name", "body").send_keys(Keys.ENTER)  # keyboard: mark reviewed, go to the next image
    _wait(browser, lambda d: _review_file(run, rel).get("reviewed") is True, 30, "marked reviewed")
    _wait(browser, lambda d: browser.find_element("id", "rv-name").text != rel, 30, "moved to the next image")
    browser.save_screenshot(str(tmp_path / "review.png"))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "grounded.cli", "export", str(run), "--format", "coco"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    annotations = []
    for split in ("train", "val"):
        coco = json.loads((run / "coco" / f"{split}.json").read_text())
        ids = [im["id"] for im in coco["images"] if im["file_name"] == rel]
        annotations += [a for a in coco["annotations"] if ids and a["image_id"] == ids[0]]
    assert len(annotations) == len(record["detections"]) - 1  # the rejected one is gone
    x0, y0, x1, y1 = record["detections"][1]["bbox_xyxy"]
    moved = [a for a in annotations if abs(a["bbox"][0] - x0) < 0.01 and abs(a["bbox"][1] - y0) < 0.01
             and abs(a["bbox"][2] - (x1 - x0)) < 0.01]
    assert [a["category_id"] for a in moved] == [new_class + 1]  # relabelled (COCO category = class + 1)


def test_page_decodes_coco_rle_as_pycocotools_does(server, browser):
    import numpy as np

    from grounded.utils.masks import mask_to_rle

    url, _ = server
    _open(browser, url + "/?tab=segment")
    rng = np.random.default_rng(1)
    masks = [rng.random((37, 53)) < 0.3, np.zeros((5, 7), bool), np.ones((64, 3), bool)]
    big = np.zeros((300, 410), bool)
    big[20:290, 5:400] = True  # long runs: counts of several characters
    for mask in [*masks, big]:
        decoded = browser.execute_script("return Array.from(decodeMask(arguments[0]));", mask_to_rle(mask))
        assert np.array_equal(np.asarray(decoded, dtype=bool).reshape(mask.shape), mask)


def _draft_pixels(driver) -> int:
    return driver.execute_script("return rv.draft ? rv.draft.mask.reduce((a, b) => a + b, 0) : -1;")


def _open_image(driver, rel: str, count: int) -> None:
    driver.find_element("xpath", f"//ul[@id='rv-images']/li[span[@class='file' and text()='{rel}']]").click()
    _wait(driver, lambda d: d.find_element("id", "rv-name").text == rel
          and len(d.find_elements("css selector", "#rv-list li")) == count, 30, f"{rel} open")


def test_review_tab_adds_an_object_by_clicks_with_eraser_undo_and_a_409(server, browser, tmp_path):
    """Click on the canvas -> a mask is drawn -> eraser, undo -> choose a class -> saved -> reload -> still there ->
    `grounded export` contains it; then another client saves first and the page's next save gets a 409."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    from grounded.testing.browser import click_image

    url, run = server
    skip, _ = review_target(run)
    rel, record = next((r, rec) for r, rec in _labelled(run) if r != skip)
    count = len(record["detections"])
    _open(browser, url + "/")
    _open_image(browser, rel, count)
    body = browser.find_element("tag name", "body")
    body.send_keys("c")  # the clicks tool
    Select(browser.find_element("id", "rv-new-class")).select_by_value("2")
    click_image(browser, 20, 20)
    _wait(browser, lambda d: int(d.find_element("id", "rv-canvas").get_attribute("data-answers") or 0) >= 1, 60,
          "a mask for the click")
    assert browser.find_element("id", "rv-draft").is_displayed() and _draft_pixels(browser) > 0
    drawn = _draft_pixels(browser)

    body.send_keys("e")  # the eraser, dragged across the middle of the image
    canvas = browser.find_element("id", "rv-canvas")
    ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(120, 0).release().perform()
    _wait(browser, lambda d: int(d.find_element("id", "rv-canvas").get_attribute("data-strokes") or 0) >= 1, 30, "stroke")
    erased = _draft_pixels(browser)
    assert 0 <= erased < drawn
    body.send_keys("z")  # undo the stroke
    assert _draft_pixels(browser) == drawn
    body.send_keys("y")  # redo it
    assert _draft_pixels(browser) == erased
    browser.save_screenshot(str(tmp_path / "review_edit.png"))
    body.send_keys("s")
    _wait(browser, lambda d: len(_review_file(run, rel).get("added", [])) == 1, 30, "object saved")
    added = _review_file(run, rel)["added"][0]
    assert (added["class_id"], added["source"], added["status"]) == (2, "clicks", "accepted")

    browser.refresh()
    _wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1", 30, "reload")
    _open_image(browser, rel, count + 1)  # still there after a reload
    assert browser.find_elements("css selector", "#rv-list li[data-key^='a:']")

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "grounded.cli", "export", str(run), "--format", "coco"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "1 added" in done.stdout, done.stderr
    annotations = []
    for split in ("train", "val"):
        coco = json.loads((run / "coco" / f"{split}.json").read_text())
        ids = [im["id"] for im in coco["images"] if im["file_name"] == rel]
        annotations += [a for a in coco["annotations"] if ids and a["image_id"] == ids[0]]
    assert len(annotations) == count + 1 and [a["area"] for a in annotations].count(erased) >= 1
    assert any(a["category_id"] == 3 and a["area"] == erased for a in annotations)

    # another reviewer saves this image first: the page's next save is refused (409) and shows their version
    current = _review_file(run, rel)
    other = {**current, "by": "someone else", "reviewed": True}
    request = urllib.request.Request(f"{url}/v1/run/review?file={rel}", data=json.dumps(other).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
    assert json.loads(urllib.request.urlopen(request, timeout=30).read())["revision"] == current["revision"] + 1
    browser.find_element("css selector", "#rv-list li[data-index='0'] button.reject").click()
    _wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-conflicts") == "1", 30, "409")
    assert "changed by someone else" in browser.find_element("id", "rv-message").text
    assert browser.find_element("id", "rv-reviewed").is_selected()  # their version, shown
    assert _review_file(run, rel)["by"] == "someone else" and "0" not in _review_file(run, rel)["detections"]


def _labelled(run: Path):
    from grounded.label.manifest import read_manifest
    from grounded.label.records import image_relatives, read_record

    for rel in image_relatives(Path(read_manifest(run)["images_root"]), run):
        record = read_record(run, rel)
        if record and "error" not in record and record["detections"]:
            yield rel, record


def test_find_more_adds_candidates_and_the_queue_orders_the_images(server, browser):
    """Find more: the teacher with another phrase -> candidates -> accept one; the review queue as a filter."""
    from selenium.webdriver.support.ui import Select

    from grounded.label.queue import run_review_queue

    url, run = server
    rel, record = list(_labelled(run))[-1]
    _open(browser, url + "/")
    _open_image(browser, rel, len(record["detections"]) + len(_review_file(run, rel).get("added", [])))
    before = len(_review_file(run, rel).get("added", []))
    browser.find_element("id", "rv-find-phrase").send_keys("a side mirror")
    browser.find_element("id", "rv-find").click()
    _wait(browser, lambda d: len(_review_file(run, rel).get("added", [])) > before, 90, "candidates saved")
    candidates = [a for a in _review_file(run, rel)["added"] if a["source"] == "find_more"]
    assert candidates and all(a["status"] == "candidate" and a["phrase"] for a in candidates)
    first = candidates[0]["id"]
    _wait(browser, lambda d: d.find_elements("css selector", f"#rv-list li[data-key='a:{first}'].candidate"), 30, "listed")
    browser.find_element("css selector", f"#rv-list li[data-key='a:{first}'] button.accept").click()
    _wait(browser, lambda d: next(a for a in _review_file(run, rel)["added"] if a["id"] == first)["status"] == "accepted",
          30, "candidate accepted")

    Select(browser.find_element("id", "rv-filter")).select_by_value("queue")
    expected = [q.file for q in run_review_queue(run, None)]
    _wait(browser, lambda d: [li.text.split("\n")[0] for li in d.find_elements("css selector", "#rv-images .file")]
          == expected, 30, "the queue's order")


def test_a_server_without_a_segmenter_turns_the_click_tools_off(browser, tmp_path):
    from grounded.serve.app import create_app
    from grounded.serve.runs import RunView
    from grounded.testing.browser import serve_in_thread

    url, server = serve_in_thread(create_app(None, RunView(make_run(tmp_path))))  # review only: no models
    try:
        _open(browser, url)
        note = browser.find_element("id", "rv-clicks-note")
        _wait(browser, lambda d: note.is_displayed(), 30, "the note")
        assert "clicks need a segmenter" in note.text
        assert not browser.find_element("css selector", "#rv-tools button[data-tool=click]").is_enabled()
        assert browser.find_element("css selector", "#rv-tools button[data-tool=brush]").is_enabled()
    finally:
        server.should_exit = True
