"""Audio: the log-mel front end against a hand-written DFT, WAV bytes in and out, SpecAugment masks,
the keyword-spotting models, the synthesized spoken_words set (tiny: 63 clips, ~2 s) and a real
`distil run` of the ensemble strategy on it, compressed to ONNX."""

from __future__ import annotations

import json
import shutil
import wave
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch

from distil.config.data import AugmentConfig
from distil.data import AugmentViews, Dataset, Split
from distil.data.audio import AudioTooLong, LogMel, read_wav, resample, write_wav
from distil.data.audio.features import LOG_FLOOR, hz_to_mel, mel_filterbank, mel_to_hz
from distil.data.audio.spec_augment import MaskParams, SpecAugment
from distil.data.audio.spoken_words import CLASS_NAMES, TEST_VOICES, TRAIN_VOICES, _settings, utterance_plan
from distil.errors import ConfigError, DataError
from distil.models import build_model, count_parameters

needs_synth = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("flite")), reason="needs espeak-ng and flite (apt-get install espeak-ng flite)")
TINY = {"per_class": 2, "test_per_class": 1}


@pytest.fixture
def data_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DISTIL_DATA_CACHE", str(tmp_path / "data-cache"))
    return tmp_path / "data-cache"


# --- the front end -------------------------------------------------------------------------------


def test_mel_scale_is_htk():
    assert float(hz_to_mel(700.0)) == pytest.approx(2595 * np.log10(2))
    assert float(hz_to_mel(1000.0)) == pytest.approx(999.9855, abs=1e-3)
    m = torch.tensor([0.0, 500.0, 2000.0], dtype=torch.float64)
    assert torch.allclose(hz_to_mel(mel_to_hz(m)), m)


def test_filterbank_triangles_peak_at_their_corners():
    bank = mel_filterbank(16000, 512, 40, 20.0, 8000.0)
    assert bank.shape == (40, 257)
    assert bank.min() >= 0 and bank.max() <= 1
    corners = mel_to_hz(torch.linspace(float(hz_to_mel(20.0)), float(hz_to_mel(8000.0)), 42, dtype=torch.float64))
    bins = torch.arange(257) * 16000 / 512
    for m in (5, 20, 39):  # each filter is zero outside (corner m, corner m+2)
        outside = (bins <= corners[m]) | (bins >= corners[m + 2])
        assert bank[m][outside].abs().max() < 1e-6
        assert int(bank[m].argmax()) in {int(torch.argmin((bins - corners[m + 1]).abs())) + d for d in (-1, 0, 1)}


def test_log_mel_matches_a_hand_written_dft_frame():
    front = LogMel()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000).astype(np.float32) * 0.1
    out = front(torch.from_numpy(x)[None])
    assert out.shape == (1, 1, 40, 51)
    t = 20  # an interior frame: x[t·hop − n_fft/2 + n], Hann window of 480 centred in 512
    frame = x[t * 320 - 256 : t * 320 + 256].astype(np.float64)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(480) / 480)
    window = np.zeros(512)
    window[16:496] = hann
    power = np.abs(np.fft.rfft(frame * window)) ** 2
    expected = np.log(front.filterbank().double().numpy() @ power + LOG_FLOOR)
    assert np.allclose(out[0, 0, :, t].double().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_a_tone_lights_its_mel_band_and_silence_is_the_floor():
    front = LogMel()
    t = np.arange(16000) / 16000
    tone = torch.tensor(np.sin(2 * np.pi * 1000 * t), dtype=torch.float32)
    features = front(torch.stack([tone, torch.zeros(16000)]))
    band = int(features[0, 0, :, 25].argmax())
    corners = mel_to_hz(torch.linspace(float(hz_to_mel(20.0)), float(hz_to_mel(8000.0)), 42, dtype=torch.float64))
    assert corners[band] < 1000 < corners[band + 2]
    assert torch.allclose(features[1], torch.full_like(features[1], float(np.log(LOG_FLOOR))))


# --- WAV bytes -----------------------------------------------------------------------------------


def _wav(samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> bytes:
    out = BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def test_wav_round_trip_stereo_and_8_bit():
    x = np.array([0.0, 0.5, -0.5, 1.0], np.float32)
    back = read_wav(write_wav(x, 16000))
    assert back.rate == 16000 and np.allclose(back.samples, x, atol=1 / 32767)
    stereo = np.array([[1000, 3000], [-2000, 0]], "<i2")  # (frames, channels): mixed down to their mean
    mixed = read_wav(_wav(stereo, 8000, channels=2))
    assert mixed.channels == 2 and np.allclose(mixed.samples, [2000 / 32768, -1000 / 32768])
    eight = read_wav(_wav(np.array([128, 255, 0], np.uint8), 8000, width=1))
    assert np.allclose(eight.samples, [0.0, 127 / 128, -1.0])


def test_bad_wav_bytes_are_data_errors():
    with pytest.raises(DataError, match="not a WAV"):
        read_wav(b"ID3\x03 an mp3")
    with pytest.raises(DataError, match="not a PCM WAV"):
        read_wav(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioTooLong, match="at most 1 s"):
        read_wav(write_wav(np.zeros(32000, np.float32), 16000), max_seconds=1)


def test_resample_keeps_the_tone_and_the_duration():
    t = np.arange(22050) / 22050
    y = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), 22050, 16000)
    assert len(y) == 16000
    assert abs(np.argmax(np.abs(np.fft.rfft(y))) - 440) <= 1  # 1 s at 16 kHz: bin k is k Hz


