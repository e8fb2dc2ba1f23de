// Changes-mode log-position resume (PROTOCOL.md sections 3 and 4), through the applier
// and the whole client, with a stream recorded from a real gateway
// (streams/resume_changes.json, written by capture_resume_changes.py): a reconnect names
// the pos the set last applied; the server's `resume` + one match/unmatch per changed
// row + `synced` bring the set to a fresh query's answer with no reset; the relaxed
// match/unmatch are taken only between `resume` and `synced`; `resume_miss`; an old
// gateway that refuses the field; SSE never names a pos. Then a property: applying a
// resume's ops to a held set gives the server's set.

import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { connect, ProtocolViolation, ViewState } from "../lq-client.js";
import {
  byId, deltas, FakeClock, FakeEventSources, fakeFetch, fixture, flush, play, subscribes, wsClient,
} from "./fakes.js";

const clients = [];
afterEach(() => clients.splice(0).forEach((c) => c.close()));

const F = fixture("resume_changes");
const syncedPos = (frames) => deltas(frames).at(-1).pos;



/** A view synced on the recorded snapshot and live update, then a dropped connection
 * and a new one. */
async function reconnected() {
  const { client, sockets, clock } = wsClient(clients);
  const view = client.subscribe(F.query);
  const ws = await sockets.accept();
  play(ws, F.first, view.sub);
  await flush();
  assert.deepEqual(byId(view.rows), F.before);
  assert.equal(view.status, "live");
  ws.drop(1006);
  await clock.advance(100);
  const ws2 = await sockets.accept();
  return { client, sockets, clock, view, ws2 };
}

