"""The dashboard in a real browser (Debian's chromium, driven by selenium), against
the ingress app served over HTTP and a real worker (issue 13).

A simulated recording is stored in the inbox with one sequence missing and one
event its handler rejects; the worker orders it, skips the gap after the hold
window and dead-letters the rejected run. In the browser: sign in, open the
recording, see its events in sequence order with the skipped gap marked, requeue
the dead letter (with its confirmation) and see the re-run on the timeline, then
sign out.

``AGORA_DASHBOARD_SCREENSHOTS=<dir>`` also writes ``dashboard-list.png``,
``dashboard-recording.png``, and the two on a phone's screen,
``dashboard-phone-list.png`` and ``dashboard-phone.png``, there (the README's are
made with ``docs``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_for
from dashboard_support import TOKEN, simulate
from werkzeug.serving import make_server

from agora_callbacks import deadletters, inbox, recording_timeline
from agora_callbacks.ingress.app import create_app
from agora_callbacks.settings import Settings
from agora_callbacks.simulate.lifecycles import encode, lifecycle
from agora_callbacks.workers.builtin import store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no Chromium: apt-get install chromium chromium-driver"),
]

SID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
GAP = 4
REJECTED = 2


@pytest.fixture
def base_url(settings: Settings, redis_client: redis.Redis) -> Iterator[str]:
    app = create_app(dataclasses.replace(settings, admin_token=TOKEN))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _store_recording(client: redis.Redis) -> list[dict[str, Any]]:
    envelopes = lifecycle("individual", SID, seed=7, cname="room-browser", minutes=1,
                          with_errors=True)
    client.hset(f"t:ctl:{SID}:{REJECTED}", "reject", "1")
    for envelope in envelopes:
        if envelope["payload"]["sequence"] != GAP:
            meta = inbox.ReceiveMeta(received_ms=int(time.time() * 1000), signature="v2",
                                     secret_index=0, remote_addr="127.0.0.1",
                                     request_id="browser-test")
            inbox.store(client, encode(envelope), meta)
    return envelopes


def _screenshot(driver: Any, name: str, height: int, width: int = 1280) -> None:
    folder = os.environ.get("AGORA_DASHBOARD_SCREENSHOTS")
    if not folder:
        return
    driver.set_window_size(width, height)
    Path(folder).mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(Path(folder) / name))
    driver.set_window_size(1280, 900)


def test_sign_in_see_a_recording_requeue_a_dead_letter_sign_out(
        base_url: str, browser: Any, redis_client: redis.Redis,
        start_worker: Callable[..., Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    def find(css: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, css)

    def navigate(css: str) -> None:
        """Click what leads to another page, and wait until that page replaced this one."""
        page = browser.find_element(By.TAG_NAME, "html")
        find(css).click()
        WebDriverWait(browser, 30).until(expected_conditions.staleness_of(page))

    envelopes = _store_recording(redis_client)
    for i, kind in enumerate(("composite", "web", "individual")):
        simulate(redis_client, f"{i:x}" * 32, kind, with_errors=kind == "web",
                 with_failover=kind == "individual", skip=(6,) if kind == "composite" else ())
    start_worker("w1")
    last = envelopes[-1]["payload"]["sequence"]
    wait_for(lambda: any(s.sequence == last and s.runs
                         for s in recording_timeline.load(redis_client, SID)),
             timeout=90, message="the recording's last event handled")
    wait_for(lambda: deadletters.count(redis_client) == 1, timeout=60,
             message="the rejected run dead-lettered")

    # Every page sends a visitor without the session to the sign-in form.
    browser.get(f"{base_url}/ui/")
    assert "/ui/login" in browser.current_url
    find("#token").send_keys(TOKEN)
    navigate("#sign-in")
    wait_for(lambda: browser.find_elements(By.ID, "recordings"), message="the list")
    listed = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#recordings a.sid")]
    assert SID in listed and len(listed) == 4
    _screenshot(browser, "dashboard-list.png", 900)
    _screenshot(browser, "dashboard-phone-list.png", 844, width=390)

    navigate(f'a[href="/ui/recordings/{SID}"]')
    wait_for(lambda: browser.find_elements(By.ID, "timeline"), message="the recording")
    rows = browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    marks = [r.get_attribute("data-seq") or f"gap {r.get_attribute('data-gap')}"
             for r in rows]
    expected = [str(e["payload"]["sequence"]) for e in envelopes
                if e["payload"]["sequence"] != GAP]
    expected.insert(GAP, f"gap {GAP}-{GAP}")
    assert marks == expected
    gap_row = find(f'tr[data-gap="{GAP}-{GAP}"]')
    assert "gap skipped" in gap_row.text and gap_row.is_displayed()
    # Marked by the stylesheet too (which the page's Content-Security-Policy allows).
    cell = gap_row.find_element(By.TAG_NAME, "td")
    assert cell.value_of_css_property("background-color") == "rgba(255, 246, 230, 1)"
    rejected = find(f'tr[data-seq="{REJECTED}"]').text
    assert "e2e.every: rejected" in rejected and " ms" in rejected
    # Every event is on the timeline (written with its fold, in the turn path).
    assert "(event not recorded)" not in find("#timeline").text
    _screenshot(browser, "dashboard-recording.png", 1700)
    _screenshot(browser, "dashboard-phone.png", 844, width=390)

    # Requeue the dead letter: ticked, asked, confirmed.
    redis_client.delete(f"t:ctl:{SID}:{REJECTED}")
    (letter,) = deadletters.list_(redis_client)
    navigate('a[href="/ui/deadletters"]')
    find(f'input[name="id"][value="{letter.id}"]').click()
    navigate("#requeue-selected")
    assert "Requeue 1 dead letter?" in find("h1").text
    assert deadletters.count(redis_client) == 1
    navigate("#confirm-requeue")
    assert "Requeued 1 of 1." in find(".flash").text
    assert deadletters.count(redis_client) == 0
    wait_for(lambda: any(r.get("redriven") and r.get("outcome") == "done"
                         for s in recording_timeline.load(redis_client, SID)
                         if s.sequence == REJECTED for r in s.runs),
             timeout=60, message="the handler run again from its dead letter")
    browser.get(f"{base_url}/ui/recordings/{SID}")
    assert "re-run from its dead letter" in find(f'tr[data-seq="{REJECTED}"]').text
    assert store.load(redis_client, SID) is not None

    navigate("#sign-out")
    assert "/ui/login" in browser.current_url
    browser.get(f"{base_url}/ui/recordings/{SID}")
    assert "/ui/login" in browser.current_url
    assert not browser.find_elements(By.ID, "timeline")