# --- SpecAugment ---------------------------------------------------------------------------------


def test_spec_augment_masks_exactly_the_drawn_bands_and_frames():
    aug = SpecAugment(8, 10, freq_masks=1, freq_width=3, time_masks=1, time_width=4)
    x = torch.ones(2, 1, 8, 10)
    params = MaskParams(torch.tensor([[2], [0]]), torch.tensor([[3], [0]]), torch.tensor([[5], [9]]), torch.tensor([[4], [1]]))
    out = aug.apply(x, params)
    expected = torch.ones(2, 1, 8, 10)
    expected[0, :, 2:5, :] = 0
    expected[0, :, :, 5:9] = 0
    expected[1, :, :, 9:10] = 0
    assert torch.equal(out, expected)


def test_spec_augment_draws_stay_in_range_and_views_replay():
    aug = SpecAugment(40, 51, freq_masks=2, freq_width=6, time_masks=2, time_width=8)
    p = aug.sample(500, torch.Generator().manual_seed(0))
    assert int(p.freq_width.max()) <= 6 and int((p.freq_start + p.freq_width).max()) <= 40
    assert int(p.time_width.max()) <= 8 and int((p.time_start + p.time_width).max()) <= 51
    assert aug.view_bytes == 16
    x = torch.randn(6, 1, 40, 51)
    views = AugmentViews.draw(aug, 6, 3, seed=1)
    index, view = torch.tensor([4, 1]), torch.tensor([2, 0])
    first = views.apply(x[index], index, view)
    assert torch.equal(first, AugmentViews.draw(aug, 6, 3, seed=1).apply(x[index], index, view))
    assert (first == 0).any() and not torch.equal(first, x[index])


def test_spec_augment_config_needs_spectrograms_and_no_crop():
    split = Split(torch.zeros(4, 1, 40, 51), torch.zeros(4, dtype=torch.long))
    data = Dataset("s", split, split, split, 2, ("a", "b"), (1, 40, 51), (0.0,), (1.0,), "test")
    assert isinstance(AugmentConfig(freq_masks=2, freq_width=6).build(data), SpecAugment)
    with pytest.raises(ConfigError, match="crop_padding"):
        AugmentConfig(time_masks=1, time_width=4, crop_padding=2).build(data)
    with pytest.raises(ConfigError, match="must fit"):
        AugmentConfig(freq_masks=1, freq_width=41).build(data)
    signal = Dataset("m", Split(torch.zeros(4, 1, 40)), Split(torch.zeros(4, 1, 40)), Split(torch.zeros(4, 1, 40)), 2, ("a", "b"), (1, 40), (0.0,), (1.0,), "t")
    with pytest.raises(ConfigError, match="spectrograms"):
        AugmentConfig(time_masks=1, time_width=4).build(signal)