describe("changes-mode resume, recorded", () => {
  test("the recording is what the test needs", () => {
    const ops = deltas(F.resumed).map((m) => m.op);
    assert.equal(ops[0], "resume");
    assert.equal(ops.at(-1), "synced");
    const held = new Set(F.before.map((r) => r.id));
    const body = deltas(F.resumed).slice(1, -1);
    assert.ok(body.some((m) => m.op === "match" && held.has(m.id)), "an upsert of a held row");
    assert.ok(body.some((m) => m.op === "match" && !held.has(m.id)), "a new row");
    assert.ok(body.some((m) => m.op === "unmatch" && held.has(m.id) && m.row === null), "a delete");
    assert.ok(body.some((m) => m.op === "unmatch" && !held.has(m.id)), "a no-op unmatch");
    assert.ok(body.every((m) => m.pos === undefined), "a resume's ops carry no pos");
    assert.equal(deltas(F.first).at(-1).op, "update", "the last pos comes from a live update");
    assert.equal(deltas(F.missed)[0].reason, "resume_miss");
  });

  test("the applier keeps the pos of the last message that carried one", () => {
    const s = new ViewState(false, F.query.limit);
    const first = deltas(F.first);
    for (const m of first.slice(0, -1)) s.apply(m); // up to synced
    assert.equal(s.pos, first.at(-2).pos);
    s.apply(first.at(-1)); // the live update
    assert.equal(s.pos, F.pos);
    assert.equal(s.heldPos(), F.pos);
    assert.equal(s.held(), null, "a set declares no window rows");
    s.restart();
    assert.equal(s.heldPos(), F.pos);
    for (const m of deltas(F.resumed)) s.apply(m);
    assert.deepEqual(byId(s.current()), F.after);
    assert.equal(s.pos, syncedPos(F.resumed));
    assert.equal(s.resuming, false);
    assert.ok(s.synced);
  });

  test("a reconnect names the last pos applied; the recorded resume gives a fresh query's set, no reset", async () => {
    const { view, ws2 } = await reconnected();
    const [sub] = subscribes(ws2);
    assert.deepEqual(sub, { type: "subscribe", sub: view.sub, query: F.query, resume: { pos: F.pos } });
    assert.deepEqual(sub.resume, F.resumed[0].sent.resume);
    assert.equal(view.status, "reconnecting");
    const ops = [];
    const statuses = [];
    view.on("change", (m) => { ops.push(m.op); statuses.push(view.status); });
    let resets = 0;
    view.on("reset", () => { resets += 1; });
    play(ws2, F.resumed, view.sub);
    await flush();
    assert.deepEqual(byId(view.rows), F.after);
    assert.deepEqual(ops, deltas(F.resumed).map((m) => m.op));
    assert.deepEqual(statuses.slice(0, -1), ops.slice(0, -1).map(() => "reconnecting"));
    assert.equal(statuses.at(-1), "live");
    assert.equal(resets, 0);
    assert.equal(view.resumes, 1);
    assert.equal(view.resumeMisses, 0);
    assert.equal(view.restarts, 0);
    assert.equal(subscribes(ws2).length, 1);
  });

  test("the set kept by a resume names the resume's synced pos on the next reconnect", async () => {
    const { view, ws2, sockets, clock } = await reconnected();
    play(ws2, F.resumed, view.sub);
    await flush();
    ws2.drop(1006);
    await clock.advance(100);
    const ws3 = await sockets.accept();
    assert.deepEqual(subscribes(ws3)[0].resume, { pos: syncedPos(F.resumed) });
  });

  test("resume_miss: an ordinary reset and snapshot, counted", async () => {
    const { view, ws2 } = await reconnected();
    play(ws2, F.missed, view.sub);
    await flush();
    assert.deepEqual(byId(view.rows), F.after);
    assert.equal(view.resetReason, "resume_miss");
    assert.equal(view.resumeMisses, 1);
    assert.equal(view.resumes, 0);
    assert.equal(view.restarts, 0);
    assert.equal(view.status, "live");
  });

  test("a gateway without the pos refuses the field: the view subscribes again without it, once", async () => {
    const { view, ws2 } = await reconnected();
    ws2.receive({ type: "error", sub: view.sub, code: "invalid_message",
      message: "resume is an object with exactly an array rows" });
    await flush();
    assert.equal(view.ended, false);
    const [first, second] = subscribes(ws2);
    assert.deepEqual(first.resume, { pos: F.pos });
    assert.deepEqual(second, { type: "subscribe", sub: view.sub, query: F.query });
    // and a resume to the subscribe that named nothing is a violation
    ws2.receive({ type: "delta", sub: view.sub, seq: 1, op: "resume", pos: F.pos });
    assert.equal(view.restarts, 1);
    play(ws2, F.missed, subscribes(ws2).at(-1).sub, (m) => (m.op === "reset" ? { ...m, reason: "subscribe" } : m));
    await flush();
    assert.deepEqual(byId(view.rows), F.after);
    assert.equal(view.status, "live");
    assert.equal(view.resumeMisses, 0);
  });

  test("a resume that echoes another pos is a violation: the view starts over, naming nothing", async () => {
    const { view, ws2 } = await reconnected();
    const errors = [];
    view.on("error", (e) => errors.push(e));
    play(ws2, F.resumed, view.sub, (m) => (m.op === "resume" ? { ...m, pos: "1-0.1" } : m));
    await flush();
    assert.ok(errors[0] instanceof ProtocolViolation, String(errors[0]));
    assert.equal(view.restarts, 1);
    const again = subscribes(ws2).at(-1);
    assert.equal(again.sub, `${view.id}.1`);
    assert.equal(again.resume, undefined);
    assert.deepEqual(byId(view.rows), F.before, "the set is kept until the fresh reset");
  });

  test("a resume's match older than the held row is a violation", async () => {
    const { view, ws2 } = await reconnected();
    const held = new Map(F.before.map((r) => [r.id, r.version]));
    play(ws2, F.resumed, view.sub, (m) => (m.op === "match" && held.has(m.id)
      ? { ...m, version: held.get(m.id) - 1 } : m));
    await flush();
    assert.equal(view.restarts, 1);
    assert.equal(view.resumes, 1);
  });

  test("a resume's synced that miscounts the set is a violation", async () => {
    const { view, ws2 } = await reconnected();
    play(ws2, F.resumed, view.sub, (m) => (m.op === "synced" ? { ...m, count: m.count + 1 } : m));
    await flush();
    assert.equal(view.restarts, 1);
    assert.equal(view.status, "reconnecting");
  });

  test("a view started over names no pos on its fresh subscribe", async () => {
    const { client, sockets } = wsClient(clients);
    const view = client.subscribe(F.query);
    const ws = await sockets.accept();
    play(ws, F.first, view.sub);
    ws.receive({ type: "delta", sub: view.sub, seq: 12, op: "match", id: "r1", version: 1, row: {} });
    assert.equal(view.restarts, 1);
    assert.equal(subscribes(ws).at(-1).resume, undefined);
  });

  test("a truncated set never names its pos", async () => {
    const { client, sockets, clock } = wsClient(clients);
    const view = client.subscribe({ entity: "t", mode: "changes", limit: 1 });
    const ws = await sockets.accept();
    ws.receive([{ type: "delta", sub: view.sub, seq: 1, op: "reset" },
      { type: "delta", sub: view.sub, seq: 2, op: "match", id: "a", version: 1, row: {} },
      { type: "delta", sub: view.sub, seq: 3, op: "synced", count: 1, truncated: true, pos: "5-0.1" },
      { type: "delta", sub: view.sub, seq: 4, op: "update", id: "b", version: 2, row: {}, pos: "6-0.2" }]);
    assert.equal(view.truncated, true);
    ws.drop(1006);
    await clock.advance(100);
    const ws2 = await sockets.accept();
    assert.equal(subscribes(ws2)[0].resume, undefined);
  });

  test("SSE: a reopened changes-mode stream never declares (the gateway takes no pos there)", async () => {
    const sources = new FakeEventSources();
    const clock = new FakeClock();
    const fetch = fakeFetch((call) => (call.url.endsWith("/v1/tickets")
      ? [200, { ticket: "k", expires_in: 30 }] : [200, { rows: [], next: null }]));
    const client = connect({ url: "http://gw.test", token: "tok", transport: "sse",
      EventSource: sources.Ctor, fetch, clock, random: () => 0.5 });
    clients.push(client);
    const view = client.subscribe(F.query);
    await flush();
    const es = sources.last;
    es.open();
    for (const m of deltas(F.first)) es.emit(m.op, { ...m, sub: "sA" }, `sA.${m.seq}`);
    assert.equal(view.status, "live");
    assert.equal(view._state.heldPos(), F.pos, "the set could name its pos");
    es.fail();
    await clock.advance(10_000);
    assert.ok(sources.all.length >= 2);
    const reopened = sources.last;
    assert.equal(reopened.params.get("last_event_id"), `sA.${deltas(F.first).at(-1).seq}`);
    assert.equal(reopened.params.has("resume"), false);
  });
});

