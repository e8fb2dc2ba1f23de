// The client over Server-Sent Events the test plays the gateway on: one EventSource per
// view opened with a single-use ticket (never the token), the recorded SSE stream,
// resume with last_event_id after a drop or a token refresh, token_expired, a stream
// the gateway started over, refusals an EventSource cannot read, and the auto fallback
// from a WebSocket that cannot open.

import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { connect, InvalidQuery, Unauthorized } from "../lq-client.js";
import { FakeClock, FakeEventSources, FakeWebSockets, fakeFetch, fixture, flush, jwt, plain } from "./fakes.js";

const clients = [];
afterEach(() => clients.splice(0).forEach((c) => c.close()));

/** A gateway's HTTP side: tickets `k1`, `k2`, ... for `good` tokens, else 401. */
function gateway({ good = () => true, query = () => [200, { rows: [], next: null }] } = {}) {
  let n = 0;
  return fakeFetch((call) => {
    const token = call.headers.Authorization.replace("Bearer ", "");
    if (!good(token)) return [401, { error: { code: "unauthorized", message: "expired" } }];
    if (call.url.endsWith("/v1/tickets")) return [200, { ticket: `k${++n}`, expires_in: 30 }];
    if (call.url.includes("/query")) return query(call);
    return [404, { error: { code: "not_found", message: "no" } }];
  });
}

function setup(options = {}) {
  const sources = new FakeEventSources();
  const clock = new FakeClock();
  const fetch = options.fetch ?? gateway();
  const client = connect({ url: "http://gw.test", token: "tok", transport: "sse", EventSource: sources.Ctor,
    fetch, clock, random: () => 0.5, ...options });
  clients.push(client);
  return { client, sources, clock, fetch };
}

/** Plays the recorded SSE events (test/streams/sse.json) on `es`, from the `from`-th. */
function play(es, { from = 0, until = Infinity, rename } = {}) {
  for (const e of fixture("sse").events.slice(from, until)) {
    let { data, id } = e;
    if (rename) {
      const [name, seq] = id ? id.split(".") : [];
      data = data.replaceAll(`"sub":"${name ?? JSON.parse(data).sub}"`, `"sub":"${rename}"`);
      id = id ? `${rename}.${seq}` : id;
    }
    es.emit(e.event, data, id);
  }
}

