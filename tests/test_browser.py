"""Issue 13 in a real Chromium (Debian's, driven by Playwright) against a real cluster
(two shard processes and a gateway with the demo on, on the session's Redis):

1. a page on another origin uses the JavaScript client over WebSocket and over SSE
   (tickets), and makes data calls; its views converge to a fresh query, and an origin
   the gateway does not allow can neither import the client nor read or write data;
2. an SSE view whose short-lived token is refreshed goes on without a second `reset`;
3. the demo page at `/`: its table equals a fresh query after every write (over HTTP and
   by its own buttons), and recovers when the shard that owns its partition is killed.

The demo test kills a shard, so it runs last (the cluster is shared by the module).
Every test saves screenshots under `$LQ_TEST_ARTIFACTS/test_browser/<test>/`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from playwright.sync_api import Error as PlaywrightError

from cluster.partition import owner, partition_of
from tests.browser_pages import Site, artifacts_dir, chromium, harness_page, open_page
from tests.gateway_helpers import auth, token
from tests.live_clients import new_tenant
from tests.live_cluster import LiveCluster
from tests.redis_servers import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SHARDS = ["shard-0", "shard-1"]
Q = {"entity": "tasks", "sort": ["-p", "id"], "limit": 5}
Listed = list[tuple[str, int]]


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[Site, Site]]:
    """Two static sites: the first one's origin is allowed by the gateway, the other not."""
    allowed, refused = Site(), Site()
    try:
        yield allowed, refused
    finally:
        allowed.close()
        refused.close()


@pytest.fixture(scope="module")
def cluster(redis_standalone: RedisServer, sites: tuple[Site, Site]) -> Iterator[LiveCluster]:
    with LiveCluster(redis_standalone.url, LQ_DEMO="1",
                     LQ_CORS_ORIGINS=sites[0].origin) as c:
        for shard in SHARDS:
            c.start_shard(shard)
        c.start_gateway()
        c.wait_ready()
        for site in sites:
            site.pages["/client.html"] = harness_page(c.url())
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


class Run:
    """One test's browser context, its uncaught page errors and its screenshots."""

    def __init__(self, browser: Browser, folder: Path) -> None:
        self.context: BrowserContext = browser.new_context(viewport={"width": 1100,
                                                                     "height": 700})
        self.errors: list[str] = []
        self.folder = folder
        self.pages: list[Page] = []

    def open(self, url: str) -> Page:
        page = open_page(self.context, url, self.errors)
        self.pages.append(page)
        return page

    def shot(self, page: Page, name: str) -> None:
        page.screenshot(path=str(self.folder / f"{name}.png"))


@pytest.fixture
def run(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Run]:
    r = Run(browser, artifacts_dir(request.node.name))
    try:
        yield r
        assert r.errors == [], f"uncaught errors in the page: {r.errors}"
    finally:
        for i, page in enumerate(r.pages):  # the last state, passed or failed
            with contextlib.suppress(PlaywrightError):  # a crashed page: the error says it
                page.screenshot(path=str(r.folder / f"end-{i}.png"))
        r.context.close()


@pytest.fixture
def http(cluster: LiveCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url(), timeout=10) as client:
        yield client


def fresh(http: httpx.Client, tok: str, query: dict[str, Any]) -> Listed:
    """The oracle: ids and versions of the query's first `limit` rows, read now over HTTP."""
    body = {k: v for k, v in query.items() if k not in ("entity", "mode")}
    r = http.post(f"/v1/entities/{query['entity']}/query", json=body, headers=auth(tok))
    assert r.status_code == 200, r.text
    return [(x["id"], x["version"]) for x in r.json()["rows"]]


def converge(seen: Callable[[], tuple[Listed, bool]], oracle: Callable[[], Listed], what: str,
             timeout: float = 10) -> Listed:
    """Wait until the view is live and lists what a fresh query answers (read after it)."""
    deadline = time.monotonic() + timeout
    while True:
        rows, live = seen()
        want = oracle()
        if live and rows == want:
            return want
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: the view (live={live}) {rows} != a fresh query {want}")
        time.sleep(0.05)


def harness_view(page: Page, name: str) -> Callable[[], tuple[Listed, bool]]:
    def seen() -> tuple[Listed, bool]:
        s = page.evaluate("(name) => state(name)", name)
        return [(i, v) for i, v in s["rows"]], s["status"] == "live" and s["synced"]
    return seen


