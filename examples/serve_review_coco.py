"""Turn a few images of a COCO dataset (its human labels) into a labelling run, to review in `grounded serve`.

    python examples/serve_review_coco.py ../shared/data/car_parts/train/annotations.json car_parts_run --images 6
    grounded serve --run car_parts_run/run            # open http://127.0.0.1:8000 -> Review
    python examples/serve_review_coco.py ... --screenshot docs/serve_review.png   # + a headless-Chromium picture

The chosen images are copied to ``OUT/images/`` (the run's images root) and their COCO annotations are written
as the run's records (``OUT/run/records/``), with no confidence (they are labels, not predictions); the run's
``model`` says where they came from. Every detection on the page is then a person's label, so the picture shows
what the review page does with real data, not what a model found.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time
from pathlib import Path

from grounded.formats.coco import CocoDataset
from grounded.label.manifest import build_manifest, start_run
from grounded.label.records import detections_to_record, write_record
from grounded.ontology import Ontology
from grounded.utils.images import load_image


def import_coco(annotations: str, out: Path, count: int, first: int = 0) -> Path:
    """Write a run at ``out/run`` whose records are the COCO labels of ``count`` images; return the run folder."""
    dataset = CocoDataset(annotations)
    root, run = out / "images", out / "run"
    shutil.rmtree(out, ignore_errors=True)
    root.mkdir(parents=True)
    source = {"source": "COCO annotations (human labels)", "annotations": Path(annotations).name}
    start_run(run, build_manifest(root, Ontology.from_classes(dataset.classes), source, {"train": 1.0}, 0))
    for index in range(first, first + count):
        path, detections = dataset[index]
        detections.confidence = None  # labels, not predictions: no score
        shutil.copyfile(path, root / Path(path).name)
        height, width = load_image(path).shape[:2]
        write_record(run, detections_to_record(Path(path).name, height, width, detections))
    print(f"{count} images with their COCO labels ({len(dataset.classes)} classes) -> run {run}")
    return run


def screenshot(run: Path, png: Path, image: str | None = None) -> None:
    """Open the Review tab of a server over ``run`` in headless Chromium and save the page as ``png``."""
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    from grounded.serve.app import create_app
    from grounded.serve.runs import RunView

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(None, RunView(run)), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,760"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
        if image:
            driver.find_element("xpath", f"//ul[@id='rv-images']/li[span[@class='file' and text()='{image}']]").click()
            wait.until(lambda d: d.find_element("id", "rv-name").text == image)
        wait.until(lambda d: int(d.find_element("id", "rv-canvas").get_attribute("data-drawn") or 0) > 0)
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
        server.should_exit = True
    print(f"screenshot {png}: {png.stat().st_size / 1024:.0f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", help="COCO annotations JSON (images found beside it, as CocoDataset does)")
    parser.add_argument("out", type=Path, help="folder for images/ and run/ (replaced)")
    parser.add_argument("--images", type=int, default=6, help="how many images (default %(default)s)")
    parser.add_argument("--first", type=int, default=0, help="index of the first image (default %(default)s)")
    parser.add_argument("--screenshot", type=Path, default=None, help="also save the Review page as this PNG")
    parser.add_argument("--show", default=None, help="image to open for the screenshot (default: the first)")
    args = parser.parse_args()
    run = import_coco(args.annotations, args.out, args.images, args.first)
    if args.screenshot:
        screenshot(run, args.screenshot, args.show)


if __name__ == "__main__":
    main()