# --- models --------------------------------------------------------------------------------------


def test_keyword_spotting_models_match_their_papers():
    # TC-ResNet8 (Choi et al. 2019, Table 2): 66k parameters on 40 MFCC × 98 frames, 12 classes
    tc8 = build_model("tc_resnet", input_shape=(1, 40, 98), num_classes=12)
    assert count_parameters(tc8) == 65180
    tc14 = build_model("tc_resnet", input_shape=(1, 40, 98), num_classes=12, blocks_per_stage=2, width_mult=1.5)
    assert 290_000 < count_parameters(tc14) < 310_000  # the paper's TC-ResNet14-1.5: 305k
    ds = build_model("ds_cnn", input_shape=(1, 40, 51), num_classes=21)
    assert [n for n, _ in ds.named_children()] == ["stem", "block1", "block2", "block3", "block4", "pool", "flatten", "fc"]
    for model in (tc8, tc14):
        assert model(torch.randn(3, 1, 40, 98)).shape == (3, 12)
    assert ds(torch.randn(3, 1, 40, 51)).shape == (3, 21)


# --- spoken_words --------------------------------------------------------------------------------


def test_the_test_voices_are_never_heard_in_training():
    plan = utterance_plan(_settings(3, 2, [5.0, 30.0], 40, 1.0, 0, None, None))
    train = {u.voice for s, u in plan if s == 0}
    test = {u.voice for s, u in plan if s == 1}
    assert train <= set(TRAIN_VOICES) and test <= set(TEST_VOICES) and not train & test
    assert "flite:slt" in test and len(plan) == len(CLASS_NAMES) * 5
    with pytest.raises(DataError, match="share"):
        _settings(3, 2, None, 40, 1.0, 0, ["espeak:m1", "flite:slt"], ["flite:slt"])
    with pytest.raises(DataError, match="not one of"):
        _settings(3, 2, None, 40, 1.0, 0, ["flite:bob"], None)


def test_a_missing_synthesizer_says_how_to_install_it(data_cache, monkeypatch, tmp_path):
    """`distil run` on spoken_words without espeak-ng on PATH: exit 2, the apt-get line, nothing written."""
    import yaml
    from strategy_helpers import run_cli

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    raw = yaml.safe_load((Path(__file__).parents[1] / "configs/speech/ensemble.yaml").read_text())
    result = run_cli(tmp_path, raw)
    assert result.exit_code == 2
    assert "apt-get install espeak-ng" in result.output
    assert not (tmp_path / "out").exists() and not data_cache.exists()


