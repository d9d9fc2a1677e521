"""The dashboard in a real browser: `meshctl up`, the shop's traffic, headless Chromium.

Each page is loaded in Debian's chromium (driven through chromium-driver by
Selenium) against a running `meshctl up`: the graph shows the shop's services and
the calls between them; after the 90/10 canary is applied, the page (refreshing
itself) shows the productpage → reviews calls split into v1 ≈ 90 % and v3 ≈ 10 %;
the proxies, config and security pages list what they should. Screenshots of every
page are kept under the test's tmp dir (printed) as artefacts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from meshctl.procs import bin_path
from tests.e2e.harness import eventually
from tests.e2e.test_up import SAMPLES, _down, _galley_args, _up

pytestmark = pytest.mark.e2e

SHOP_EDGES = {
    ("ingressgateway.istio-system", "productpage.default"),
    ("productpage.default", "details.default"),
    ("productpage.default", "reviews.default"),
    ("reviews.default", "ratings.default"),
}


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromium-driver are missing: run scripts/setup.sh"
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1600,760")
    options.binary_location = chromium
    browser = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield browser
    finally:
        browser.quit()


class Traffic:
    """Requests to the shop's front page through the ingress gateway, until stopped."""

    def __init__(self, url: str) -> None:
        self.url, self.sent = url, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    resp.read()
                self.sent += 1
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


T = TypeVar("T")


def _stable(read: Callable[[], T]) -> T:
    """A read of a page that replaces its main part every few seconds: read again when
    the elements found went stale (the page refreshed between finding and reading)."""
    for _ in range(10):
        try:
            return read()
        except StaleElementReferenceException:
            continue
    return read()


def _edges(browser: WebDriver) -> list[dict[str, str]]:
    return _stable(lambda: _edges_now(browser))


def _edges_now(browser: WebDriver) -> list[dict[str, str]]:
    return [
        {
            k: el.get_attribute(f"data-{k}") or ""
            for k in ("source", "destination", "version", "share")
        }
        for el in browser.find_elements(By.CSS_SELECTOR, "svg g.edge")
    ]


def _canary_split(browser: WebDriver) -> dict[str, float] | None:
    """productpage → reviews shares by version, once the v1 and v3 edges are both shown."""
    shares = {
        e["version"]: float(e["share"])
        for e in _edges(browser)
        if e["source"] == "productpage.default"
        and e["destination"] == "reviews.default"
        and e["version"]
        and e["share"]
    }
    return shares if {"v1", "v3"} <= set(shares) else None


def test_dashboard_pages_in_a_browser(tmp_path: Path, browser: WebDriver) -> None:
    state = tmp_path / "state"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    proc, text = _up(state)
    traffic: Traffic | None = None
    try:
        first = text.splitlines()[0]
        found = re.fullmatch(r"meshctl up: dashboard (http://127\.0\.0\.1:\d+)/ui/", first)
        assert found, f"the dashboard's URL is not printed first: {text}"
        base = found.group(1)
        shop = re.search(r"(http://127\.0\.0\.1:\d+/productpage)", text)
        assert shop is not None, text
        traffic = Traffic(shop.group(1))

        # The graph: every shop service, and the calls between them once traffic flows.
        browser.get(f"{base}/ui/graph")
        nodes = _stable(
            lambda: {
                el.get_attribute("data-id")
                for el in browser.find_elements(By.CSS_SELECTOR, "svg g.node")
            }
        )
        assert {
            "ingressgateway.istio-system",
            "productpage.default",
            "details.default",
            "reviews.default",
            "ratings.default",
        } <= nodes, nodes
        eventually(
            lambda: SHOP_EDGES <= {(e["source"], e["destination"]) for e in _edges(browser)},
            timeout=45,
            interval=1,
            what="the shop's calls on the (self-refreshing) graph",
        )
        versions = _stable(
            lambda: {
                el.get_attribute("data-version")
                for el in browser.find_elements(
                    By.CSS_SELECTOR, 'svg g.node[data-id="reviews.default"] g.version'
                )
            }
        )
        assert versions == {"v1", "v2", "v3"}
        assert _canary_split(browser) is None  # no subset routing yet
        browser.save_screenshot(str(shots / "dashboard-graph.png"))

        # The 90/10 canary: the reviews calls split into v1 and v3 edges with their shares.
        applied_at = traffic.sent
        out = subprocess.run(
            [
                bin_path("meshctl"),
                "apply",
                "-f",
                str(SAMPLES / "reviews-90-10.yaml"),
                *_galley_args(text, state),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        eventually(lambda: _canary_split(browser), timeout=45, interval=1, what="v1 and v3 edges")
        # Enough calls for the shares to mean something (≈ 30 on v3), then two refreshes
        # of the page, so that it shows a scrape taken after them.
        eventually(
            lambda: traffic.sent >= applied_at + 300, timeout=60, interval=0.5, what="300 calls"
        )
        for _ in range(2):
            stamp = _stable(lambda: browser.find_element(By.ID, "updated").text)
            eventually(
                lambda: _stable(lambda: browser.find_element(By.ID, "updated").text) != stamp,  # noqa: B023
                timeout=15,
                interval=0.5,
                what="the page refreshing itself",
            )
        split = _canary_split(browser)
        assert split is not None and 0.8 <= split["v1"] <= 0.97, split
        assert abs(split["v1"] + split["v3"] - 1) < 0.01, split
        browser.save_screenshot(str(shots / "dashboard-canary.png"))

        # Proxies: every sidecar and the gateway, in sync on every type they were sent.
        browser.get(f"{base}/ui/proxies")
        rows = _stable(
            lambda: {
                r.get_attribute("data-proxy"): r.text
                for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-proxy]")
            }
        )
        assert {"ingressgateway-1", "productpage-v1", "reviews-v3"} <= set(rows), rows
        assert all("NACKED" not in row and "SYNCED" in row for row in rows.values()), rows
        browser.save_screenshot(str(shots / "dashboard-proxies.png"))

        # Config: the canary's VirtualService, reconciled by the proxies.
        browser.get(f"{base}/ui/config")
        vs = eventually(
            lambda: _stable(
                lambda: (
                    browser.find_element(
                        By.CSS_SELECTOR, 'tr[data-ref="VirtualService/default/reviews"]'
                    ).text
                )
            ),
            what="the canary on the config page",
        )
        assert "Reconciled" in vs or "Pending" in vs, vs
        browser.save_screenshot(str(shots / "dashboard-config.png"))

        # Security: each workload's identity, its certificate from Citadel, its mTLS mode.
        browser.get(f"{base}/ui/security")
        row = _stable(
            lambda: browser.find_element(By.CSS_SELECTOR, 'tr[data-instance="reviews-v3"]').text
        )
        assert "spiffe://cluster.local/ns/default/sa/shop-reviews" in row, row
        assert re.search(r"in \d+\.\d h", row) and "PERMISSIVE" in row, row
        browser.save_screenshot(str(shots / "dashboard-security.png"))
        print(f"\nscreenshots: {shots} ({traffic.sent} requests sent)")
    finally:
        if traffic is not None:
            traffic.stop()
        _down(state, proc)
