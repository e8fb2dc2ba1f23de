"""What the Chromium tests drive: Debian's chromium through Playwright, a tiny static site
on its own loopback port (another origin than the gateway's), the page it serves, and
the screenshots kept as test artifacts.

- The browser is `/usr/bin/chromium`, never a downloaded one; without it the tests fail
  (never skip) saying that `.ci/run` installs it.
- `Site` serves `client.html` (the harness page below, which imports the client from the
  gateway's `/v1/client.js`) and `/token?tenant=..&ttl=..`, which mints a short-lived
  token the way an app's backend would; it counts what it minted.
- Artifacts go to `$LQ_TEST_ARTIFACTS/<test>/` (default `test-artifacts/` at the root).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.gateway_helpers import token

__all__ = ["CHROMIUM", "Site", "artifacts_dir", "chromium", "harness_page", "open_page"]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's headless chromium under Playwright; a test fails when it is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests drive Debian's chromium, "
                    "which .ci/run installs (apt-get install chromium); never a downloaded "
                    "browser", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def artifacts_dir(test_name: str) -> Path:
    base = Path(os.environ.get("LQ_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    path = base / "test_browser" / test_name
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_page(context: BrowserContext, url: str, errors: list[str]) -> Page:
    """A new page at `url`; uncaught page errors are appended to `errors`."""
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(f"{url}: {error}"))
    page.goto(url)
    return page


class Site:
    """A static site on 127.0.0.1 (its own origin): pages by path, and `/token`."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.minted: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"site-{self.port}",
                                       daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mint(self, query: dict[str, list[str]]) -> str:
        tok = token(query["tenant"][0], ttl=int(query["ttl"][0]))
        self.minted.append(tok)
        return tok

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/token":
                self._send(200, "text/plain", site.mint(parse_qs(url.query)))
            elif url.path in site.pages:
                self._send(200, "text/html; charset=utf-8", site.pages[url.path])
            else:
                self._send(404, "text/plain", "not found")

        def _send(self, status: int, media_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output stays readable

    return Handler


def harness_page(gateway: str) -> str:
    """A page that imports the client from `gateway` and follows queries on command:
    `follow(name, {transport, token | tokenUrl, query})` connects a client (counting its
    EventSources' URLs, resets and tokens) and renders its view; `state(name)` reads it
    back. `window.importError` says why the import failed (CORS, for a refused origin)."""
    return _HARNESS.replace("__GATEWAY__", gateway)


_HARNESS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lq from another origin</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1rem 2rem; }
  section { display: inline-block; vertical-align: top; margin-right: 2rem; }
  table { border-collapse: collapse; }
  td, th { border-bottom: 1px solid #ddd; padding: .2rem .6rem; }
  .live { color: #1f8a4c; } .reconnecting, .connecting { color: #b5651d; }
  .offline { color: #a12a2a; }
</style></head>
<body>
<h1>a page on <span id="origin"></span>, a gateway on __GATEWAY__</h1>
<p id="import">importing the client...</p>
<div id="views"></div>
<script type="module">
const GATEWAY = "__GATEWAY__";
const $ = (id) => document.getElementById(id);
$("origin").textContent = location.origin;
const runs = {};
let lq = null;
try {
  lq = await import(`${GATEWAY}/v1/client.js`);
  $("import").textContent = "the client is imported from the gateway";
} catch (error) {
  window.importError = String(error);
  $("import").textContent = `the client could not be imported: ${error}`;
}

function counting(urls) {  // an EventSource that records the URLs it opened
  return class extends EventSource {
    constructor(url, init) { super(url, init); urls.push(String(url)); }
  };
}

function render(name) {
  const run = runs[name];
  let section = $(`view-${name}`);
  if (!section) {
    section = document.createElement("section");
    section.id = `view-${name}`;
    $("views").append(section);
  }
  const rows = run.view.rows.map((r) =>
    `<tr data-id="${r.id}" data-version="${r.version}"><td>${r.id}</td>` +
    `<td>${JSON.stringify(r.row)}</td><td>v${r.version}</td></tr>`).join("");
  section.innerHTML = `<h2>${name}: <span class="${run.view.status}">${run.view.status}</span>` +
    ` over ${run.client.transport}</h2><p>resets ${run.resets}, streams ${run.esUrls.length},` +
    ` tokens ${run.tokens}</p><table><tbody>${rows}</tbody></table>`;
}

window.follow = (name, { transport, token, tokenUrl, query }) => {
  const run = { esUrls: [], resets: 0, resetOps: 0, tokens: 0, errors: [], statuses: [] };
  let cached = null;
  const getToken = tokenUrl === undefined ? () => token : async () => {
    // as an app would: keep a token until it has less than 2 s left
    if (cached && lq.tokenExpiry(cached) * 1000 - Date.now() > 2000) return cached;
    cached = await (await fetch(tokenUrl)).text();
    run.tokens++;
    return cached;
  };
  run.client = lq.connect({ url: GATEWAY, getToken, transport,
                            EventSource: counting(run.esUrls) });
  run.view = run.client.subscribe(query);
  run.view.on("reset", () => { run.resets++; });
  run.view.on("change", (message) => {
    if (message.op === "reset") run.resetOps++;
    render(name);
  });
  run.view.on("status", (status) => { run.statuses.push(status); render(name); });
  run.view.on("error", (error) => { run.errors.push(`${error.code}: ${error.message}`); });
  runs[name] = run;
  render(name);
};

window.state = (name) => {
  const run = runs[name];
  return { rows: run.view.rows.map((r) => [r.id, r.version]), synced: run.view.synced,
           status: run.view.status, transport: run.client.transport, resets: run.resets,
           resetOps: run.resetOps, restarts: run.view.restarts, esUrls: run.esUrls,
           tokens: run.tokens, errors: run.errors, statuses: run.statuses };
};

window.client = (name) => runs[name].client;
window.ready = true;
</script>
</body></html>
"""
