// State-diff resume over a WebSocket (PROTOCOL.md sections 3 and 4), through the whole
// client, with a stream recorded from a real gateway (streams/resume.json, written by
// capture_resume.py): a reconnect declares the synced window's rows; the server's
// `resume` + ops + digested `synced` bring the list to a fresh query's answer with no
// reset; a planted wrong op or digest starts the view over (and it then declares
// nothing); `resume_miss`; an old gateway that refuses the field.

import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { ProtocolViolation, ViewState } from "../lq-client.js";
import { deltas, fixture, flush, plain, play, settle, subscribes, wsClient } from "./fakes.js";

const clients = [];
afterEach(() => clients.splice(0).forEach((c) => c.close()));

const F = fixture("resume");




/** Waits (real time, at most 2 s) until `cond()` holds. */
async function until(cond) {
  for (let t = 0; t < 200 && !cond(); t += 1) await new Promise((resolve) => setTimeout(resolve, 10));
  await flush();
}


/** A view synced on the first snapshot, then a dropped connection and a new one. */
async function reconnected() {
  const { client, sockets, clock } = wsClient(clients);
  const view = client.subscribe(F.query);
  const ws = await sockets.accept();
  play(ws, F.first, view.sub);
  await flush();
  assert.deepEqual(plain(view.rows), F.before);
  assert.equal(view.status, "live");
  ws.drop(1006);
  await clock.advance(100);
  const ws2 = await sockets.accept();
  return { client, sockets, clock, view, ws2 };
}

