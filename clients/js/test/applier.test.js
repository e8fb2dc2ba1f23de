// The applier (ViewState) against message streams recorded from a real gateway
// (streams/*.json, made by capture.py): after each checkpoint's seq, the list must
// equal what a fresh HTTP query answered then. Then every rule of PROTOCOL.md
// section 3 is broken once, by planting one fault into a real stream: each must be
// refused with ProtocolViolation and leave the list as it was.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ProtocolViolation, ViewState } from "../lq-client.js";
import { byId, fixture, messagesOf, plain } from "./fakes.js";

function stateFor(query) {
  return new ViewState((query.mode ?? "window") === "window", query.limit ?? null);
}

/** Apply a fixture's deltas, checking the list at each checkpoint; returns the state. */
function replay(name, compare) {
  const f = fixture(name);
  const state = stateFor(f.query);
  const checkpoints = [...f.checkpoints];
  let checked = 0;
  for (const m of messagesOf(f.frames).filter((x) => x.type === "delta")) {
    state.apply(m);
    while (checkpoints.length && checkpoints[0].seq === m.seq) {
      const cp = checkpoints.shift();
      compare(state, cp);
      checked += 1;
    }
  }
  assert.equal(checkpoints.length, 0, "every checkpoint was reached");
  return { state, checked };
}

describe("recorded streams", () => {
  test("a window of 3: snapshot, evictions, moves, updates, promotions", () => {
    const ops = new Set(messagesOf(fixture("window").frames).map((m) => m.op));
    for (const op of ["reset", "enter", "leave", "move", "update", "synced"]) assert.ok(ops.has(op), op);
    const { state, checked } = replay("window", (s, cp) => {
      assert.deepEqual(plain(s.current()), cp.rows, cp.note);
      assert.ok(s.current().length <= 3);
    });
    assert.equal(checked, 9);
    assert.ok(state.synced);
  });

  test("changes mode: match, update, unmatch, a delete", () => {
    const { checked } = replay("changes", (s, cp) => {
      assert.deepEqual(byId(s.current()), byId(cp.rows), cp.note);
    });
    assert.equal(checked, 6);
  });

  test("changes mode, truncated: updates of rows the snapshot left out", () => {
    replay("truncated", (s, cp) => {
      assert.ok(s.truncated, "synced said truncated");
      const fresh = new Map(cp.rows.map((r) => [r.id, r]));
      for (const row of plain(s.current())) assert.deepEqual(row, fresh.get(row.id), cp.note);
    });
  });

  test("the cursor of each entered row is kept for reanchor", () => {
    const state = stateFor(fixture("window").query);
    for (const m of messagesOf(fixture("window").frames).filter((x) => x.type === "delta")) state.apply(m);
    for (const row of state.current()) assert.match(row.cursor, /^[A-Za-z0-9_-]+$/);
  });

  test("rows handed out are frozen, and a new array after each change", () => {
    const state = stateFor(fixture("window").query);
    const [reset, enter] = messagesOf(fixture("window").frames).filter((x) => x.type === "delta");
    state.apply(reset);
    const before = state.current();
    state.apply(enter);
    assert.notEqual(state.current(), before);
    assert.equal(state.current(), state.current());
    assert.ok(Object.isFrozen(state.current()) && Object.isFrozen(state.current()[0]));
  });

  test("the planted gap (streams/gap.json) is refused at the message after it", () => {
    const f = fixture("gap");
    const state = stateFor(f.query);
    let refusedAt = null;
    for (const m of messagesOf(f.frames).filter((x) => x.type === "delta")) {
      try {
        state.apply(m);
      } catch (e) {
        assert.ok(e instanceof ProtocolViolation);
        refusedAt = m.seq;
        break;
      }
    }
    assert.equal(refusedAt, f.planted.violation_at_seq);
    assert.deepEqual(plain(state.current()), f.checkpoints.at(-1).rows, "the list before the gap stays");
  });
});

/** The window stream's deltas, with `edit` applied to a deep copy; renumbered when asked. */
function planted(edit, { renumber = false, name = "window" } = {}) {
  const deltas = structuredClone(messagesOf(fixture(name).frames).filter((x) => x.type === "delta"));
  const edited = edit(deltas) ?? deltas;
  if (renumber) edited.forEach((m, i) => { m.seq = i + 1; });
  return edited;
}

