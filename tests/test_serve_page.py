"""The page of `textcls serve`, in a real browser: headless Chromium driven by selenium types a review, submits it,
and reads the label, one bar per class and the shaded words, as a person would see them.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); skipped, saying so, where either binary
is missing."""

from __future__ import annotations

import math
import shutil

import httpx
import pytest

from textcls.infer import load_trained

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="no chromium / chromedriver binary found (apt-get install chromium "
                                       "chromium-driver)")

REVIEW = ("I expected little from this film, but the acting was superb and the story moving. The ending dragged a "
          "bit, yet I would gladly watch it again.")


@pytest.fixture(scope="module")
def server(hf_classifier_named, serving):
    from textcls.serve.app import create_app

    with serving(create_app(load_trained(hf_classifier_named))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1000,1200"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_type_a_review_and_see_label_bars_and_shaded_words(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    want = httpx.post(f"{server}/predict", json={"texts": [REVIEW]}, timeout=60).json()["predictions"][0]
    browser.get(server)
    wait = WebDriverWait(browser, 60)
    wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "labels neg, pos"))
    browser.find_element(By.ID, "text").send_keys(REVIEW)
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_element(By.ID, "label").text.strip())
    browser.save_screenshot(str(tmp_path / "page.png"))

    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "label").text == want["label"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert [b.get_attribute("data-label") for b in bars] == ["neg", "pos"]  # one per class, in the model's order
    percents = [float(b.find_element(By.CSS_SELECTOR, ".pct").text.rstrip("%")) for b in bars]
    assert sum(percents) == pytest.approx(100, abs=0.2)
    for bar, pct in zip(bars, percents):
        assert pct == pytest.approx(100 * want["probabilities"][bar.get_attribute("data-label")], abs=0.06)

    words = browser.find_elements(By.CSS_SELECTOR, "#explained span.word")
    assert " ".join(w.text for w in words).replace(" ,", ",").replace(" .", ".").startswith("I expected little")
    scores = [float(w.get_attribute("data-score")) for w in words]
    assert all(math.isfinite(s) for s in scores) and any(s != 0 for s in scores)
    shaded = [w.value_of_css_property("background-color") for w in words]
    assert len({c for c in shaded if c not in ("rgba(0, 0, 0, 0)", "transparent")}) > 1  # shades differ
    assert "gradient x input" in browser.find_element(By.ID, "method").text
    # the whole text is there, words and the spaces between them
    assert browser.find_element(By.ID, "explained").text.split() == REVIEW.split()


def test_a_bad_input_shows_the_servers_message(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    browser.find_element(By.ID, "text").send_keys("   ")
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "error").text)
    assert "nothing to read" in browser.find_element(By.ID, "error").text
    assert not browser.find_element(By.ID, "result").is_displayed()


MULTI_LABELS = ("joy", "anger", "fear")


@pytest.fixture(scope="module", params=["multi-label", "regression"])
def other_server(request, save_hf_classifier, serving, tmp_path_factory):
    """A server of a multi-label model (three labels, transformers' problem_type) or of a regression model (one
    output), each a folder transformers wrote."""
    from textcls.serve.app import create_app

    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "multi-label":
        save_hf_classifier(folder, MULTI_LABELS, problem_type="multi_label_classification")
    else:
        save_hf_classifier(folder, None, num_labels=1, problem_type="regression")
    with serving(create_app(load_trained(folder))) as url:
        yield request.param, url


def test_the_page_shows_multi_label_and_regression_predictions(other_server, browser):
    """Multi-label: the labels above their thresholds, a bar per label with its threshold marked, the explanation of
    the label chosen in the page. Regression: the score, no bars and no label to choose, words that raise or lower
    it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    kind, server = other_server
    want = httpx.post(f"{server}/predict", json={"texts": [REVIEW]}, timeout=60).json()["predictions"][0]
    browser.get(server)
    wait = WebDriverWait(browser, 60)
    wait.until(EC.text_to_be_present_in_element((By.ID, "model"), "multi-label, labels joy, anger, fear"
                                                if kind == "multi-label" else "regression"))
    browser.find_element(By.ID, "text").send_keys(REVIEW)
    if kind == "multi-label":
        Select(browser.find_element(By.ID, "explain-label")).select_by_value("fear")
    else:
        assert not browser.find_element(By.ID, "explain-box").is_displayed()
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_element(By.ID, "label").text.strip())
    assert browser.find_element(By.ID, "error").text == ""

    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    if kind == "multi-label":
        assert browser.find_element(By.ID, "label-title").text == "Predicted labels"
        assert browser.find_element(By.ID, "label").text == (", ".join(want["labels"]) or "none above its threshold")
        assert [b.get_attribute("data-label") for b in bars] == list(MULTI_LABELS)
        for bar in bars:
            name = bar.get_attribute("data-label")
            pct = float(bar.find_element(By.CSS_SELECTOR, ".pct").text.rstrip("%"))
            assert pct == pytest.approx(100 * want["probabilities"][name], abs=0.06)
            assert float(bar.get_attribute("data-threshold")) == 0.5  # no tuned thresholds saved: 0.5
            assert ("best" in bar.get_attribute("class")) == (name in want["labels"])
        assert "fear" in browser.find_element(By.ID, "explained-title").text
        assert "log-odds" in browser.find_element(By.ID, "method").text
    else:
        assert browser.find_element(By.ID, "label-title").text == "Predicted score"
        assert float(browser.find_element(By.ID, "label").text) == pytest.approx(want["score"], abs=1e-4)
        assert bars == []
        assert browser.find_element(By.ID, "legend-up").text == "raising the score"
    words = browser.find_elements(By.CSS_SELECTOR, "#explained span.word")
    scores = [float(w.get_attribute("data-score")) for w in words]
    assert len(words) > 10 and all(math.isfinite(s) for s in scores) and any(s != 0 for s in scores)