describe("state-diff resume", () => {
  test("the recording is what the test needs (resume, then leave, move, enter, update, synced)", () => {
    assert.deepEqual(deltas(F.resumed).map((m) => m.op), ["resume", "leave", "move", "enter", "update", "synced"]);
    assert.equal(deltas(F.missed)[0].reason, "resume_miss");
    assert.notDeepEqual(F.before, F.after);
  });

  test("a reconnect declares the synced window's rows, in order, with their versions", async () => {
    const { view, ws2 } = await reconnected();
    const [sub] = subscribes(ws2);
    assert.deepEqual(sub, { type: "subscribe", sub: view.sub, query: F.query, resume: { rows: F.declared } });
    assert.deepEqual(sub.resume.rows, F.before.map((r) => [r.id, r.version]));
    assert.equal(view.status, "reconnecting");
  });

  test("the recorded resume brings the list to a fresh query's answer, with no reset", async () => {
    const { view, ws2 } = await reconnected();
    const ops = [];
    const statuses = [];
    view.on("change", (m) => { ops.push(m.op); statuses.push(view.status); });
    let resets = 0;
    view.on("reset", () => { resets += 1; });
    play(ws2, F.resumed, view.sub);
    await settle(); // the synced digest is hashed
    assert.deepEqual(plain(view.rows), F.after);
    assert.deepEqual(ops, ["resume", "leave", "move", "enter", "update", "synced"]);
    assert.deepEqual(statuses, ["reconnecting", "reconnecting", "reconnecting", "reconnecting", "reconnecting", "live"]);
    assert.equal(resets, 0);
    assert.equal(view.resumes, 1);
    assert.equal(view.resumeMisses, 0);
    assert.equal(view.restarts, 0);
    assert.equal(view.digestMismatches, 0);
    assert.equal(subscribes(ws2).length, 1);
  });

  test("the list kept by a resume is declared again on the next reconnect", async () => {
    const { view, ws2, sockets, clock } = await reconnected();
    play(ws2, F.resumed, view.sub);
    await flush();
    ws2.drop(1006);
    await clock.advance(100);
    const ws3 = await sockets.accept();
    assert.deepEqual(subscribes(ws3)[0].resume, { rows: F.after.map((r) => [r.id, r.version]) });
  });

  test("a planted wrong op in a resume stream is caught: the view starts over, declaring nothing", async () => {
    const { view, ws2 } = await reconnected();
    const errors = [];
    view.on("error", (e) => errors.push(e));
    // the move's `from` one place off: the list holds another row there
    play(ws2, F.resumed, view.sub, (m) => (m.op === "move" ? { ...m, from: m.from - 1 } : m));
    await flush();
    assert.equal(view.restarts, 1);
    assert.ok(errors[0] instanceof ProtocolViolation, String(errors[0]));
    const again = subscribes(ws2).at(-1);
    assert.equal(again.sub, `${view.id}.1`);
    assert.equal(again.resume, undefined);
    assert.equal(view.status, "reconnecting");
    // the fresh snapshot then makes it live (and resumable again)
    play(ws2, F.missed, again.sub, (m) => (m.op === "reset" ? { ...m, reason: "subscribe" } : m));
    await flush();
    assert.deepEqual(plain(view.rows), F.after);
    assert.equal(view.status, "live");
    assert.equal(view.resumes, 1); // the resume itself was taken; its ops were not
    assert.equal(view.resumeMisses, 0);
  });

  test("a resume's synced digest that differs starts the view over, declaring nothing", async () => {
    const { view, ws2 } = await reconnected();
    play(ws2, F.resumed, view.sub, (m) => (m.op === "synced" ? { ...m, digest: "0000000000000000" } : m));
    await until(() => view.restarts > 0);
    assert.equal(view.digestMismatches, 1);
    assert.equal(view.restarts, 1);
    const again = subscribes(ws2).at(-1);
    assert.equal(again.sub, `${view.id}.1`);
    assert.equal(again.resume, undefined);
    // and a resume on the fresh subscription, which declared nothing, is a violation
    ws2.receive({ type: "delta", sub: again.sub, seq: 1, op: "resume", count: view.rows.length });
    assert.equal(view.restarts, 2);
    assert.equal(subscribes(ws2).at(-1).resume, undefined);
  });

  test("resume_miss: an ordinary reset and snapshot, counted", async () => {
    const { view, ws2 } = await reconnected();
    play(ws2, F.missed, view.sub);
    await flush();
    assert.deepEqual(plain(view.rows), F.after);
    assert.equal(view.resetReason, "resume_miss");
    assert.equal(view.resumeMisses, 1);
    assert.equal(view.resumes, 0);
    assert.equal(view.restarts, 0);
    assert.equal(view.status, "live");
  });

  test("a gateway without resume refuses the field: the view subscribes again without it, once", async () => {
    const { view, ws2 } = await reconnected();
    const refuse = () => ws2.receive({ type: "error", sub: view.sub, code: "invalid_message", message: "unknown field resume" });
    refuse();
    await flush();
    assert.equal(view.ended, false);
    const [first, second] = subscribes(ws2);
    assert.ok(first.resume);
    assert.deepEqual(second, { type: "subscribe", sub: view.sub, query: F.query });
    play(ws2, F.missed, view.sub, (m) => (m.op === "reset" ? { ...m, reason: "subscribe" } : m));
    await flush();
    assert.deepEqual(plain(view.rows), F.after);
    assert.equal(view.status, "live");
    assert.equal(view.restarts, 0);
  });

  test("a subscribe without resume refused with invalid_message still ends the view", async () => {
    const { view, ws2 } = await reconnected();
    ws2.receive({ type: "error", sub: view.sub, code: "invalid_message", message: "no" });
    ws2.receive({ type: "error", sub: view.sub, code: "invalid_message", message: "no" });
    await flush();
    assert.equal(subscribes(ws2).length, 2);
    assert.equal(view.ended, true);
    assert.equal(view.status, "offline");
  });

  test("a list that would not fit in 48 KiB is not declared", async () => {
    const { client, sockets, clock } = wsClient(clients);
    const query = { entity: "big", sort: ["-p"], limit: 1000 };
    const view = client.subscribe(query);
    const ws = await sockets.accept();
    const id = (i) => `row-${String(i).padStart(4, "0")}-${"x".repeat(40)}`; // ~70 bytes declared
    ws.receive([{ type: "delta", sub: view.sub, seq: 1, op: "reset" },
      ...Array.from({ length: 1000 }, (_, i) => ({ type: "delta", sub: view.sub, seq: i + 2, op: "enter",
        id: id(i), version: 1, row: { p: -i }, from: -1, to: i })),
      { type: "delta", sub: view.sub, seq: 1002, op: "synced", count: 1000 }]);
    assert.equal(view.status, "live");
    ws.drop(1006);
    await clock.advance(100);
    const ws2 = await sockets.accept();
    assert.equal(subscribes(ws2)[0].resume, undefined);
  });

  test("a changes-mode view never declares rows, nor a pos when its synced named none (an older gateway)", async () => {
    const { client, sockets, clock } = wsClient(clients);
    const view = client.subscribe({ entity: "t", mode: "changes" });
    const ws = await sockets.accept();
    ws.receive([{ type: "delta", sub: view.sub, seq: 1, op: "reset" },
      { type: "delta", sub: view.sub, seq: 2, op: "match", id: "a", version: 1, row: {} },
      { type: "delta", sub: view.sub, seq: 3, op: "synced", count: 1 }]);
    ws.drop(1006);
    await clock.advance(100);
    const ws2 = await sockets.accept();
    assert.equal(subscribes(ws2)[0].resume, undefined);
  });

  test("a resume the client did not ask for is a violation", async () => {
    const { client, sockets } = wsClient(clients);
    const view = client.subscribe(F.query);
    const ws = await sockets.accept();
    ws.receive({ type: "delta", sub: view.sub, seq: 1, op: "resume", count: 0 });
    await flush();
    assert.equal(view.restarts, 1);
  });
});

describe("ViewState and resume", () => {
  const synced = () => {
    const s = new ViewState(true, 5);
    for (const m of deltas(F.first)) s.apply(m);
    return s;
  };

  test("held() is the synced list's pairs; null before synced and after a reset", () => {
    const s = new ViewState(true, 5);
    assert.equal(s.held(), null);
    const t = synced();
    assert.deepEqual(t.held(), F.declared);
    t.restart();
    assert.deepEqual(t.held(), F.declared);
    t.apply({ seq: 1, op: "reset" });
    assert.equal(t.held(), null);
  });

  test("resume is taken only first after a restart, with the list's count", () => {
    const s = synced();
    assert.throws(() => s.apply({ seq: 8, op: "resume", count: 5 }), ProtocolViolation); // not restarted
    s.restart();
    assert.throws(() => s.apply({ seq: 1, op: "resume", count: 4 }), ProtocolViolation);
    s.apply({ seq: 1, op: "resume", count: 5 });
    assert.equal(s.synced, false);
    for (const m of deltas(F.resumed).slice(1)) s.apply(m);
    assert.deepEqual(plain(s.current()), F.after);
    assert.equal(s.synced, true);
  });
});
