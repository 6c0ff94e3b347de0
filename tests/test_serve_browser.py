"""The page at `/` in a real browser: headless Chromium driven by Selenium (chromium + chromium-driver).

Uploading an image and drawing one must both show the student's and the teacher's top classes and
latency, side by side; the student's top class must be what `/predict` answers for the same image.
"""

from __future__ import annotations

import shutil

import httpx
import pytest
from serve_helpers import ThreadedServer, digit_png, tiny_run

from distil.serve import create_app, load_models

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server():
    with ThreadedServer(create_app(load_models(tiny_run(), "torch"))) as s:
        yield s


def results(driver, timeout: float = 20.0) -> dict[str, list[str]]:
    """Wait for one result box per served model; model name -> its classes, best first."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".model-result .latency")) == 2)
    boxes = driver.find_elements(By.CSS_SELECTOR, ".model-result")
    return {
        b.get_attribute("data-model"): [
            r.find_elements(By.TAG_NAME, "td")[0].text for r in b.find_elements(By.CSS_SELECTOR, "tr.prediction")
        ]
        for b in boxes
    }


def test_page_upload_and_drawing_show_student_and_teacher(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    png, _ = digit_png(5)
    path = tmp_path / "digit.png"
    path.write_bytes(png)
    expected = httpx.post(server.url + "/predict", files={"file": ("d.png", png, "image/png")}).json()["predictions"][0][0]["class"]

    browser.get(server.url + "/")
    assert "teacher" in browser.find_element(By.ID, "models-line").text
    browser.find_element(By.ID, "file").send_keys(str(path))
    shown = results(browser)
    assert set(shown) == {"student", "teacher"} and all(len(v) == 5 for v in shown.values())
    assert shown["student"][0] == expected
    assert "ms" in browser.find_element(By.CSS_SELECTOR, ".model-result .latency").text

    browser.find_element(By.ID, "clear").click()
    assert not browser.find_elements(By.CSS_SELECTOR, ".model-result")
    canvas = browser.find_element(By.ID, "canvas")
    ActionChains(browser).move_to_element_with_offset(canvas, -40, -80).click_and_hold().move_by_offset(60, 40).move_by_offset(
        0, 100
    ).release().perform()
    drawn = results(browser)
    assert set(drawn) == {"student", "teacher"} and all(len(v) == 5 for v in drawn.values())
    assert browser.find_element(By.ID, "error").text == ""
