"""Driving the web console in Debian's headless Chromium (Selenium, chromedriver from the same
package; nothing is downloaded): the browser and the waits the console suites share.

Imported by the browser suites (this module holds no tests).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 15.0


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A headless Chromium that trusts the test server's own certificate; quit on exit."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(argument)
    options.accept_insecure_certs = True  # the server's own CA, made for this test
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, predicate: Any, message: str) -> Any:
    return WebDriverWait(driver, WAIT).until(lambda d: predicate(d), message)


def element(driver: WebDriver, css: str) -> WebElement:
    return wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, css), f"no {css}")


def visible_text(driver: WebDriver, css: str) -> str:
    """The text of the first element ``css`` matches, "" when there is none or it is hidden; the page
    re-renders on every watch event, so an element found may be replaced before it is read."""
    try:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found and found[0].is_displayed() else ""
    except StaleElementReferenceException:
        return ""


def shows(driver: WebDriver, css: str, expected: str) -> None:
    wait_for(driver, lambda d: visible_text(d, css) == expected, f"{css} never showed {expected!r}")
