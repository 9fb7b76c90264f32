"""/docs and the console in a real browser: headless Chromium (Debian's) driven by Selenium, against gunicorn.

One server and one browser for the module; the tests run in order, as a
person would: try /docs, meet the sign-in wall, sign in, look at models,
traffic, the log (filtered, one request opened) and drift, compare and
activate a version, sign out. Every page must load without a console error,
and a request whose body holds a script must run nothing. A screenshot of
each page goes to ``<tmp>/screenshots`` (its path is printed), or to
``SCREENSHOT_DIR`` when that is set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import ADMIN_TOKEN, BOSTON_ROW
from .test_multi_model import HEART_ROW

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

# Flags that keep Chromium from calling home on a machine without internet (it hangs otherwise).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1440,1000"]
XSS_VALUE = "<script>window.__xss = 1; document.title = 'pwned'</script>"
XSS_KEY = "<img src=x onerror=\"window.__xss = 2\">"
N_ACCEPTED_BOSTON, N_HEART, N_V2 = 12, 3, 2


@pytest.fixture(scope="module")
def traffic(service) -> dict:
    """Requests of every kind, sent before the browser looks: their ids and how many of each."""
    sent: dict = {"rejected": []}
    for index in range(N_ACCEPTED_BOSTON):
        rows = [dict(BOSTON_ROW, RM=7.2 + index / 20 + k / 100, LSTAT=4 + index + k / 10) for k in range(4)]
        assert service.call("POST", "/predict", {"instances": rows})[0] == 200
    for index in range(N_HEART):
        rows = [dict(HEART_ROW, age=40 + index)]
        assert service.call("POST", "/models/heart-knn/predict", {"instances": rows})[0] == 200
    tensor = {"name": "input-0", "shape": [1, 12], "datatype": "FP64", "data": list(BOSTON_ROW.values())}
    for _ in range(N_V2):
        assert service.call("POST", "/v2/models/boston-knn/infer", {"inputs": [tensor]})[0] == 200
    status, _, headers = service.call("POST", "/predict", {"instances": [dict(BOSTON_ROW, CHAS=3)]})
    assert status == 400
    sent["chas"] = headers["X-Request-ID"]
    status, _, headers = service.call("POST", "/predict", {"instances": [{**BOSTON_ROW, "CRIM": XSS_VALUE,
                                                                         XSS_KEY: 1}]})
    assert status == 400
    sent["xss"] = headers["X-Request-ID"]
    status, _, headers = service.call("POST", "/predict", XSS_VALUE.encode(), content_type="text/plain")
    assert status == 415
    sent["xss_raw"] = headers["X-Request-ID"]
    sent["n_400"], sent["n_total"] = 2, N_ACCEPTED_BOSTON + N_HEART + N_V2 + 3
    sent["n_boston_requests"], sent["n_boston_rows"] = N_ACCEPTED_BOSTON + N_V2, 4 * N_ACCEPTED_BOSTON + N_V2
    assert service.wait_for_log(sent["n_total"]) == sent["n_total"]
    return sent


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ["SCREENSHOT_DIR"]) if os.environ.get("SCREENSHOT_DIR") else (
        tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


def no_console_errors(driver) -> None:
    errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def shoot(driver, folder: Path, name: str) -> None:
    """A full-page screenshot: the window grows to the page's height for the shot."""
    height, chrome = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]")
    driver.set_window_size(1440, min(max(height, 900), 4000) + chrome)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1440, 1000)


def wait_for(driver, condition, timeout: float = 20):
    return WebDriverWait(driver, timeout).until(condition)


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")


def test_docs_try_it_out_predicts(browser, service, screenshots, traffic):
    open_page(browser, f"{service.url}/docs")
    operation = wait_for(browser, ready.element_to_be_clickable((By.ID, "operations-predict-predict")))
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait_for(browser, ready.element_to_be_clickable((By.CSS_SELECTOR, "#operations-predict-predict .try-out__btn"))
             ).click()
    body = wait_for(browser, ready.presence_of_element_located(
        (By.CSS_SELECTOR, "#operations-predict-predict textarea.body-param__text")))
    assert '"instances"' in body.get_attribute("value")  # the example, a golden row of the default model
    browser.find_element(By.CSS_SELECTOR, "#operations-predict-predict .execute").click()
    status = wait_for(browser, ready.presence_of_element_located(
        (By.CSS_SELECTOR, "#operations-predict-predict .live-responses-table tbody .response-col_status")))
    assert status.text.strip().startswith("200")
    answer = browser.find_element(By.CSS_SELECTOR, "#operations-predict-predict .live-responses-table pre")
    assert '"predictions"' in answer.text
    # That was a real request: it is in the log and counts on the console's pages.
    for key in ("n_total", "n_boston_requests", "n_boston_rows"):
        traffic[key] += 1
    assert service.wait_for_log(traffic["n_total"]) == traffic["n_total"]
    assert browser.find_elements(By.ID, "operations-v2-v2Infer")  # the V2 routes are documented too
    shoot(browser, screenshots, "01-docs")
    no_console_errors(browser)


