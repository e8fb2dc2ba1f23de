// The client over a WebSocket the test plays the gateway on: authentication by first
// message, recorded streams through the whole client, a planted gap (a resubscribe,
// never a wrong list), reconnect with capped jittered backoff and resubscribe, the
// status an app shows, refused tokens, token refresh over the socket, heartbeats.

import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { connect, InvalidQuery, ProtocolViolation, Unauthorized } from "../lq-client.js";
import { FakeClock, fakeFetch, FakeWebSockets, fixture, flush, jwt, messagesOf, plain, subscribes } from "./fakes.js";

const clients = [];
afterEach(() => clients.splice(0).forEach((c) => c.close()));

function setup(options = {}) {
  const sockets = new FakeWebSockets();
  const clock = new FakeClock();
  const statuses = [];
  const client = connect({
    url: "http://gw.test:8080/", token: "tok", WebSocket: sockets.Ctor, clock, random: () => 0.5,
    transport: "ws", fetch: fakeFetch(() => [500, {}]), heartbeat: 1e9, ...options,
  });
  client.on("status", (s) => statuses.push(s));
  clients.push(client);
  return { client, sockets, clock, statuses };
}

/** Plays a fixture's server frames on `ws`, renaming its sub to `sub`, up to seq `until`. */
function play(ws, name, sub, { until = Infinity, from = 0 } = {}) {
  for (const frame of fixture(name).frames) {
    if (frame.sent || frame.type === "ready") continue;
    const renamed = (m) => ({ ...m, sub });
    const messages = (Array.isArray(frame) ? frame : [frame]).filter((m) => (m.seq ?? 0) <= until && (m.seq ?? from) >= from);
    if (messages.length) ws.receive(Array.isArray(frame) ? messages.map(renamed) : renamed(messages[0]));
  }
}


describe("connecting", () => {
  test("authenticates with its first message; the token is never in the URL", async () => {
    const { sockets, client, statuses } = setup();
    await flush();
    assert.equal(sockets.last.url, "ws://gw.test:8080/v1/ws");
    assert.equal(client.status, "connecting");
    const ws = await sockets.accept();
    assert.deepEqual(ws.sent[0], { type: "auth", token: "tok" });
    assert.ok(!ws.url.includes("tok"));
    assert.deepEqual(statuses, ["live"]);
  });

  test("https becomes wss", async () => {
    const { sockets } = setup({ url: "https://gw.test" });
    await flush();
    assert.equal(sockets.last.url, "wss://gw.test/v1/ws");
  });

  test("a view subscribes after ready, not before", async () => {
    const { sockets, client } = setup();
    const view = client.subscribe({ entity: "tasks", limit: 3 });
    await flush();
    sockets.last.open();
    assert.equal(subscribes(sockets.last).length, 0);
    sockets.last.receive({ type: "ready", tenant: "t" });
    assert.deepEqual(subscribes(sockets.last), [{ type: "subscribe", sub: view.sub, query: { entity: "tasks", limit: 3 } }]);
  });
});

