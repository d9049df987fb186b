"""Turn a few images of a COCO dataset (its human labels) into a labelling run, to review in `grounded serve`.

    python examples/serve_review_coco.py ../shared/data/car_parts/train/annotations.json car_parts_run --images 6
    grounded serve --run car_parts_run/run            # open http://127.0.0.1:8000 -> Review
    python examples/serve_review_coco.py ... --screenshot docs/serve_review.png   # + a headless-Chromium picture
    python examples/serve_review_coco.py ... --fix-screenshot docs/review_fix.png # a mask being fixed by clicks

The chosen images are copied to ``OUT/images/`` (the run's images root) and their COCO annotations are written
as the run's records (``OUT/run/records/``), with no confidence (they are labels, not predictions); the run's
``model`` says where they came from. Every detection on the page is then a person's label, so the picture shows
what the review page does with real data, not what a model found.

``--fix-screenshot``: the first image's largest mask is made to leak 12 px past its object (a teacher's typical
mistake, written into its record), the server answers clicks with the oracle segmenter of
grounded/testing/oracle.py (it answers from the same COCO labels: no SAM weights are needed), and headless
Chromium selects that object, presses ``f`` (fix) and clicks where the NoC protocol says, twice; the picture is
taken mid-fix, the clicks and the draft mask on the photo.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from grounded.formats.coco import CocoDataset
from grounded.io.detections_json import detections_to_json
from grounded.label.manifest import build_manifest, start_run
from grounded.label.records import read_record, write_record
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
        write_record(run, detections_to_json(detections, load_image(path).shape[:2], Path(path).name))
    print(f"{count} images with their COCO labels ({len(dataset.classes)} classes) -> run {run}")
    return run


def _browser(run: Path, engine=None, size: str = "1280,760"):
    """(driver, url, server): a server over ``run`` on a free 127.0.0.1 port and headless Chromium."""
    from grounded.serve.app import create_app
    from grounded.serve.runs import RunView
    from grounded.testing.browser import chromium, serve_in_thread

    url, server = serve_in_thread(create_app(engine, RunView(run)))
    return chromium(size), url, server


def _open(driver, url: str, image: str | None):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    if image:
        driver.find_element("xpath", f"//ul[@id='rv-images']/li[span[@class='file' and text()='{image}']]").click()
        wait.until(lambda d: d.find_element("id", "rv-name").text == image)
    wait.until(lambda d: int(d.find_element("id", "rv-canvas").get_attribute("data-drawn") or 0) > 0)
    return wait


def screenshot(run: Path, png: Path, image: str | None = None) -> None:
    """Open the Review tab of a server over ``run`` in headless Chromium and save the page as ``png``."""
    driver, url, server = _browser(run)
    try:
        _open(driver, url, image)
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
        server.should_exit = True
    print(f"screenshot {png}: {png.stat().st_size / 1024:.0f} kB")


def fix_screenshot(run: Path, png: Path, leak: int = 12) -> None:
    """A mask being fixed by clicks on the first image, answered by the oracle segmenter (see the module docstring)."""
    import numpy as np
    from scipy import ndimage

    from grounded.serve.engine import Engine
    from grounded.testing.browser import click_image
    from grounded.testing.oracle import ClicksOnlyPredictor, OracleSegmenter, next_click, pixel_key
    from grounded.utils.masks import mask_to_rle, rle_to_mask

    root = Path(run).parent / "images"
    image = sorted(p.name for p in root.iterdir())[0]
    record = read_record(run, image)
    masks = [rle_to_mask(d["mask"]) for d in record["detections"]]
    index = int(np.argmax([m.sum() for m in masks]))
    truth = masks[index]
    leaking = ndimage.binary_dilation(truth, iterations=leak)
    ys, xs = np.nonzero(leaking)
    record["detections"][index].update(mask=mask_to_rle(leaking), area=int(leaking.sum()),
                                       bbox_xyxy=[float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
    write_record(run, record)
    oracle = OracleSegmenter({pixel_key(load_image(root / image)): masks})
    engine = Engine(lambda: ClicksOnlyPredictor(oracle), {"model": "oracle segmenter (answers from the COCO labels)"})
    driver, url, server = _browser(run, engine, "1400,900")
    try:
        wait = _open(driver, url, image)
        driver.execute_script(f"rv.selected = 'd:{index}'; renderReview();")
        body = driver.find_element("tag name", "body")
        body.send_keys("f")  # fix the selected object, with the clicks tool
        current = leaking
        for n in range(2):
            (x, y), label = next_click(truth, current)
            click_image(driver, x, y, background=not label)
            wait.until(lambda d, n=n: int(d.find_element("id", "rv-canvas").get_attribute("data-answers") or 0) > n)
            current = np.array(driver.execute_script("return Array.from(rv.draft.mask);"), dtype=bool).reshape(truth.shape)
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
        server.should_exit = True
    print(f"screenshot {png}: {png.stat().st_size / 1024:.0f} kB (fixing object {index} of {image})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", help="COCO annotations JSON (images found beside it, as CocoDataset does)")
    parser.add_argument("out", type=Path, help="folder for images/ and run/ (replaced)")
    parser.add_argument("--images", type=int, default=6, help="how many images (default %(default)s)")
    parser.add_argument("--first", type=int, default=0, help="index of the first image (default %(default)s)")
    parser.add_argument("--screenshot", type=Path, default=None, help="also save the Review page as this PNG")
    parser.add_argument("--show", default=None, help="image to open for the screenshot (default: the first)")
    parser.add_argument("--fix-screenshot", type=Path, default=None,
                        help="also save a mask of the first image being fixed by clicks (oracle segmenter) as this PNG")
    args = parser.parse_args()
    run = import_coco(args.annotations, args.out, args.images, args.first)
    if args.screenshot:
        screenshot(run, args.screenshot, args.show)
    if args.fix_screenshot:
        fix_screenshot(run, args.fix_screenshot)


if __name__ == "__main__":
    main()