def test_the_console_shows_nothing_without_the_token(browser, service, screenshots):
    open_page(browser, f"{service.url}/console/traffic")
    assert "/console/login" in browser.current_url
    assert not browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    wait_for(browser, ready.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash-error"), "not the admin token"))
    assert "/console/login" in browser.current_url
    shoot(browser, screenshots, "02-sign-in")
    no_console_errors(browser)


def test_sign_in_lands_on_the_page_asked_for(browser, service):
    open_page(browser, f"{service.url}/console/traffic")
    browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    wait_for(browser, ready.url_contains("/console/traffic"))
    (cookie,) = [c for c in browser.get_cookies() if c["name"] == "console_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert not cookie["secure"]  # plain http here; Secure over HTTPS (tested in-process)
    no_console_errors(browser)


def test_models_page_shows_both_models_and_every_version(browser, service, screenshots):
    open_page(browser, f"{service.url}/console/models")
    for name in ("boston-knn", "heart-knn"):
        assert browser.find_element(By.ID, f"model-{name}").is_displayed()
    boston = browser.find_element(By.ID, "model-boston-knn")
    assert service.second_version in boston.text and "active" in boston.text and "RMSE" in boston.text
    assert "ROC AUC" in browser.find_element(By.ID, "model-heart-knn").text
    shoot(browser, screenshots, "03-models")
    no_console_errors(browser)


def test_traffic_page_counts_what_was_sent(browser, service, screenshots, traffic):
    open_page(browser, f"{service.url}/console/traffic")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 4
    assert browser.find_element(By.ID, "total-requests").text == str(traffic["n_total"])
    assert browser.find_element(By.ID, "total-rejected").text == "3"
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar.accepted")) >= 1
    browser.find_element(By.ID, "range-24h").click()
    wait_for(browser, ready.url_contains("range=24h"))
    assert browser.find_element(By.ID, "total-requests").text == str(traffic["n_total"])
    browser.find_element(By.ID, "range-1h").click()
    wait_for(browser, ready.url_contains("range=1h"))
    shoot(browser, screenshots, "04-traffic")
    no_console_errors(browser)


def test_log_filters_and_opens_a_request(browser, service, screenshots, traffic):
    open_page(browser, f"{service.url}/console/log")
    assert browser.find_element(By.ID, "log-total").text == str(traffic["n_total"])
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("400")
    Select(browser.find_element(By.ID, "filter-model")).select_by_value("boston-knn")
    browser.find_element(By.ID, "apply-filters").click()
    wait_for(browser, ready.url_contains("status=400"))
    assert browser.find_element(By.ID, "log-total").text == str(traffic["n_400"])
    badges = browser.find_elements(By.CSS_SELECTOR, ".log-table tbody .badge")
    assert [badge.text for badge in badges] == ["400"] * traffic["n_400"]
    shoot(browser, screenshots, "05-log")
    browser.find_element(By.XPATH, f"//a[@class='request-link' and contains(@href, '{traffic['chas']}')]").click()
    wait_for(browser, ready.presence_of_element_located((By.ID, "error-locations")))
    locations = browser.find_element(By.ID, "error-locations").text
    assert "instances/0/CHAS" in locations and "must be one of 0, 1" in locations
    assert '"CHAS": 3' in browser.find_element(By.ID, "request-body").text
    assert '"status": 400' in browser.find_element(By.ID, "response-body").text
    shoot(browser, screenshots, "06-request")
    browser.find_element(By.ID, "back-to-log").click()
    wait_for(browser, ready.url_contains("status=400"))
    no_console_errors(browser)


@pytest.mark.parametrize("which", ["xss", "xss_raw"])
def test_a_request_holding_a_script_runs_nothing(browser, service, traffic, which):
    open_page(browser, f"{service.url}/console/log")
    assert XSS_VALUE not in browser.page_source  # escaped in the table too
    open_page(browser, f"{service.url}/console/log/{traffic[which]}")
    shown = browser.find_element(By.ID, "request-body").text
    assert "<script>window.__xss = 1" in shown  # shown as text...
    assert browser.execute_script("return window.__xss === undefined")  # ...and never run
    assert "pwned" not in browser.title
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is the check
    if which == "xss":
        assert XSS_KEY in browser.find_element(By.ID, "error-locations").text
    no_console_errors(browser)


def test_drift_page_tests_every_feature(browser, service, screenshots):
    open_page(browser, f"{service.url}/console/drift")
    cards = browser.find_elements(By.CSS_SELECTOR, ".feature-card")
    assert len(cards) == 12
    assert all(card.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar.recent") for card in cards)
    assert "KS statistic" in cards[0].text
    assert "drifted" in browser.find_element(By.ID, "feature-RM").text  # RM was sent far from training
    shoot(browser, screenshots, "07-drift")
    no_console_errors(browser)


def test_dry_run_then_activation(browser, service, screenshots, traffic):
    second = service.second_version
    open_page(browser, f"{service.url}/console/models")
    row = browser.find_element(By.XPATH, f"//tr[.//code[text()='{second}']]")
    row.find_element(By.LINK_TEXT, "Compare & activate").click()
    wait_for(browser, ready.element_to_be_clickable((By.ID, "dry-run"))).click()
    comparison = wait_for(browser, ready.presence_of_element_located((By.ID, "comparison")))
    replayed = f"{traffic['n_boston_requests']} requests ({traffic['n_boston_rows']} rows) replayed"
    assert replayed in comparison.text
    shoot(browser, screenshots, "08-dry-run")
    browser.find_element(By.ID, "activate").click()
    wait_for(browser, ready.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash-ok"), f"{second} is active now"))
    active_row = browser.find_element(By.XPATH, f"//tr[.//code[text()='{second}']]")
    assert "active" in active_row.text
    assert service.call("GET", "/model")[1]["version"] == second
    no_console_errors(browser)


def test_sign_out(browser, service):
    browser.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait_for(browser, ready.url_contains("/console/login"))
    open_page(browser, f"{service.url}/console/models")
    assert "/console/login" in browser.current_url
    no_console_errors(browser)