// -- the applier alone

const d = (seq, op, fields = {}) => ({ type: "delta", sub: "c", seq, op, ...fields });

/** A whole set {a: v1, b: v2} at pos 6-0.3 (a live update after the snapshot), restarted. */
function syncedSet() {
  const s = new ViewState(false, 10);
  s.apply(d(1, "reset", { reason: "subscribe" }));
  s.apply(d(2, "match", { id: "a", version: 1, row: { n: 1 } }));
  s.apply(d(3, "match", { id: "b", version: 2, row: { n: 2 } }));
  s.apply(d(4, "synced", { count: 2, truncated: false, pos: "5-0.2" }));
  s.apply(d(5, "update", { id: "a", version: 3, row: { n: 3 }, pos: "6-0.3" }));
  s.restart();
  return s;
}

const versions = (s) => Object.fromEntries(s.current().map((r) => [r.id, r.version]));

describe("ViewState: log-position resume", () => {
  test("a resume applies the relaxed ops; strict again after its synced", () => {
    const s = syncedSet();
    assert.equal(s.heldPos(), "6-0.3");
    s.apply(d(1, "resume", { pos: "6-0.3" }));
    s.apply(d(2, "match", { id: "a", version: 3, row: { n: 3 } })); // held, same version
    s.apply(d(3, "match", { id: "c", version: 7, row: { n: 7 } })); // new
    s.apply(d(4, "unmatch", { id: "zz", version: 8, row: null })); // not held: a no-op
    s.apply(d(5, "unmatch", { id: "b", version: 9, row: null })); // held: removed
    s.apply(d(6, "synced", { count: 2, truncated: false, pos: "9-0.9" }));
    assert.deepEqual(versions(s), { a: 3, c: 7 });
    assert.equal(s.pos, "9-0.9");
    assert.throws(() => s.apply(d(7, "match", { id: "a", version: 10, row: {} })), ProtocolViolation);
    assert.throws(() => s.apply(d(7, "unmatch", { id: "zz", version: 10, row: null })), ProtocolViolation);
    assert.throws(() => s.apply(d(7, "unmatch", { id: "a", version: 3, row: null })), ProtocolViolation);
  });

  test("outside a resume (a snapshot) a match of a held row and an unmatch of one not held are refused", () => {
    const s = new ViewState(false, 10);
    s.apply(d(1, "reset"));
    s.apply(d(2, "match", { id: "a", version: 1, row: {} }));
    assert.throws(() => s.apply(d(3, "match", { id: "a", version: 2, row: {} })), ProtocolViolation);
    assert.throws(() => s.apply(d(3, "unmatch", { id: "x", version: 2, row: null })), ProtocolViolation);
    assert.equal(s.seq, 2);
    assert.deepEqual(versions(s), { a: 1 });
  });

  for (const [name, bad] of [
    ["another pos", d(1, "resume", { pos: "1-0.1" })],
    ["no pos", d(1, "resume")],
    ["a count instead of a pos", d(1, "resume", { count: 2 })],
    ["a pos that is not a string", d(1, "resume", { pos: 6 })],
  ]) {
    test(`a changes-mode resume with ${name} is refused, and changes nothing`, () => {
      const s = syncedSet();
      assert.throws(() => s.apply(bad), ProtocolViolation);
      assert.equal(s.started, false);
      assert.equal(s.resuming, false);
      assert.deepEqual(versions(s), { a: 3, b: 2 });
    });
  }

  test("a resume is refused when not restarted, when not declared, and after a reset", () => {
    const s = syncedSet();
    s.apply(d(1, "resume", { pos: "6-0.3" }));
    assert.throws(() => s.apply(d(2, "resume", { pos: "6-0.3" })), ProtocolViolation); // started
    const t = syncedSet();
    t.resumable = false; // what the view does to a subscribe that named nothing
    assert.throws(() => t.apply(d(1, "resume", { pos: "6-0.3" })), ProtocolViolation);
    const u = syncedSet();
    u.apply(d(1, "reset"));
    assert.equal(u.pos, null);
    assert.equal(u.heldPos(), null);
  });

  test("a relaxed op never goes back, and the resume's synced counts the set", () => {
    const s = syncedSet();
    s.apply(d(1, "resume", { pos: "6-0.3" }));
    assert.throws(() => s.apply(d(2, "match", { id: "a", version: 2, row: {} })), ProtocolViolation);
    assert.throws(() => s.apply(d(2, "unmatch", { id: "b", version: 1, row: null })), ProtocolViolation);
    s.apply(d(2, "unmatch", { id: "x", version: 1, row: null }));
    assert.throws(() => s.apply(d(3, "synced", { count: 5, truncated: false, pos: "7-0.1" })), ProtocolViolation);
    assert.equal(s.resuming, true, "a refused synced leaves the resume open");
  });

  test("a set synced truncated, or by a gateway that sent no pos, names none", () => {
    const s = new ViewState(false, 1);
    s.apply(d(1, "reset"));
    s.apply(d(2, "match", { id: "a", version: 1, row: {} }));
    s.apply(d(3, "synced", { count: 1, truncated: true, pos: "5-0.2" }));
    assert.equal(s.heldPos(), null);
    s.restart();
    assert.throws(() => s.apply(d(1, "resume", { pos: "5-0.2" })), ProtocolViolation);
    const old = new ViewState(false, 5);
    old.apply(d(1, "reset"));
    old.apply(d(2, "synced", { count: 0 }));
    assert.equal(old.heldPos(), null);
  });

  test("a window-mode resume carrying a pos is still a count resume; a window names no pos", () => {
    const s = new ViewState(true, 5);
    s.apply(d(1, "reset"));
    s.apply(d(2, "synced", { count: 0, pos: "5-0.2" }));
    assert.equal(s.heldPos(), null);
    assert.deepEqual(s.held(), []);
  });
});

