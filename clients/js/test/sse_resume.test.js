// State-diff resume over SSE (PROTOCOL.md section 5): every reopen of a synced window
// view's stream declares its current list in the URL (`resume`) when the whole URL fits
// `sseUrlLimit` (8 KiB by default) and leaves it out when not; a stream the gateway
// started over (a new name) with `resume` keeps the list and applies the difference
// (played from the WebSocket recording streams/resume.json, as events); `resume_miss`;
// a fresh stream after a violation declares nothing; a stream that declared and did not
// open is retried once without the list (a gateway older than `resume`).

import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { connect } from "../lq-client.js";
import { FakeClock, FakeEventSources, fakeFetch, fixture, flush, plain, settle } from "./fakes.js";

const clients = [];
afterEach(() => clients.splice(0).forEach((c) => c.close()));

const F = fixture("resume");

function setup(options = {}) {
  const sources = new FakeEventSources();
  const clock = new FakeClock();
  let n = 0;
  const fetch = fakeFetch((call) => (call.url.endsWith("/v1/tickets")
    ? [200, { ticket: `k${++n}`, expires_in: 30 }] : [200, { rows: [], next: null }]));
  const client = connect({ url: "http://gw.test", token: "tok", transport: "sse",
    EventSource: sources.Ctor, fetch, clock, random: () => 0.5, ...options });
  clients.push(client);
  return { client, sources, clock };
}

/** The recording's server messages (a group of frames) as events of stream `name`. */
function emit(es, frames, name) {
  const messages = frames.filter((f) => !f.sent).flat();
  for (const m of messages) {
    const data = { ...m, sub: name };
    if (m.type === "delta") es.emit(m.op, data, `${name}.${m.seq}`);
    else es.emit(m.type, data);
  }
}


const declaredIn = (es) => (es.params.has("resume") ? JSON.parse(es.params.get("resume")) : null);

/** A view synced on the recording's first snapshot, its stream dropped and reopened. */
async function reopened(options) {
  const { client, sources, clock } = setup(options);
  const view = client.subscribe(F.query);
  await flush();
  const es = sources.last;
  assert.equal(declaredIn(es), null, "a first stream has nothing to declare");
  es.open();
  emit(es, F.first, "sA");
  await settle();
  assert.deepEqual(plain(view.rows), F.before);
  es.fail();
  await clock.advance(100);
  assert.equal(sources.all.length, 2);
  return { client, sources, clock, view, es2: sources.last };
}

describe("SSE state-diff resume", () => {
  test("a reopened stream's URL declares the synced list, beside last_event_id", async () => {
    const { es2 } = await reopened();
    assert.deepEqual(declaredIn(es2), F.declared);
    assert.equal(es2.params.get("last_event_id"), "sA.7");
    assert.ok(es2.url.length <= 8192);
  });

  test("a stream started over with `resume` keeps the list: the difference, no reset; the next URL declares the new list", async () => {
    const { view, es2, sources, clock } = await reopened();
    const ops = [];
    view.on("change", (m) => ops.push(m.op));
    let resets = 0;
    view.on("reset", () => { resets += 1; });
    es2.open();
    emit(es2, F.resumed, "sB"); // the gateway could not continue sA: a new name, resume
    await settle();
    assert.deepEqual(ops, ["resume", "leave", "move", "enter", "update", "synced"]);
    assert.deepEqual(plain(view.rows), F.after);
    assert.equal(resets, 0);
    assert.equal(view.resumes, 1);
    assert.equal(view.restarts, 0);
    assert.equal(view.digestMismatches, 0);
    assert.equal(view.status, "live");
    es2.fail(); // every reconnect declares the list as it is now
    await clock.advance(100);
    const es3 = sources.last;
    assert.deepEqual(declaredIn(es3), F.after.map((r) => [r.id, r.version]));
    assert.equal(es3.params.get("last_event_id"), "sB.6");
  });

  test("resume_miss: the declared list gave way to a snapshot, counted", async () => {
    const { view, es2 } = await reopened();
    es2.open();
    const missed = F.missed.filter((f) => !f.sent).flat().filter((m) => m.type === "delta");
    for (const m of missed) es2.emit(m.op, { ...m, sub: "sC" }, `sC.${m.seq}`);
    await settle();
    assert.equal(view.resumeMisses, 1);
    assert.equal(view.resumes, 0);
    assert.equal(view.restarts, 0);
    assert.ok(view.synced);
  });

  test("a list whose URL would pass sseUrlLimit is left out (a snapshot instead)", async () => {
    const { es2 } = await reopened({ sseUrlLimit: 300 });
    assert.equal(declaredIn(es2), null);
    assert.ok(es2.url.length <= 300, es2.url.length);
    assert.equal(es2.params.get("last_event_id"), "sA.7", "continuation is still asked");
  });

  test("the default limit is 8 KiB of URL: a 300-row list is left out, and goes in under a higher limit", async () => {
    const query = { entity: "tasks", sort: ["-p"], limit: 300 };
    for (const [limit, fits] of [[undefined, false], [64 * 1024, true]]) {
      const { client, sources, clock } = setup(limit ? { sseUrlLimit: limit } : {});
      const view = client.subscribe(query);
      await flush();
      const es = sources.last;
      es.open();
      es.emit("subscribed", { type: "subscribed", sub: "sD" });
      es.emit("reset", { type: "delta", sub: "sD", seq: 1, op: "reset", reason: "subscribe" }, "sD.1");
      for (let i = 0; i < 300; i++) {
        es.emit("enter", { type: "delta", sub: "sD", seq: i + 2, op: "enter", id: `row-${1000 + i}`,
          version: 1796314061707260 + i, row: { p: 300 - i }, from: -1, to: i, cursor: `c${i}` }, `sD.${i + 2}`);
      }
      es.emit("synced", { type: "delta", sub: "sD", seq: 302, op: "synced", count: 300 }, "sD.302");
      assert.ok(view.synced);
      es.fail();
      await clock.advance(100);
      const next = sources.last;
      assert.equal(declaredIn(next)?.length ?? 0, fits ? 300 : 0);
      assert.ok(fits ? next.url.length > 8192 : next.url.length <= 8192, next.url.length);
    }
  });

  test("a stream opened afresh after a violation declares nothing", async () => {
    const { view, es2, sources } = await reopened();
    es2.open();
    // a `resume` with a wrong count under a new name: a violation, the view starts over
    es2.emit("resume", { type: "delta", sub: "sE", seq: 1, op: "resume", count: 99 }, "sE.1");
    await flush();
    assert.equal(view.restarts, 1);
    await flush();
    const es3 = sources.last;
    assert.notEqual(es3, es2);
    assert.equal(declaredIn(es3), null);
    assert.equal(es3.params.get("last_event_id"), null);
  });

  test("a stream that declared and did not open is retried once without the list", async () => {
    const { es2, sources, clock } = await reopened();
    assert.notEqual(declaredIn(es2), null);
    es2.fail(); // never opened: an old gateway answers 400 to the unknown parameter
    await settle(); // the probe of the query answers
    await clock.advance(60000);
    const es3 = sources.last;
    assert.notEqual(es3, es2);
    assert.equal(declaredIn(es3), null);
    es3.fail(); // this one did not declare: the next may again
    await settle();
    await clock.advance(60000);
    assert.notEqual(declaredIn(sources.last), null);
  });
});