describe("streams", () => {
  test("a view opens one stream with a ticket made with the token; the token is not in the URL", async () => {
    const { client, sources, fetch } = setup();
    const f = fixture("sse");
    const view = client.subscribe(f.query);
    await flush();
    const es = sources.last;
    assert.equal(fetch.calls[0].method, "POST");
    assert.equal(fetch.calls[0].url, "http://gw.test/v1/tickets");
    assert.equal(fetch.calls[0].headers.Authorization, "Bearer tok");
    assert.equal(es.url.split("?")[0], "http://gw.test/v1/sse");
    assert.deepEqual(JSON.parse(es.params.get("q")), f.query);
    assert.equal(es.params.get("ticket"), "k1");
    assert.equal(es.params.get("last_event_id"), null);
    assert.ok(!es.url.includes("tok"));
    es.open();
    play(es);
    assert.deepEqual(plain(view.rows), f.rows);
    assert.equal(view.status, "live");
    assert.equal(client.status, "live");
    assert.equal(client.transport, "sse");
  });

  test("a dropped stream reopens with a new ticket and last_event_id, and goes on without reset", async () => {
    const { client, sources, clock } = setup();
    const f = fixture("sse");
    const view = client.subscribe(f.query);
    await flush();
    let es = sources.last;
    es.open();
    play(es, { until: 7 });
    const lastId = f.events[6].id;
    es.fail();
    assert.equal(es.readyState, 2, "the client closes it (the browser would retry a dead ticket)");
    assert.equal(view.status, "reconnecting");
    assert.equal(client.status, "reconnecting");
    await clock.advance(100);
    es = sources.last;
    assert.equal(sources.all.length, 2);
    assert.equal(es.params.get("ticket"), "k2");
    assert.equal(es.params.get("last_event_id"), lastId);
    es.open();
    assert.equal(view.status, "live", "a resumed stream is live at once");
    const resets = [];
    view.on("reset", () => resets.push(1));
    play(es, { from: 7 });
    assert.deepEqual(resets, []);
    assert.deepEqual(plain(view.rows), f.rows);
    assert.equal(view.restarts, 0);
  });

  test("a stream the gateway started over (a new name) restarts the list", async () => {
    const { client, sources, clock } = setup();
    const view = client.subscribe(fixture("sse").query);
    await flush();
    let es = sources.last;
    es.open();
    play(es, { until: 7 });
    es.fail();
    await clock.advance(100);
    es = sources.last;
    es.open();
    play(es, { from: 1, rename: "sNEW" }); // reset at seq 1 under a new name
    assert.deepEqual(plain(view.rows), fixture("sse").rows);
    assert.equal(view.restarts, 0);
    assert.equal(view.status, "live");
  });

  test("a seq gap on a stream opens a fresh one (no last_event_id) instead of a wrong list", async () => {
    const { client, sources } = setup();
    const view = client.subscribe(fixture("sse").query);
    await flush();
    const es = sources.last;
    es.open();
    play(es, { until: 6 });
    const before = view.rows;
    play(es, { from: 7 }); // the 7th event never came
    assert.equal(view.restarts, 1);
    assert.equal(view.rows, before);
    await flush();
    assert.equal(es.readyState, 2);
    assert.equal(sources.all.length, 2);
    assert.equal(sources.last.params.get("last_event_id"), null);
  });

  test("token_expired: a fresh token and ticket, reopened with last_event_id at once", async () => {
    let token = "t1";
    const { client, sources, fetch } = setup({ token: undefined, getToken: () => token,
      fetch: gateway({ good: (t) => t === token }) });
    const view = client.subscribe(fixture("sse").query);
    await flush();
    let es = sources.last;
    es.open();
    play(es, { until: 5 });
    token = "t2";
    es.emit("token_expired", { type: "error", code: "unauthorized", message: "the token has expired" });
    await flush();
    es = sources.last;
    assert.equal(sources.all.length, 2);
    assert.equal(fetch.calls.at(-1).headers.Authorization, "Bearer t2");
    assert.equal(es.params.get("last_event_id"), fixture("sse").events[4].id);
    es.open();
    play(es, { from: 5 });
    assert.deepEqual(plain(view.rows), fixture("sse").rows);
  });

  test("token_expired with nothing new from getToken: offline, Unauthorized", async () => {
    const { client, sources } = setup({ token: undefined, getToken: () => "same" });
    const view = client.subscribe(fixture("sse").query);
    await flush();
    sources.last.open();
    sources.last.emit("token_expired", "{}");
    await flush();
    assert.equal(sources.all.length, 1);
    assert.equal(client.status, "offline");
    assert.ok(view.error instanceof Unauthorized);
  });

  test("the server's `event: error` (unauthorized) is not EventSource's own error", async () => {
    let token = "t1";
    const { client, sources } = setup({ token: undefined, getToken: () => token });
    client.subscribe(fixture("sse").query);
    await flush();
    sources.last.open();
    token = "t2";
    sources.last.emit("error", { type: "error", sub: "s", code: "unauthorized", message: "expired" });
    await flush();
    assert.equal(sources.all.length, 2, "reopened at once, no backoff");
  });

  test("another `event: error` from the server (even not JSON) is reported and the stream reopened", async () => {
    const { client, sources, clock } = setup();
    const view = client.subscribe(fixture("sse").query);
    const errors = [];
    view.on("error", (e) => errors.push(e));
    await flush();
    sources.last.open();
    sources.last.emit("error", "oops");
    assert.equal(sources.last.readyState, 2);
    await clock.advance(100);
    assert.equal(sources.all.length, 2);
    sources.last.open();
    sources.last.emit("error", { type: "error", sub: "s", code: "overloaded", message: "busy" });
    assert.deepEqual(errors.map((e) => [e.constructor.name, e.code]), [["LiveError", "internal"],
      ["Unavailable", "overloaded"]]);
    assert.equal(view.ended, false);
    await clock.advance(100);
    assert.equal(sources.all.length, 3);
  });

  test("the token is refreshed before exp: a new stream continues the old one", async () => {
    const clock = new FakeClock();
    const exp = (clock.now() + 50_000) / 1000;
    const tokens = [jwt({ exp }), jwt({ exp: exp + 60 })];
    let asked = 0;
    const { client, sources } = setup({ clock, token: undefined, getToken: () => tokens[Math.min(asked++, 1)] });
    const view = client.subscribe(fixture("sse").query);
    await flush();
    const first = sources.last;
    first.open();
    play(first, { until: 6 });
    const statuses = [];
    view.on("status", (s) => statuses.push(s));
    client.on("status", (s) => statuses.push(`client ${s}`));
    await clock.advance(39_000);
    assert.equal(sources.all.length, 1);
    await clock.advance(1_000); // 80 % of 50 s
    assert.equal(first.readyState, 2);
    assert.equal(sources.all.length, 2);
    assert.equal(sources.last.params.get("last_event_id"), fixture("sse").events[5].id);
    sources.last.open();
    play(sources.last, { from: 6 });
    assert.deepEqual(plain(view.rows), fixture("sse").rows);
    assert.deepEqual(statuses, [], "a planned switch of streams never shows as reconnecting");
  });

  test("a new view's first stream does not make the client reconnecting", async () => {
    const { client, sources } = setup();
    client.subscribe(fixture("sse").query);
    await flush();
    sources.last.open();
    assert.equal(client.status, "live");
    client.subscribe({ entity: "other", limit: 1 });
    await flush();
    assert.equal(client.status, "live");
    sources.last.fail();
    assert.equal(client.status, "reconnecting");
  });

  test("a stream refused before it opened: the query probe's InvalidQuery ends the view", async () => {
    const fetch = gateway({ query: () => [400, { error: { code: "invalid_query", message: "limit: 1 to 1000" } }] });
    const { client, sources, clock } = setup({ fetch });
    const view = client.subscribe({ entity: "tasks", limit: 0 });
    const waiting = view.whenSynced();
    await flush();
    sources.last.fail();
    await assert.rejects(waiting, InvalidQuery);
    assert.equal(fetch.calls.at(-1).url, "http://gw.test/v1/entities/tasks/query");
    assert.deepEqual(fetch.calls.at(-1).body, { limit: 0 });
    assert.equal(view.status, "offline");
    await clock.advance(10000);
    assert.equal(sources.all.length, 1, "no retry");
  });

  test("a stream that failed to open while the query is fine retries with backoff", async () => {
    const { client, sources, clock } = setup();
    client.subscribe({ entity: "tasks", limit: 2 });
    await flush();
    sources.last.fail();
    await clock.advance(99);
    assert.equal(sources.all.length, 1);
    await clock.advance(1);
    assert.equal(sources.all.length, 2);
  });

  test("a ticket refused with a fixed token: offline", async () => {
    const { client, sources } = setup({ fetch: gateway({ good: () => false }) });
    const view = client.subscribe({ entity: "tasks", limit: 2 });
    await flush();
    assert.equal(sources.all.length, 0);
    assert.equal(client.status, "offline");
    assert.ok(view.error instanceof Unauthorized);
  });

  test("reanchor opens a new stream of the new window", async () => {
    const { client, sources } = setup();
    const view = client.subscribe(fixture("sse").query);
    await flush();
    sources.last.open();
    play(sources.last);
    const cursor = view.rows[0].cursor;
    assert.ok(cursor);
    view.reanchor(cursor, 2);
    await flush();
    const q = JSON.parse(sources.last.params.get("q"));
    assert.equal(q.after, cursor);
    assert.equal(q.limit, 2);
    assert.equal(sources.last.params.get("last_event_id"), null);
    assert.equal(sources.all[0].readyState, 2);
  });

  test("unsubscribe closes the stream", async () => {
    const { client, sources } = setup();
    const view = client.subscribe(fixture("sse").query);
    await flush();
    sources.last.open();
    view.unsubscribe();
    assert.equal(sources.last.readyState, 2);
    assert.equal(view.status, "offline");
  });
});