// -- the property

/** A small seeded PRNG (mulberry32): the same cases on every run. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * One case: a held set (ids with versions and rows), the server's state of every id now,
 * and the resume the protocol prescribes: for each id changed since the pos, once, in
 * any order, `match` (it matches now) or `unmatch` (row or null), its version never older
 * than the held one (equal: a change the snapshot already held, sent again).
 */
function makeCase(rand) {
  const ids = Array.from({ length: 1 + Math.floor(rand() * 12) }, (_, i) => `r${i}`);
  const held = new Map();
  const server = new Map(); // id -> {version, row} for the rows matching now
  const ops = [];
  for (const id of ids) {
    const base = 1 + Math.floor(rand() * 100);
    const isHeld = rand() < 0.5;
    if (isHeld) held.set(id, { version: base, row: { n: base } });
    const changed = rand() < 0.6;
    if (!changed) {
      if (isHeld) server.set(id, { version: base, row: { n: base } });
      continue;
    }
    const again = isHeld && rand() < 0.2; // the snapshot already held this change
    const version = again ? base : base + 1 + Math.floor(rand() * 50);
    const matches = again || rand() < 0.5;
    if (matches) {
      server.set(id, { version, row: { n: version } });
      ops.push({ op: "match", id, version, row: { n: version } });
    } else {
      ops.push({ op: "unmatch", id, version, row: rand() < 0.5 ? null : { n: -version } });
    }
  }
  for (let i = ops.length - 1; i > 0; i -= 1) { // any order
    const j = Math.floor(rand() * (i + 1));
    [ops[i], ops[j]] = [ops[j], ops[i]];
  }
  return { held, server, ops };
}

