"""The page at `/` in a real browser: headless Chromium driven by Selenium (chromium + chromium-driver).

Uploading an image and drawing one must both show the student's and the teacher's top classes and
latency, side by side; the student's top class must be what `/predict` answers for the same image.
"""

from __future__ import annotations

import json

import httpx
import pytest
from serve_helpers import CHROMEDRIVER, CHROMIUM, ThreadedServer, digit_png, headless_chromium, tiny_run

from distil.serve import create_app, load_models

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
)


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium("--window-size=1200,900")
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
    assert "compute" in browser.find_element(By.CSS_SELECTOR, ".model-result .latency").text  # the forward pass apart from decode and queue
    assert browser.find_element(By.ID, "sent").get_attribute("src").startswith("blob:")  # the uploaded image is shown
    card = {r.get_attribute("data-model"): [c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in browser.find_elements(By.CSS_SELECTOR, "#model-card tbody tr")}
    summary = {m["name"]: m for m in json.loads((tiny_run() / "summary.json").read_text())["models"]}
    assert card["student"][1] == "student_kd" and card["student"][2] == f"{100 * summary['student_kd']['accuracy']:.2f} %"
    assert card["teacher"][1] == "teacher" and card["teacher"][3] == f"{summary['teacher']['params']:,}"

    browser.find_element(By.ID, "clear").click()
    assert not browser.find_elements(By.CSS_SELECTOR, ".model-result")
    canvas = browser.find_element(By.ID, "canvas")
    ActionChains(browser).move_to_element_with_offset(canvas, -40, -80).click_and_hold().move_by_offset(60, 40).move_by_offset(
        0, 100
    ).release().perform()
    drawn = results(browser)
    assert set(drawn) == {"student", "teacher"} and all(len(v) == 5 for v in drawn.values())
    assert browser.find_element(By.ID, "error").text == ""


@pytest.fixture(scope="module")
def text_server():
    from serve_helpers import tiny_text_run

    with ThreadedServer(create_app(load_models(tiny_text_run(), "torch"))) as s:
        yield s


def test_text_page_shows_student_and_teacher_side_by_side(browser, text_server):
    """A text run's page: a text box instead of the canvas; both models' top classes and latencies."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    sentence = "the story was wonderful and the music superb"
    expected = httpx.post(text_server.url + "/predict", json={"text": sentence}).json()["predictions"][0][0]["class"]
    browser.get(text_server.url + "/")
    assert not browser.find_element(By.ID, "canvas").is_displayed()
    box = browser.find_element(By.ID, "text")
    box.send_keys(sentence)
    browser.find_element(By.ID, "send-text").click()
    shown = results(browser)
    assert set(shown) == {"student", "teacher"} and all(len(v) == 2 for v in shown.values())  # two classes: neg, pos
    assert shown["student"][0] == expected == "pos"
    latencies = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".model-result .latency")]
    assert all("model" in t and "tokenizer" in t and "ms" in t for t in latencies)

    box.clear()
    box.send_keys("")  # an empty sentence: the server's error is shown, the page keeps working
    browser.find_element(By.ID, "send-text").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 20).until(lambda d: "empty" in d.find_element(By.ID, "error").text)
    box.send_keys("the plot was dull", Keys.CONTROL, Keys.ENTER)
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "error").text == "")
    assert results(browser)["student"][0] == "neg"


def test_tagger_page_shows_each_word_with_its_tag(browser):
    """A tagger's page: the sentence, each word with its tag under it, for student and teacher side by side."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from serve_helpers import tiny_tagger_run

    sentence = "the old dog saw a cat quickly."
    with ThreadedServer(create_app(load_models(tiny_tagger_run(), "torch"))) as server:
        expected = {
            name: [w["tag"] for w in httpx.post(server.url + "/predict", json={"text": sentence}, params={"model": name}).json()["tags"][0]]
            for name in ("student", "teacher")
        }
        browser.get(server.url + "/")
        assert "tags words" in browser.find_element(By.ID, "models-line").text
        browser.find_element(By.ID, "text").send_keys(sentence)
        browser.find_element(By.ID, "send-text").click()
        WebDriverWait(browser, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".model-result .latency")) == 2)
        for box in browser.find_elements(By.CSS_SELECTOR, ".model-result"):
            tokens = box.find_elements(By.CSS_SELECTOR, ".tagged .token")
            words = [t.find_element(By.CLASS_NAME, "word").text for t in tokens]
            tags = [t.find_element(By.CLASS_NAME, "tag").text for t in tokens]
            assert words == ["the", "old", "dog", "saw", "a", "cat", "quickly", "."]
            assert tags == expected[box.get_attribute("data-model")]
            below = tokens[0].find_element(By.CLASS_NAME, "tag").location["y"] > tokens[0].find_element(By.CLASS_NAME, "word").location["y"]
            assert below  # the tag is under its word


def test_page_sends_a_correction_stored_beside_the_input(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from distil.data.sources.transfer import load_feedback
    from distil.serve import feedback_writer

    models = load_models(tiny_run(), "torch")
    writer = feedback_writer(models[0], tmp_path / "fb")
    png, _ = digit_png(7)
    path = tmp_path / "digit.png"
    path.write_bytes(png)
    with ThreadedServer(create_app(models, feedback=writer)) as s:
        browser.get(s.url + "/")
        browser.find_element(By.ID, "file").send_keys(str(path))
        results(browser)
        assert browser.find_element(By.ID, "correction").is_displayed()
        Select(browser.find_element(By.ID, "correct-label")).select_by_visible_text("7")
        browser.find_element(By.ID, "send-correction").click()
        WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "correction-status").text == "stored: 7")
    feedback = load_feedback(tmp_path / "fb")
    assert len(feedback) == 1 and feedback.corrected.tolist() == [7]