describe("recorded streams through the client", () => {
  for (const name of ["window", "changes", "truncated"]) {
    test(`${name}: the view's rows at every checkpoint`, async () => {
      const { sockets, client } = setup();
      const f = fixture(name);
      const view = client.subscribe(f.query);
      const ws = await sockets.accept();
      const seen = [];
      view.on("change", (m) => seen.push(m.seq));
      for (const cp of f.checkpoints) {
        play(ws, name, view.sub, { from: (seen.at(-1) ?? 0) + 1, until: cp.seq });
        const sort = (rows) => (f.query.mode === "changes" ? [...rows].sort((a, b) => (a.id < b.id ? -1 : 1)) : rows);
        if (name !== "truncated") assert.deepEqual(sort(plain(view.rows)), sort(cp.rows), cp.note);
      }
      assert.equal(view.status, "live");
      assert.equal(view.restarts, 0);
      assert.deepEqual(seen, Array.from(seen, (_, i) => i + 1));
    });
  }

  test("batched frames (a JSON array) apply in order", async () => {
    const { sockets, client } = setup();
    const f = fixture("window");
    const view = client.subscribe(f.query);
    const ws = await sockets.accept();
    ws.receive(messagesOf(f.frames).filter((m) => m.type === "delta").map((m) => ({ ...m, sub: view.sub })));
    assert.deepEqual(plain(view.rows), f.checkpoints.at(-1).rows);
  });

  test("reanchor: the old window's limit holds until the reset, then the new one", async () => {
    const { sockets, client } = setup();
    const f = fixture("reanchor");
    const view = client.subscribe(f.query);
    const ws = await sockets.accept();
    play(ws, "reanchor", view.sub, { until: 4 });
    const cursor = view.rows[1].cursor;
    view.reanchor(cursor, 3);
    assert.deepEqual(ws.sent.at(-1), { type: "reanchor", sub: view.sub, after: cursor, limit: 3 });
    const synced = view.whenSynced();
    play(ws, "reanchor", view.sub, { from: 5, until: 8 });
    await synced;
    assert.deepEqual(plain(view.rows), f.checkpoints[1].rows);
    assert.equal(view.query.limit, 3);
    view.reanchor(null, 2);
    play(ws, "reanchor", view.sub, { from: 9 });
    assert.deepEqual(plain(view.rows), f.checkpoints.at(-1).rows);
    assert.equal(view.restarts, 0);
  });

  test("reanchor's limit applies from its reset on: a larger window fits, the old one's late deltas too", async () => {
    const { sockets, client } = setup();
    const f = fixture("reanchor");
    const view = client.subscribe(f.query); // limit 2
    const ws = await sockets.accept();
    play(ws, "reanchor", view.sub, { until: 4 });
    const [a, c] = view.rows;
    const b = messagesOf(f.frames).find((m) => m.op === "enter" && m.id === "b");
    const d = messagesOf(f.frames).find((m) => m.op === "enter" && m.id === "d");
    const delta = (seq, op, extra) => ({ type: "delta", sub: view.sub, seq, op, ...extra });
    const enter = (seq, r, to) => delta(seq, "enter", { id: r.id, version: r.version, row: r.row, from: -1, to, cursor: r.cursor });
    view.reanchor(null, 3);
    ws.receive([delta(5, "reset"), enter(6, a, 0), enter(7, c, 1), enter(8, b, 2), delta(9, "synced", { count: 3 })]);
    assert.deepEqual(view.rows.map((r) => r.id), ["a", "c", "b"]);
    view.reanchor(null, 1);
    ws.receive([ // the old window (limit 3) goes on until the reset
      delta(10, "leave", { id: "b", version: b.version, from: 2, to: -1 }), enter(11, d, 2),
      delta(12, "reset"), enter(13, a, 0), delta(14, "synced", { count: 1 }),
    ]);
    assert.deepEqual(view.rows.map((r) => r.id), ["a"]);
    assert.equal(view.restarts, 0);
  });

  test("a refused reanchor keeps the old window and query, and rejects whenSynced", async () => {
    const { sockets, client } = setup();
    const view = client.subscribe(fixture("reanchor").query);
    const ws = await sockets.accept();
    play(ws, "reanchor", view.sub, { until: 4 });
    const before = view.rows;
    view.reanchor("bogus", 5);
    const waiting = view.whenSynced();
    ws.receive({ type: "error", sub: view.sub, code: "invalid_query", message: "after: not a cursor" });
    await assert.rejects(waiting, InvalidQuery);
    assert.equal(view.rows, before);
    assert.equal(view.query.after, undefined);
    assert.equal(view.query.limit, 2);
    assert.equal(view.status, "live");
  });
});

describe("a planted gap", () => {
  test("resubscribes under a new sub instead of showing a wrong list", async () => {
    const { sockets, client } = setup();
    const f = fixture("gap");
    const view = client.subscribe(f.query);
    const errors = [];
    view.on("error", (e) => errors.push(e));
    const ws = await sockets.accept();
    play(ws, "gap", view.sub, { until: 7 });
    const before = view.rows;
    assert.equal(view.status, "live");
    play(ws, "gap", "v1", { from: 9, until: 9 }); // seq 8 never came
    assert.equal(view.restarts, 1);
    assert.ok(errors[0] instanceof ProtocolViolation);
    assert.deepEqual(ws.sent.slice(-2), [
      { type: "unsubscribe", sub: "v1" },
      { type: "subscribe", sub: "v1.1", query: f.query },
    ]);
    assert.equal(view.rows, before, "the list before the gap stays until the new snapshot");
    assert.notEqual(view.status, "live");
    play(ws, "gap", "v1", { from: 10 }); // late messages of the old sub are ignored
    assert.equal(view.rows, before);
    play(ws, "window", "v1.1"); // the new subscription, from its reset
    assert.deepEqual(plain(view.rows), fixture("window").checkpoints.at(-1).rows);
    assert.equal(view.status, "live");
  });
});