/** Applies `messages` and returns the violation, checking the list was left as it was. */
function violation(messages, name = "window") {
  const state = stateFor(fixture(name).query);
  for (const m of messages) {
    const before = plain(state.current());
    const seq = state.seq;
    try {
      state.apply(m);
    } catch (e) {
      assert.ok(e instanceof ProtocolViolation, String(e));
      assert.deepEqual(plain(state.current()), before, "a refused message changes nothing");
      assert.equal(state.seq, seq);
      return e;
    }
  }
  assert.fail("every message was accepted");
}

const at = (deltas, seq) => deltas.find((m) => m.seq === seq);

describe("planted faults are refused, the list left as it was", () => {
  test("a message applied twice (seq repeats)", () => {
    assert.match(violation(planted((d) => [...d.slice(0, 7), d[6], ...d.slice(7)])).message, /seq 7 after 7/);
  });

  test("a second synced without a reset between", () => {
    const e = violation(planted((d) => {
      const i = d.findIndex((m) => m.op === "synced");
      return [...d.slice(0, i + 1), { ...d[i] }, ...d.slice(i + 1)];
    }, { renumber: true }));
    assert.match(e.message, /synced again without a reset/);
  });

  test("the first message is not reset", () => {
    assert.match(violation(planted((d) => d.slice(1), { renumber: true })).message, /not reset/);
  });

  test("an enter into a full window without the eviction's leave", () => {
    const e = violation(planted((d) => d.filter((m) => m.seq !== 6), { renumber: true }));
    assert.match(e.message, /exceeds limit 3/);
  });

  test("a leave from an index that holds another row", () => {
    assert.match(violation(planted((d) => { at(d, 6).from = 1; })).message, /holds "c"/);
  });

  test("an enter at an index past the end of the list", () => {
    assert.match(violation(planted((d) => { at(d, 3).to = 5; })).message, /at 5 into a list of 1/);
  });

  test("an enter of a row already held", () => {
    assert.match(violation(planted((d) => { at(d, 3).id = "a"; })).message, /already in the list/);
  });

  test("a move whose version goes backwards", () => {
    assert.match(violation(planted((d) => { at(d, 8).version = 1; })).message, /went back/);
  });

  test("an update that repeats the held version (a duplicate change)", () => {
    const e = violation(planted((d) => { at(d, 9).version = at(d, 2).version; }));
    assert.match(e.message, /again .* a duplicate/);
  });

  test("a move to an index outside the list", () => {
    assert.match(violation(planted((d) => { at(d, 8).to = 3; })).message, /to 3 in a list of 3/);
  });

  test("an update whose from and to differ", () => {
    assert.match(violation(planted((d) => { at(d, 9).to = 0; })).message, /update of "a" from 2 to 0/);
  });

  test("synced with a count the list does not hold", () => {
    assert.match(violation(planted((d) => { at(d, 5).count = 2; })).message, /synced count 2/);
  });

  test("an unknown op, and a changes-mode op in window mode", () => {
    assert.match(violation(planted((d) => { at(d, 9).op = "upsert"; })).message, /unknown op/);
    assert.match(violation(planted((d) => { at(d, 3).op = "match"; })).message, /in window mode/);
  });

  test("a row op without a row object or an integer version", () => {
    assert.match(violation(planted((d) => { delete at(d, 3).row; })).message, /without a row object/);
    assert.match(violation(planted((d) => { at(d, 3).version = "7"; })).message, /integer version/);
  });

  test("changes mode: an unmatch of a row never matched (the snapshot was not truncated)", () => {
    const e = violation(planted((d) => { at(d, 9).id = "zz"; }, { name: "changes" }), "changes");
    assert.match(e.message, /unmatch of "zz", not matched/);
  });

  test("changes mode: a match of a row already matched", () => {
    const e = violation(planted((d) => { at(d, 7).id = "a"; }, { name: "changes" }), "changes");
    assert.match(e.message, /already matched/);
  });

  test("a reset restarts the list, and seq goes on across it", () => {
    const state = stateFor(fixture("window").query);
    const deltas = planted(() => {});
    for (const m of deltas.slice(0, 5)) state.apply(m);
    state.apply({ type: "delta", sub: "c1", seq: 6, op: "reset" });
    assert.equal(state.current().length, 0);
    assert.equal(state.synced, false);
    assert.throws(() => state.apply({ ...deltas[1], seq: 1 }), /seq 1 after 6/);
  });
});