describe("auto: WebSocket first, SSE when it cannot open", () => {
  function auto(fetch) {
    const sockets = new FakeWebSockets();
    const sources = new FakeEventSources();
    const clock = new FakeClock();
    const client = connect({ url: "http://gw.test", token: "tok", WebSocket: sockets.Ctor,
      EventSource: sources.Ctor, fetch, clock, random: () => 0.5, heartbeat: 1e9 });
    clients.push(client);
    return { client, sockets, sources, clock };
  }

  test("a WebSocket that never opens, while HTTP answers: the views move to SSE", async () => {
    const fetch = gateway();
    const { client, sockets, sources } = auto(fetch);
    const view = client.subscribe(fixture("sse").query);
    await flush();
    assert.equal(client.transport, "ws");
    sockets.last.drop(1006); // blocked by a proxy: error, close, never open
    await flush();
    assert.equal(client.transport, "sse");
    assert.equal(sources.all.length, 1);
    assert.equal(fetch.calls.filter((c) => c.url.endsWith("/v1/tickets")).length, 1, "the probe's ticket is used");
    sources.last.open();
    play(sources.last);
    assert.deepEqual(plain(view.rows), fixture("sse").rows);
    assert.equal(client.status, "live");
  });

  test("a gateway that does not answer at all: stays on WebSocket and retries", async () => {
    const { client, sockets, sources, clock } = auto(fakeFetch(() => ["network"]));
    await flush();
    sockets.last.drop(1006);
    await clock.advance(100);
    assert.equal(client.transport, "ws");
    assert.equal(sockets.sockets.length, 2);
    assert.equal(sources.all.length, 0);
  });

  test("once a WebSocket opened, later failures never fall back", async () => {
    const fetch = gateway();
    const { client, sockets, clock } = auto(fetch);
    const ws = await sockets.accept();
    ws.drop(1006);
    await clock.advance(100);
    sockets.last.drop(1006);
    await clock.advance(1000);
    assert.equal(client.transport, "ws");
    assert.equal(fetch.calls.length, 0);
  });
});
