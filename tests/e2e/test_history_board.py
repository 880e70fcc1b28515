"""The board at a past moment in a real headless Chromium (issue 21): the history sink fills the
store from a namespace's real topics, a real worker serves the board on that store, and the
time control shows the map as the situations topic read up to the chosen moment says.

Scenario: two hours of the SYNTHETIC city (the worker's own code, bench/history_feed.py) are
on the topics; an operator signs in, picks a moment in the past, and every kelurahan's colour
and the list's reasons are those of the topic replayed to that moment; the JSON route gives
the same; a kelurahan's timeline lists its level changes; back to live, the live picture.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.harness import Namespace, Worker, wait_until
from bench.history_feed import HistoryFeed, board_at, build, publish, read_topics, sink_into
from processors.history_rows import SITUATIONS
from processors.neighbourhood import SmallCellRule, Tally, indicator
from processors.reports import previous_month
from processors.state import to_ms
from schemas.codec import encode
from streams.history_web import WIB
from streams.web import situation_json
from tests.e2e.test_board import UPDATE_TIMEOUT_MS, browser, signed_in_page
from tests.integration.test_web_api import BoardAccess, board_access, get_json
from topics import catalog
from topics.catalog import TopicCatalog

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # the fixture, imported to be used here

SMALL_RW = "36.72.01.1001.004"


@pytest.fixture(scope="module")
def namespace(broker: str) -> Namespace:
    return Namespace.create(broker, "history-board")


@pytest.fixture(scope="module")
def names(namespace: Namespace) -> TopicCatalog:
    return TopicCatalog.from_env({**os.environ, **namespace.env})


@pytest.fixture(scope="module")
def feed(namespace: Namespace, names: TopicCatalog) -> HistoryFeed:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    feed = build(now - timedelta(hours=3), 2.0, seed=21)
    # an RW the worker withheld this month (1 unemployed: SMALL_COUNT) after 5 of 70 the
    # month before, as the worker's processor writes them (docs/smart-village.md)
    month = now.astimezone(WIB).strftime("%Y-%m")
    cells: tuple[tuple[str, int, SmallCellRule | None], ...] = (
        (previous_month(month), 5, None), (month, 1, "SMALL_COUNT"))
    for period, unemployed, rule in cells:
        record = indicator(SMALL_RW, "RW", period, Tally(3, 3, 3, 0, 150, 70, unemployed),
                           now, True, rule)
        feed.records.append((catalog.NEIGHBOURHOOD_INDICATORS, f"{SMALL_RW}|{period}".encode(),
                             encode("org.cityops.NeighbourhoodIndicator", record)))
    publish(namespace.bootstrap, feed, names=names)
    return feed


@pytest.fixture(scope="module")
def store_url(namespace: Namespace, names: TopicCatalog, feed: HistoryFeed,
              tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'history.sqlite3'}"
    store = sink_into(namespace.bootstrap, url, names=names)
    assert store.count(SITUATIONS) == feed.count(catalog.SITUATIONS)
    return url


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> BoardAccess:
    return board_access(tmp_path_factory.mktemp("history-access"))


@pytest.fixture(scope="module")
def worker(namespace: Namespace, store_url: str, tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path, access: BoardAccess) -> Iterator[Worker]:
    with namespace.worker(f"history-{uuid.uuid4().hex[:8]}", artifacts_dir /
                          "history-board-worker.log", tmp_path_factory.mktemp("history-w"),
                          CITYOPS_HISTORY_URL=store_url, **access.env) as process:
        wait_until(lambda: get_json(process.web_port, "/api/situations",
                                    access.token)[1]["ready"] is True)
        yield process


def test_the_time_control_shows_the_board_as_the_topic_said_at_that_moment(
        browser: Any, namespace: Namespace, names: TopicCatalog, feed: HistoryFeed,
        worker: Worker, access: BoardAccess, artifacts_dir: Path) -> None:
    assert feed.start is not None
    moment = feed.start + timedelta(minutes=75)
    situations = read_topics(namespace.bootstrap, [catalog.SITUATIONS],
                             names=names)[catalog.SITUATIONS.name]
    expected = board_at(situations, to_ms(moment))
    wards = {code: s for code, s in expected.items() if s["scope"] == "KELURAHAN"}
    assert len({s["level"] for s in wards.values()}) >= 2  # a picture worth checking

    # the JSON route: the same bodies the topic holds
    status, body = get_json(worker.web_port, f"/api/history/situations?at={to_ms(moment)}",
                            access.token)
    assert status == 200
    assert {s["scope_code"]: s for s in body["kelurahan"]} == {
        code: situation_json(s) for code, s in wards.items()}
    assert get_json(worker.web_port, "/api/history/situations", None)[0] == 401

    base_url = f"http://127.0.0.1:{worker.web_port}"
    page = signed_in_page(browser, base_url, "vera", access.passwords["vera"],
                          {"width": 1600, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.wait_for_selector("#connection[data-state='live']", timeout=UPDATE_TIMEOUT_MS)
    page.fill("#history-at", moment.astimezone(WIB).strftime("%Y-%m-%dT%H:%M"))
    page.click("#history-show")
    page.wait_for_selector("#connection[data-state='past']", timeout=UPDATE_TIMEOUT_MS)
    assert page.locator("#history-banner").inner_text().startswith("Board as it was at ")
    shown = {path.get_attribute("data-code"): path.get_attribute("data-level")
             for path in page.locator("path.ward").all()}
    assert len(shown) == 43
    assert shown == {code: (wards[code]["level"] if code in wards else "NONE")
                     for code in shown}
    worst = max(wards.values(), key=lambda s: ({"CRITICAL": 4, "ALERT": 3, "WATCH": 2,
                                                "NORMAL": 1}.get(s["level"], 0),
                                               s["scope_code"]))
    if worst["level"] != "NORMAL":
        item = page.locator(f"#ward-list li[data-code='{worst['scope_code']}']")
        assert item.locator(".reasons li").all_inner_texts() == worst["reasons"]
    page.screenshot(path=str(artifacts_dir / "history-board-past.png"))

    # the kelurahan's timeline over 24 h: its level changes, as the API lists them
    code = worst["scope_code"]
    page.select_option("#history-ward", code)
    page.click("#history-24h")
    page.wait_for_selector("#history-timeline li", timeout=UPDATE_TIMEOUT_MS)
    timeline = get_json(worker.web_port, f"/api/history/wards/{code}/timeline?hours=24",
                        access.token)[1]
    assert len(timeline["changes"]) >= 1
    assert page.locator("#history-timeline li .pill").all_inner_texts() == [
        c["level"] for c in timeline["changes"]]

    # a closed-case search: the table lists what the API lists
    page.click("#history-search")
    page.wait_for_selector("#history-cases .count", timeout=UPDATE_TIMEOUT_MS)
    closed = get_json(worker.web_port, "/api/history/cases", access.token)[1]
    assert page.locator("#history-cases .count").inner_text().startswith(f"{closed['count']} ")
    assert page.locator("#history-cases tr[data-incident]").count() == len(closed["cases"])

    # back to the present
    page.click("#history-live")
    page.wait_for_selector("#connection[data-state='live']", timeout=UPDATE_TIMEOUT_MS)
    assert page.locator("#history-banner").is_hidden()

    # the printable monthly report of the moment's month, with its CSV links
    month = moment.astimezone(WIB).strftime("%Y-%m")
    page.goto(f"{base_url}/board/report?month={month}")
    page.wait_for_selector("#report-incidents", timeout=UPDATE_TIMEOUT_MS)
    report = get_json(worker.web_port, f"/api/reports/monthly?month={month}", access.token)[1]
    assert page.locator("#report-incidents tr").count() == 1 + len(report["incidents"])
    assert page.locator("#report-assets tr").count() == 1 + len(report["assets"]["per_day"])
    assert [a.inner_text() for a in page.locator("#report-csv a").all()] == [
        "sla", "incidents", "assets", "unemployment"]
    # a withheld small cell reads withheld, not 0 %; the month before keeps its rate
    assert [(r["scope_code"], r["unemployment_rate"], r["unemployed"], r["withheld"],
             r["previous_rate"], r["previous_withheld"], r["change_points"])
            for r in report["unemployment"]] == [
        (SMALL_RW, None, None, "SMALL_COUNT", 5 / 70, None, None)]
    assert page.locator("#report-unemployment tr").nth(1).locator("td").all_inner_texts()[
        2:5] == ["withheld (small cell)", "7.1%", "\u2013"]
    page.screenshot(path=str(artifacts_dir / "history-monthly-report.png"), full_page=True)
    page.close()
    assert errors == []