describe("reconnecting", () => {
  test("a dropped connection: reconnecting, rows kept, then resubscribed and live", async () => {
    const { sockets, client, clock, statuses } = setup();
    const f = fixture("window");
    const view = client.subscribe(f.query);
    const viewStatuses = [];
    view.on("status", (s) => viewStatuses.push(s));
    let ws = await sockets.accept();
    play(ws, "window", view.sub);
    const rows = view.rows;
    ws.drop(1006);
    assert.equal(client.status, "reconnecting");
    assert.equal(view.status, "reconnecting");
    assert.equal(view.synced, false);
    assert.equal(view.rows, rows, "the last list stays visible, marked not live");
    await clock.advance(99);
    assert.equal(sockets.sockets.length, 1, "waits the backoff first");
    await clock.advance(1); // Backoff(first 100) with random 0.5: exactly 100 ms
    ws = await sockets.accept();
    assert.deepEqual(ws.sent.map((m) => m.type), ["auth", "subscribe"]);
    assert.equal(view.status, "reconnecting");
    play(ws, "window", view.sub);
    assert.deepEqual(viewStatuses, ["live", "reconnecting", "live"]);
    assert.deepEqual(statuses, ["live", "reconnecting", "live"]);
  });

  test("failed attempts back off exponentially up to the cap", async () => {
    const { sockets, clock } = setup({ backoff: { first: 100, cap: 1000 } });
    for (let i = 0; i < 6; i += 1) {
      await flush();
      sockets.last.drop(1006); // never opened
      await clock.advance(1000);
    }
    const pauses = clock.delays.filter((d) => d !== 5000); // not the ready timeouts
    assert.deepEqual(pauses, [100, 200, 400, 800, 1000, 1000]);
  });

  test("the jitter spreads pauses within [1 - jitter, 1 + jitter] and under the cap", async () => {
    const { sockets, clock } = setup({ backoff: { first: 100, cap: 1000 }, random: () => 0.999 });
    for (let i = 0; i < 5; i += 1) {
      await flush();
      sockets.last.drop(1006);
      await clock.advance(2000);
    }
    const pauses = clock.delays.filter((d) => d !== 5000);
    assert.deepEqual(pauses.map(Math.round), [150, 300, 600, 1000, 1000]);
  });

  test("a drain (1001) reconnects at once", async () => {
    const { sockets, clock } = setup();
    const ws = await sockets.accept();
    ws.drop(1001, "going away");
    await clock.advance(0);
    assert.equal(sockets.sockets.length, 2);
  });

  test("no ready within connectTimeout: the attempt fails and is retried", async () => {
    const { sockets, clock, client } = setup({ connectTimeout: 500 });
    await flush();
    sockets.last.open();
    await clock.advance(500);
    assert.equal(sockets.sockets[0].closeCode, 1000);
    assert.match(client.error.message, /no `ready` within 500 ms/);
    await clock.advance(100);
    assert.equal(sockets.sockets.length, 2);
  });

  test("a connection silent for a heartbeat is dropped and replaced", async () => {
    const { sockets, clock, client } = setup({ heartbeat: 1000 });
    const ws = await sockets.accept();
    await clock.advance(1000);
    assert.equal(ws.sent.at(-1).type, "ping");
    ws.receive({ type: "pong", t: 1 });
    await clock.advance(1000);
    assert.equal(client.status, "live", "a pong keeps it");
    await clock.advance(1000); // no answer to the last ping
    assert.equal(client.status, "reconnecting");
    assert.equal(ws.closeCode, 1000);
  });

  test("a subscribe refused for now (overloaded) is asked again after a pause", async () => {
    const { sockets, client, clock } = setup();
    const view = client.subscribe({ entity: "tasks", limit: 3 });
    const ws = await sockets.accept();
    ws.receive({ type: "error", sub: view.sub, code: "overloaded", message: "busy" });
    assert.equal(view.ended, false);
    await clock.advance(100);
    assert.equal(subscribes(ws).length, 2);
  });

  test("a refused query ends the view with its error", async () => {
    const { sockets, client } = setup();
    const view = client.subscribe({ entity: "tasks", limit: 0 });
    const waiting = view.whenSynced();
    const ws = await sockets.accept();
    ws.receive({ type: "error", sub: view.sub, code: "invalid_query", message: "limit: 1 to 1000" });
    await assert.rejects(waiting, (e) => e instanceof InvalidQuery && e.sub === view.sub);
    assert.equal(view.status, "offline");
    assert.equal(client.status, "live");
  });
});