/** A whole set holding exactly `held`, synced at pos "p0", restarted. */
function holding(held) {
  const s = new ViewState(false, 100);
  let seq = 0;
  s.apply(d(++seq, "reset"));
  for (const [id, r] of held) s.apply(d(++seq, "match", { id, ...r }));
  s.apply(d(++seq, "synced", { count: held.size, truncated: false, pos: "p0" }));
  return s;
}

describe("property: a resume's ops applied to a held set give the server's set", () => {
  test("500 seeded cases", () => {
    const rand = prng(15);
    let relaxedUsed = 0;
    let strictRefused = 0;
    for (let n = 0; n < 500; n += 1) {
      const { held, server, ops } = makeCase(rand);
      const s = holding(held);
      s.restart();
      assert.equal(s.heldPos(), "p0");
      let seq = 0;
      s.apply(d(++seq, "resume", { pos: "p0" }));
      for (const op of ops) s.apply(d(++seq, op.op, op));
      s.apply(d(++seq, "synced", { count: server.size, truncated: false, pos: "p1" }));
      const got = Object.fromEntries(s.current().map((r) => [r.id, { version: r.version, row: r.row }]));
      assert.deepEqual(got, Object.fromEntries(server), `case ${n}`);
      // the same ops outside a resume: refused at the first relaxed one
      const relaxed = ops.findIndex((o) => (o.op === "match") === held.has(o.id));
      if (relaxed === -1) continue;
      relaxedUsed += 1;
      const strict = holding(held);
      const start = strict.seq;
      let t = start;
      assert.throws(() => {
        for (const op of ops) strict.apply(d(++t, op.op, op));
      }, ProtocolViolation, `case ${n}: ${JSON.stringify(ops[relaxed])} outside a resume`);
      assert.equal(strict.seq, start + relaxed, `case ${n}: refused at the first relaxed op`);
      strictRefused += 1;
    }
    assert.ok(relaxedUsed > 100, `only ${relaxedUsed} cases used the relaxed ops`);
    assert.equal(strictRefused, relaxedUsed);
  });
});