def test_a_page_on_another_origin_follows_over_ws_and_sse_and_writes(
    cluster: LiveCluster, sites: tuple[Site, Site], run: Run, http: httpx.Client,
) -> None:
    allowed, refused = sites
    tok = token(new_tenant())
    page = run.open(f"{allowed.origin}/client.html")
    page.wait_for_function("window.ready === true")
    assert page.evaluate("window.importError ?? null") is None
    page.evaluate("""([token, query]) => {
        follow("ws", {transport: "ws", token, query});
        follow("sse", {transport: "sse", token, query});
    }""", [tok, Q])
    oracle = lambda: fresh(http, tok, Q)  # noqa: E731
    for name in ("ws", "sse"):
        converge(harness_view(page, name), oracle, f"{name}, empty")
    # writes from the page, through either client, and from a server over HTTP
    for i in range(8):
        by = "ws" if i % 2 else "sse"
        page.evaluate("([by, i]) => client(by).put('tasks', `r${i}`, {p: i * 10, by})", [by, i])
        if i == 5:
            r = http.put("/v1/entities/tasks/rows/r1", json={"p": 99}, headers=auth(tok))
            assert r.status_code == 200
        for name in ("ws", "sse"):
            converge(harness_view(page, name), oracle, f"{name}, after write {i}")
    page.evaluate("client('sse').patch('tasks', 'r7', {p: 1})")
    page.evaluate("client('ws').delete('tasks', 'r6')")
    want = [(i, v) for i, v in (page.evaluate("""async (q) => (await client("ws").query(
        "tasks", {sort: q.sort, limit: q.limit})).rows.map((r) => [r.id, r.version])""", Q))]
    assert want == fresh(http, tok, Q) and len(want) == Q["limit"]
    for name in ("ws", "sse"):
        converge(harness_view(page, name), oracle, f"{name}, after patch and delete")
    ws, sse = page.evaluate("state('ws')"), page.evaluate("state('sse')")
    assert (ws["transport"], sse["transport"]) == ("ws", "sse")
    assert ws["esUrls"] == [] and len(sse["esUrls"]) == 1
    assert "ticket=" in sse["esUrls"][0] and "token" not in sse["esUrls"][0]
    assert ws["resets"] == sse["resets"] == 1 and ws["errors"] == sse["errors"] == []
    run.shot(page, "allowed-origin")

    # an origin the gateway does not allow: no client, no answers, no writes
    other = run.open(f"{refused.origin}/client.html")
    other.wait_for_function("window.ready === true")
    assert other.evaluate("window.importError ?? null") is not None  # CORS refused it
    probe = """async ([gateway, token]) => {
        const headers = {Authorization: `Bearer ${token}`, "Content-Type": "application/json"};
        const outcome = async (call) => {
            try { return (await call()).status; } catch (error) { return String(error); }
        };
        return [
            await outcome(() => fetch(`${gateway}/v1/entities/tasks/query`, {
                method: "POST", headers, body: JSON.stringify({limit: 5})})),
            await outcome(() => fetch(`${gateway}/v1/entities/tasks/rows/blocked`, {
                method: "PUT", headers, body: JSON.stringify({p: 1000})})),
            await outcome(() => fetch(`${gateway}/healthz`)),
        ];
    }"""
    refused_answers = other.evaluate(probe, [cluster.url(), tok])
    assert all("TypeError" in str(a) for a in refused_answers), refused_answers
    assert http.get("/v1/entities/tasks/rows/blocked", headers=auth(tok)).status_code == 404
    run.shot(other, "refused-origin")
    # the same calls from the allowed origin are answered (so the check above can fail)
    assert page.evaluate(probe, [cluster.url(), tok]) == [200, 200, 200]
    assert fresh(http, tok, Q)[0][0] == "blocked"


def test_a_token_refresh_over_sse_continues_without_a_reset(
    cluster: LiveCluster, sites: tuple[Site, Site], run: Run, http: httpx.Client,
) -> None:
    allowed = sites[0]
    tenant = new_tenant()
    tok = token(tenant)
    page = run.open(f"{allowed.origin}/client.html")
    page.wait_for_function("window.ready === true")
    minted = len(allowed.minted)
    # tokens with 5 s to live: the client renews them at 80 % of that
    page.evaluate("""([tokenUrl, query]) => follow("sse", {transport: "sse", tokenUrl, query})""",
                  [f"/token?tenant={tenant}&ttl=5", Q])
    oracle = lambda: fresh(http, tok, Q)  # noqa: E731
    view = harness_view(page, "sse")
    converge(view, oracle, "subscribed")
    deadline = time.monotonic() + 20
    i = 0
    while len(page.evaluate("state('sse')")["esUrls"]) < 3:  # two refreshes
        assert time.monotonic() < deadline, page.evaluate("state('sse')")
        r = http.put(f"/v1/entities/tasks/rows/w{i % 7}", json={"p": i}, headers=auth(tok))
        assert r.status_code == 200
        i += 1
        time.sleep(0.25)
    for j in range(5):  # more writes after the refreshes
        http.put(f"/v1/entities/tasks/rows/after{j}", json={"p": 100 + j}, headers=auth(tok))
        converge(view, oracle, f"after the refreshes, write {j}")
    state = page.evaluate("state('sse')")
    assert state["resets"] == state["resetOps"] == 1, state
    assert state["restarts"] == 0 and state["errors"] == [], state
    urls = [parse_qs(urlsplit(u).query) for u in state["esUrls"]]
    tickets = [u["ticket"][0] for u in urls]
    assert len(set(tickets)) == len(tickets), "a ticket was used twice"
    assert all("token" not in u for u in urls)
    resumed = [u["last_event_id"][0] for u in urls[1:]]
    # every new stream continued the first one: the same stream name, later events
    names = {e.rsplit(".", 1)[0] for e in resumed}
    seqs = [int(e.rsplit(".", 1)[1]) for e in resumed]
    assert len(names) == 1 and seqs == sorted(seqs) and seqs[0] > 1, resumed
    assert state["tokens"] >= 3 and len(allowed.minted) - minted == state["tokens"]
    assert "reconnecting" not in state["statuses"], state["statuses"]
    run.shot(page, "after-refreshes")