describe("tokens", () => {
  test("a fixed token refused (4401) is final: offline, views end, no retry", async () => {
    const { sockets, client, clock } = setup();
    const view = client.subscribe({ entity: "tasks", limit: 3 });
    const ws = await sockets.accept();
    ws.receive({ type: "error", sub: null, code: "unauthorized", message: "token expired" });
    ws.drop(4401, "unauthorized");
    await flush();
    assert.equal(client.status, "offline");
    assert.ok(client.error instanceof Unauthorized);
    assert.equal(client.error.message, "token expired");
    assert.equal(view.status, "offline");
    assert.ok(view.error instanceof Unauthorized);
    await clock.advance(60000);
    assert.equal(sockets.sockets.length, 1);
  });

  test("4401 with a callback: a different token is tried at once", async () => {
    let token = "old";
    let asked = 0;
    const { sockets, clock } = setup({ token: undefined, getToken: () => { asked += 1; return token; } });
    const ws = await sockets.accept();
    token = "new";
    ws.drop(4401);
    await clock.advance(0);
    const next = await sockets.accept();
    assert.deepEqual(next.sent[0], { type: "auth", token: "new" });
    assert.equal(asked, 2);
  });

  test("4403 with a callback that returns the same token: offline without knocking again", async () => {
    const { sockets, client, clock } = setup({ token: undefined, getToken: async () => "same" });
    const ws = await sockets.accept();
    ws.drop(4403, "forbidden");
    await clock.advance(10000);
    assert.equal(sockets.sockets.length, 1);
    assert.equal(client.status, "offline");
    assert.equal(client.error.code, "forbidden");
  });

  test("a fresh token refused right away is final too", async () => {
    let n = 0;
    const { sockets, client, clock } = setup({ token: undefined, getToken: () => `t${++n}` });
    let ws = await sockets.accept();
    ws.drop(4401);
    await clock.advance(0);
    ws = sockets.last;
    ws.open();
    ws.drop(4401); // refused before ready
    await clock.advance(10000);
    assert.equal(sockets.sockets.length, 2);
    assert.equal(client.status, "offline");
  });

  test("getToken is asked again before exp, and the token refreshed over the socket", async () => {
    const clock = new FakeClock();
    const exp = (clock.now() + 100_000) / 1000;
    const tokens = [jwt({ exp }), jwt({ exp: exp + 100 })];
    let asked = 0;
    const { sockets } = setup({ clock, token: undefined, getToken: () => tokens[Math.min(asked++, 1)] });
    const ws = await sockets.accept();
    assert.equal(asked, 1);
    await clock.advance(79_000);
    assert.equal(asked, 1);
    await clock.advance(1_000); // 80 % of the 100 s left
    assert.equal(asked, 2);
    assert.deepEqual(ws.sent.at(-1), { type: "auth", token: tokens[1] });
    assert.equal(sockets.sockets.length, 1, "the same connection goes on");
  });

  test("getToken is asked on every reconnect", async () => {
    let asked = 0;
    const { sockets, clock } = setup({ token: undefined, getToken: () => { asked += 1; return "t"; } });
    const ws = await sockets.accept();
    ws.drop(1006);
    await clock.advance(100);
    await sockets.accept();
    assert.equal(asked, 2);
  });

  test("a lost scope on refresh (forbidden after subscribed) ends that view only", async () => {
    const { sockets, client } = setup();
    const a = client.subscribe({ entity: "a", limit: 1 });
    const b = client.subscribe({ entity: "b", limit: 1 });
    const ws = await sockets.accept();
    ws.receive([{ type: "subscribed", sub: a.sub }, { type: "subscribed", sub: b.sub }]);
    ws.receive({ type: "error", sub: a.sub, code: "forbidden", message: "lq:read:a" });
    assert.equal(a.status, "offline");
    assert.equal(b.ended, false);
  });
});

describe("views", () => {
  test("unsubscribe sends it, ends the view, and later messages are ignored", async () => {
    const { sockets, client } = setup();
    const view = client.subscribe(fixture("window").query);
    const ws = await sockets.accept();
    play(ws, "window", view.sub, { until: 5 });
    view.unsubscribe();
    assert.deepEqual(ws.sent.at(-1), { type: "unsubscribe", sub: view.sub });
    assert.equal(view.status, "offline");
    assert.deepEqual(client.views, []);
    const rows = view.rows;
    play(ws, "window", view.sub, { from: 6 });
    assert.equal(view.rows, rows);
  });

  test("close() ends everything and stops reconnecting", async () => {
    const { sockets, client, clock } = setup();
    const view = client.subscribe({ entity: "tasks", limit: 3 });
    const ws = await sockets.accept();
    client.close();
    assert.equal(ws.closeCode, 1000);
    assert.equal(client.status, "offline");
    assert.equal(view.status, "offline");
    await clock.advance(60000);
    assert.equal(sockets.sockets.length, 1);
  });

  test("a listener that throws does not break the client", async () => {
    const { sockets, client } = setup();
    const view = client.subscribe(fixture("window").query);
    const reported = [];
    const original = globalThis.reportError;
    globalThis.reportError = (e) => reported.push(e);
    try {
      view.on("change", () => { throw new Error("app bug"); });
      const ws = await sockets.accept();
      play(ws, "window", view.sub);
    } finally {
      globalThis.reportError = original;
    }
    assert.deepEqual(plain(view.rows), fixture("window").checkpoints.at(-1).rows);
    assert.equal(reported.length, 18);
  });
});
