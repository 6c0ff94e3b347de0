"""Teachable mode through its HTTP API: two Fashion-MNIST classes taught with a few uploaded images; the
shipped teacher is the frozen backbone; the distilled student is served and predicts new images."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import ThreadedServer, tiny_run

from distil.data.idx import parse_idx, read_maybe_gzipped
from distil.data.sources.fashion_mnist import SYSTEM_DIR, TEST_IMAGES, TEST_LABELS, find_files, load_fashion_mnist
from distil.models import build_model
from distil.serve import create_app
from distil.serve.teachable import Teachable, TeachSettings
from distil.weights import load_weights

TEACHER = Path(__file__).resolve().parents[1] / "configs" / "fashion_mnist" / "teacher.safetensors"
MEAN, STD = (0.285925,), (0.352914,)  # the Fashion-MNIST training split's, as the teacher was trained with
TROUSER, BAG = 1, 8


@pytest.fixture(scope="module")
def images():
    """The Fashion-MNIST test images (1, 28, 28) uint8 and labels: only the two test files are read."""
    found = find_files(SYSTEM_DIR)
    if TEST_IMAGES not in found or TEST_LABELS not in found:
        return load_fashion_mnist(None).test_x, load_fashion_mnist(None).test_y  # elsewhere: the loader's own search
    images = parse_idx(read_maybe_gzipped(found[TEST_IMAGES]), "test images", ndim=3)
    return images[:, None], parse_idx(read_maybe_gzipped(found[TEST_LABELS]), "test labels", ndim=1)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8).reshape(28, 28), "L").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server():
    teacher = load_weights(build_model("cnn", input_shape=(1, 28, 28), num_classes=10, widths=[32, 64, 128], convs_per_stage=2), TEACHER)
    teach = Teachable(teacher, (1, 28, 28), MEAN, STD, TeachSettings(epochs=8, views=8))
    with ThreadedServer(create_app([], teachable=teach)) as s:  # no run served: the teachable model is the first
        yield s


def add(client, pixels, label):
    return client.post("/teach/examples", files={"file": ("x.png", png(pixels), "image/png")}, data={"label": label})


def wait(client, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while (status := client.get("/teach/status").json())["state"] == "training":
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    return status


def test_teach_two_fashion_classes_over_http_and_bad_input_is_4xx(server, images):
    x, y = images
    trousers, bags = x[y == TROUSER], x[y == BAG]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/", follow_redirects=False).headers["location"] == "/teach"  # nothing to serve yet: teach one
        early = c.post("/predict", files={"file": ("x.png", png(trousers[0]), "image/png")})
        assert early.status_code == 404 and "no model is served yet" in early.json()["error"]
        assert c.post("/teach/train").status_code == 422  # nothing to learn from yet
        assert add(c, trousers[0], "trouser").status_code == 409  # no classes named yet
        assert c.post("/teach/classes", json={"classes": ["only one"]}).status_code == 422
        assert c.post("/teach/classes", json={"classes": ["a", "a"]}).status_code == 422
        assert c.post("/teach/classes", content=b"{", headers={"content-type": "application/json"}).status_code == 400
        assert c.post("/teach/classes", json={"classes": ["trouser", "bag"]}).json() == {"classes": ["trouser", "bag"]}
        assert c.post("/teach/train").status_code == 422  # empty training set
        bad = c.post("/teach/examples", files={"file": ("x.png", b"not an image", "image/png")}, data={"label": "bag"})
        assert bad.status_code == 415 and "not an image" in bad.json()["error"]
        unknown = add(c, trousers[0], "shoe")
        assert unknown.status_code == 422 and "unknown class 'shoe'" in unknown.json()["error"]
        for pixels in trousers[:6]:
            counts = add(c, pixels, "trouser").json()["counts"]
        assert counts == {"trouser": 6, "bag": 0}
        missing = c.post("/teach/train")
        assert missing.status_code == 422 and "'bag' has no examples" in missing.json()["error"]
        add(c, bags[0], "bag")
        started = c.post("/teach/train")
        assert started.status_code == 202 and "'bag' has one example" in started.json()["warnings"][0]  # allowed, with a warning
        again = c.post("/teach/train")
        assert again.status_code == 409 and "running" in again.json()["error"]  # nothing lost: the first job goes on
        assert c.post("/teach/classes", json={"classes": ["x", "y"]}).status_code == 409
        first = wait(c)
        assert first["state"] == "ready" and first["version"] == "1", first
        for pixels in bags[1:6]:
            add(c, pixels, "bag")
        assert c.post("/teach/train").status_code == 202
        second = wait(c)
        assert second["state"] == "ready" and second["version"] == "2" and second["progress"] == 1.0 and second["head_accuracy"] == 1.0, second
        meta = c.get("/v2/models/teachable").json()
        assert meta["versions"] == ["1", "2"] and meta["parameters"]["class_names"] == ["trouser", "bag"] and meta["platform"] == "onnxruntime_onnx"
        predicted = []
        for pixels, truth in [(p, "trouser") for p in trousers[10:30]] + [(p, "bag") for p in bags[10:30]]:
            answer = c.post("/predict", files={"file": ("x.png", png(pixels), "image/png")}).json()  # the main model now
            predicted.append(answer["predictions"][0][0]["class"] == truth)
        assert np.mean(predicted) >= 0.9, np.mean(predicted)  # 12 examples, unseen test images of the two classes
        assert answer["model"] == "teachable" and answer["version"] == "2"
        assert c.get("/v2/health/live").status_code == 200 and c.get("/teach").status_code == 200 and c.get("/").status_code == 200


def test_teach_page_in_headless_chromium(server, images, tmp_path):
    """The whole flow on the page: name two classes, upload examples of each, Train, watch the progress
    reach ready, then upload an unseen image and see the taught class."""
    from serve_helpers import headless_chromium

    x, y = images
    files = {}
    for name, label in (("trouser", TROUSER), ("bag", BAG)):
        files[name] = []
        for i, pixels in enumerate(x[y == label][40:46]):
            path = tmp_path / f"{name}-{i}.png"
            path.write_bytes(png(pixels))
            files[name].append(str(path))
    unseen = tmp_path / "unseen-bag.png"
    unseen.write_bytes(png(x[y == BAG][60]))

    driver = headless_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        driver.get(server.url + "/teach")
        driver.find_element(By.ID, "class-names").send_keys("trouser, bag")
        driver.find_element(By.ID, "set-classes").click()
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".class-box")) == 2)
        for name, paths in files.items():
            box = driver.find_element(By.CSS_SELECTOR, f'.class-box[data-class="{name}"]')
            box.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys("\n".join(paths))
            wait.until(lambda d, box=box: box.find_element(By.CSS_SELECTOR, ".count").text == "6")
        driver.find_element(By.ID, "train").click()
        wait.until(lambda d: d.find_element(By.ID, "stage").text.startswith("ready"))
        assert float(driver.find_element(By.ID, "progress").get_attribute("value")) == 1.0
        driver.find_element(By.ID, "predict-file").send_keys(str(unseen))
        wait.until(lambda d: d.find_element(By.ID, "prediction").get_attribute("data-top"))
        assert driver.find_element(By.ID, "prediction").get_attribute("data-top") == "bag"
        assert driver.find_element(By.ID, "error").text == ""
    finally:
        driver.quit()


def test_teachable_mode_on_a_run_takes_its_teacher_and_data_statistics(tmp_path):
    import json

    from distil.errors import ModelError
    from distil.serve.teachable import teachable_from_run

    teach = teachable_from_run(tiny_run())
    data = json.loads((tiny_run() / "summary.json").read_text())["data"]
    assert teach.input_shape == (1, 8, 8) and list(teach.mean) == data["mean"] and not teach.teacher.training
    with pytest.raises(ModelError, match="needs a finished image run"):
        teachable_from_run(tmp_path)


def test_teachable_mode_from_a_config_with_teacher_weights_and_the_command_line(tmp_path):
    import yaml
    from serve_helpers import TINY
    from typer.testing import CliRunner

    from distil.cli import app
    from distil.errors import ConfigError
    from distil.serve.teachable import teachable_from_config

    config = {**TINY, "teacher": {**TINY["teacher"], "weights": str(tiny_run() / "teacher.safetensors")}}
    (tmp_path / "with.yaml").write_text(yaml.safe_dump(config))
    teach = teachable_from_config(tmp_path / "with.yaml")
    assert teach.input_shape == (1, 8, 8) and len(teach.mean) == 1
    (tmp_path / "without.yaml").write_text(yaml.safe_dump(TINY))
    with pytest.raises(ConfigError, match="teacher.weights is not set"):
        teachable_from_config(tmp_path / "without.yaml")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and "--teachable" in result.output
    result = CliRunner().invoke(app, ["serve", "--teachable", "--feedback", str(tmp_path / "fb")])
    assert result.exit_code == 2 and "--feedback" in result.output
