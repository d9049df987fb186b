"""Drive the page in headless Chromium against an app served in this process (examples, benchmarks, tests).

Needs selenium and Debian's ``chromium`` + ``chromium-driver`` (see the README's test setup); nothing here is
imported by grounded itself.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def serve_in_thread(app: Any) -> tuple[str, Any]:
    """(url, uvicorn server) of ``app`` on a free 127.0.0.1 port, in a daemon thread; ``server.should_exit = True``
    stops it."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}/", server


def chromium(size: str = "1400,900") -> Any:
    """A headless Chromium selenium driver of window ``size`` ("W,H")."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={size}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def click_image(driver: Any, x: float, y: float, background: bool = False) -> None:
    """A real mouse click on pixel (x, y) of the image on the Review canvas; ``background``: a right-click."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "rv-canvas")
    cx, cy = driver.execute_script("return imageToClient(arguments[0], arguments[1]);", x, y)
    mx, my = driver.execute_script("const r = arguments[0].getBoundingClientRect(); "
                                   "return [r.left + r.width / 2, r.top + r.height / 2];", canvas)
    chain = ActionChains(driver).move_to_element_with_offset(canvas, int(cx - mx), int(cy - my))
    (chain.context_click() if background else chain.click()).perform()