def demo_view(page: Page) -> Callable[[], tuple[Listed, bool]]:
    def seen() -> tuple[Listed, bool]:
        s = page.evaluate("""() => ({
            status: document.querySelector("#status").dataset.status,
            synced: document.querySelector("#rows").dataset.synced,
            rows: [...document.querySelectorAll("#rows tbody tr")].map(
                (tr) => [tr.dataset.id, Number(tr.dataset.version)]),
        })""")
        return [(i, v) for i, v in s["rows"]], s["status"] == "live" and s["synced"] == "true"
    return seen


def test_the_demo_page_follows_writes_and_survives_a_killed_shard(
    cluster: LiveCluster, run: Run, http: httpx.Client,
) -> None:
    demo = token("demo", "lq:read:demo lq:write:demo")
    page = run.open(f"{cluster.url()}/")
    page.wait_for_selector("#status[data-status=live]")
    view = demo_view(page)

    def oracle() -> Listed:
        return fresh(http, demo, page.evaluate("window.lqDemo.query()"))

    def put(row_id: str, row: dict[str, Any]) -> None:
        r = http.put(f"/v1/entities/demo/rows/{row_id}", json=row, headers=auth(demo))
        assert r.status_code == 200, r.text

    names = ["ada", "alan", "barbara", "edsger", "grace", "ken", "radia", "tony"]
    for i in range(13):  # past the limit of 10: evictions
        put(f"h{i}", {"name": names[i % 8], "team": ["red", "green", "blue"][i % 3],
                      "score": (i * 37) % 100})
        converge(view, oracle, f"after put {i}")
    for row_id, change in [("h3", {"score": 100}), ("h4", {"team": "blue"}), ("h5", {"score": 0})]:
        r = http.patch(f"/v1/entities/demo/rows/{row_id}", json=change, headers=auth(demo))
        assert r.status_code == 200, r.text
        converge(view, oracle, f"after patching {row_id}")
    assert http.delete("/v1/entities/demo/rows/h3", headers=auth(demo)).status_code == 200
    converge(view, oracle, "after a delete")
    page.select_option("#team", "red")  # a new query: the page subscribes again
    page.select_option("#sort", "name")
    converge(view, oracle, "filtered by team, sorted by name")
    assert page.evaluate("window.lqDemo.query()")["where"] == {"team": "red"}
    page.select_option("#team", "")
    page.select_option("#sort", "-score")
    converge(view, oracle, "back to the top scores")

    # the page's own buttons: count the writes they finish
    page.evaluate("""() => {
        const client = window.lqDemo.client;
        window.writes = 0;
        for (const method of ["put", "patch", "delete"]) {
            const call = client[method].bind(client);
            client[method] = async (...args) => {
                try { return await call(...args); } finally { window.writes++; }
            };
        }
    }""")

    def count() -> int:
        rows = http.post("/v1/entities/demo/query", json={"limit": 1000}, headers=auth(demo))
        return len(rows.json()["rows"])

    for button, writes, rows in [("#add", 1, 1), ("#update", 1, 0), ("#remove", 1, -1),
                                 ("#burst", 20, None)]:
        before, done = count(), page.evaluate("window.writes")
        page.click(button)
        page.wait_for_function(f"window.writes >= {done + writes}", timeout=15_000)
        if rows is not None:
            assert count() == before + rows, button
        converge(view, oracle, f"after {button}")
    assert page.locator("#log li.error").count() == 0
    assert page.locator("#log li").count() >= 10
    run.shot(page, "demo")

    # kill the shard that owns the demo's partition: a reset, then the list is exact again
    page.evaluate("""() => {
        window.resets = 0;
        window.lqDemo.view.on("reset", () => { window.resets++; });
    }""")
    victim = owner(partition_of("demo", "demo"), SHARDS)
    assert victim is not None
    cluster.shards[victim].kill()
    put("after-kill", {"name": "margaret", "team": "green", "score": 101})
    page.wait_for_function("window.resets >= 1", timeout=15_000)
    converge(view, oracle, "after the failover", timeout=15)
    put("after-failover", {"name": "frances", "team": "red", "score": 102})
    top = converge(view, oracle, "a write after the failover")
    assert [row_id for row_id, _ in top[:2]] == ["after-failover", "after-kill"]
    run.shot(page, "after-failover")