@needs_synth
def test_spoken_words_synthesizes_once_then_reads_the_cache(data_cache):
    from distil.data import load_dataset

    data = load_dataset("spoken_words", val_size=3, seed=0, **TINY)
    assert data.input_shape == (1, 40, 51) and data.num_classes == 21
    assert (len(data.train), len(data.val), len(data.test)) == (39, 3, 21)
    files = list((data_cache / "spoken_words").glob("*.safetensors"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = load_dataset("spoken_words", val_size=3, seed=0, **TINY)
    assert files[0].stat().st_mtime_ns == stamp and torch.equal(again.test.x, data.test.x)
    assert "test voices espeak:m7" in data.source and "flite:slt" in data.source
    other = load_dataset("spoken_words", val_size=3, seed=0, n_mels=32, **TINY)  # other features, same clips
    assert other.input_shape == (1, 32, 51) and len(list((data_cache / "spoken_words").glob("*.safetensors"))) == 1


@needs_synth
def test_a_transfer_set_of_spoken_words_has_training_voices_only(data_cache):
    """test_per_class: 0 makes no test split, so a transfer set holds clips by the training voices alone."""
    from distil.data import load_dataset
    from distil.data.audio.spoken_words import load_spoken_words
    from distil.data.unlabeled import load_unlabeled, overlap

    raw = load_spoken_words(None, per_class=2, test_per_class=0, generation_seed=1)
    assert raw.test_x is None and raw.test_y is None and raw.train_x.shape == (42, 1, 40, 51)
    plan = utterance_plan(_settings(2, 0, [5.0, 30.0], 40, 1.0, 1, None, None))
    assert len(plan) == 42 and {s for s, _ in plan} == {0} and {u.voice for _, u in plan} <= set(TRAIN_VOICES)
    data = load_dataset("spoken_words", val_size=3, seed=0, **TINY)
    extra = load_unlabeled("spoken_words", data, per_class=2, test_per_class=0, generation_seed=1)
    assert extra.y is None and extra.x.shape == (42, 1, 40, 51)
    assert 0.8 < float(extra.x.std()) < 1.25  # normalised with the labelled clips' statistics
    # test_per_class left > 0: the test voices' clips are still never taken (held out by construction)
    own = load_unlabeled("spoken_words", data, **TINY)
    assert len(own) == 42 and overlap(own.x, data.test.x) == 0


# --- end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory) -> Path:
    """configs/speech/ensemble.yaml, shrunk: 2 CNN teachers → ensemble → TC-ResNet student (SpecAugment
    views), then ONNX export of the student the ensemble taught; one run for the tests below."""
    if not (shutil.which("espeak-ng") and shutil.which("flite")):
        pytest.skip("needs espeak-ng and flite (apt-get install espeak-ng flite)")
    import yaml
    from strategy_helpers import run_cli_with

    tmp = tmp_path_factory.mktemp("speech")
    raw = yaml.safe_load((Path(__file__).parents[1] / "configs/speech/ensemble.yaml").read_text())
    train = {"epochs": 1, "batch_size": 32, "lr": 0.05}
    raw["data"]["options"] = TINY
    raw["data"]["val_size"] = 4
    raw["teacher"] = {"arch": "cnn", "kwargs": {"widths": [4, 8, 8], "convs_per_stage": 1}, **train}
    raw["student"] = {"arch": "tc_resnet", "kwargs": {"width_mult": 0.25}, **train}
    raw["strategy"]["teachers"] = [{**raw["teacher"], "seed": 1}]
    raw["cache"]["views"] = 2
    raw["measure"] = {"latency_repeats": 2, "throughput_repeats": 1}
    run_cli_with(tmp, raw, DISTIL_DATA_CACHE=str(tmp / "data-cache"))
    return tmp / "out"


def test_speech_config_runs_teachers_ensemble_student_and_onnx(speech_run):
    rows = {m["name"]: m for m in json.loads((speech_run / "summary.json").read_text())["models"]}
    assert {"teacher", "teacher_1", "teacher_ensemble", "student_kd", "student_ensemble_kd", "student_ensemble_kd.onnx"} <= set(rows)
    assert rows["teacher_ensemble"]["params"] == rows["teacher"]["params"] + rows["teacher_1"]["params"]
    assert rows["student_ensemble_kd.onnx"]["runtime"] == "onnxruntime"
    assert rows["student_ensemble_kd.onnx"]["accuracy"] == pytest.approx(rows["student_ensemble_kd"]["accuracy"], abs=1 / 21 + 1e-9)
    assert (speech_run / "compressed" / "student_ensemble_kd.onnx").stat().st_size > 0


# --- serving -------------------------------------------------------------------------------------


def test_serving_an_audio_run_takes_waveforms_and_wav_uploads(speech_run):
    """The server computes the run's features: a WAV upload at 22.05 kHz stereo, the same clip as an OIP
    waveform at 16 kHz and the model run locally on the data pipeline's features agree; bad audio is 4xx JSON."""
    import httpx
    from serve_helpers import ThreadedServer

    from distil.data.audio.spoken_words import front_end_for
    from distil.data.audio.synth import speak
    from distil.serve import ServeSettings, create_app, load_models
    from distil.weights import load_weights

    models = load_models(speech_run)
    assert models[0].inputs.kind == "audio" and models[0].input_shape == (1, 40, 51)
    word = speak("espeak:m7", "seven", 1.0, 1.0, "en-us")  # 22.05 kHz
    stereo = np.stack([word.samples, word.samples], axis=1)
    at_16k = resample(word.samples, word.rate, 16000)
    clip = np.zeros(16000, np.float32)
    clip[: min(16000, len(at_16k))] = at_16k[:16000]
    summary = json.loads((speech_run / "summary.json").read_text())
    features = (front_end_for(40)(torch.from_numpy(clip)[None]) - summary["data"]["mean"][0]) / summary["data"]["std"][0]
    student = build_model("tc_resnet", input_shape=(1, 40, 51), num_classes=21, width_mult=0.25)
    load_weights(student, speech_run / "student_ensemble_kd.safetensors")
    with torch.inference_mode():
        expected = torch.softmax(student.eval()(features), 1)[0].numpy()
    with ThreadedServer(create_app(models, ServeSettings())) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        wav = _wav((np.clip(stereo, -1, 1) * 32767).astype("<i2"), word.rate, channels=2)
        answer = client.post("/predict?k=21", files={"file": ("seven.wav", wav, "audio/wav")}).json()
        probs = {p["class"]: p["probability"] for p in answer["predictions"][0]}
        assert np.allclose([probs[c] for c in CLASS_NAMES], expected, atol=2e-3)
        oip = client.post("/v2/models/student/infer", json={"inputs": [{"name": "waveform", "datatype": "FP32", "shape": [1, len(at_16k)], "data": at_16k.tolist()}]})
        out = {o["name"]: o for o in oip.json()["outputs"]}
        assert np.allclose(out["probabilities"]["data"], expected, atol=2e-3)
        bad = {
            "not a WAV": (client.post("/predict", content=b"ID3 not a wav", headers={"content-type": "audio/wav"}), 415),
            "no samples": (client.post("/predict", files={"file": ("e.wav", write_wav(np.zeros(0), 16000), "audio/wav")}), 400),
            "too long": (client.post("/predict", files={"file": ("l.wav", write_wav(np.zeros(16000 * 31), 16000), "audio/wav")}), 413),
            "NaN": (client.post("/v2/models/student/infer", json={"inputs": [{"name": "waveform", "datatype": "FP32", "shape": [1, 3], "data": [0.1, "NaN", 0.2]}]}), 400),
        }
        for what, (response, status) in bad.items():
            assert response.status_code == status, (what, response.text)
            assert response.headers["content-type"].startswith("application/json") and response.json()["error"], what
        assert client.get("/v2/health/ready").json()["ready"]  # still up
        assert client.get("/v2/models/student").json()["parameters"]["audio"]["sample_rate"] == 16000


def test_the_page_records_from_the_microphone_and_takes_a_file(speech_run, tmp_path):
    """Headless Chromium with a fake microphone playing a synthesized word: the recording (MediaRecorder,
    decoded and sent as WAV) and an uploaded WAV both show the student's and the teacher's top classes."""
    from serve_helpers import ThreadedServer, headless_chromium

    from distil.data.audio.synth import speak
    from distil.serve import create_app, load_models

    word = speak("flite:slt", "seven", 1.0, 1.0, "en-us")
    padded = np.concatenate([np.zeros(4000, np.float32), resample(word.samples, word.rate, 48000), np.zeros(48000, np.float32)])
    microphone = tmp_path / "seven.wav"
    microphone.write_bytes(write_wav(padded, 48000))
    browser = headless_chromium("--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                f"--use-file-for-fake-audio-capture={microphone}")  # fmt: skip
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown() -> dict[str, int]:
        WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".model-result .latency")) == 2)
        return {b.get_attribute("data-model"): len(b.find_elements(By.CSS_SELECTOR, "tr.prediction")) for b in browser.find_elements(By.CSS_SELECTOR, ".model-result")}

    try:
        with ThreadedServer(create_app(load_models(speech_run))) as server:
            browser.get(server.url + "/")
            assert "audio" in browser.find_element(By.ID, "models-line").text
            assert browser.find_element(By.ID, "image-input").get_attribute("hidden") is not None
            browser.find_element(By.ID, "record").click()
            assert shown() == {"student": 5, "teacher": 5}, browser.find_element(By.ID, "error").text
            assert "features" in browser.find_element(By.CSS_SELECTOR, ".model-result .latency").text
            browser.execute_script("document.getElementById('results').innerHTML = ''")
            browser.find_element(By.ID, "audio-file").send_keys(str(microphone))
            assert shown() == {"student": 5, "teacher": 5}
            assert browser.find_element(By.ID, "error").text == ""
    finally:
        browser.quit()
