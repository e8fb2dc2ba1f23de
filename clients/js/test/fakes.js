// Test doubles injected into connect(): a clock, WebSocket, EventSource and fetch that
// the test drives as the server would. Nothing here touches the network or real time.

import { readFileSync } from "node:fs";

import { connect } from "../lq-client.js";

/** A recorded stream (test/streams/<name>.json). */
export function fixture(name) {
  return JSON.parse(readFileSync(new URL(`./streams/${name}.json`, import.meta.url), "utf8"));
}

/** The live messages of a fixture's frames (what the server sent), in order. */
export function messagesOf(frames) {
  return frames.filter((f) => !f.sent).flatMap((f) => (Array.isArray(f) ? f : [f]));
}

/** `{id, version, row}` of rows, to compare a view's list with a fresh query. */
export const plain = (rows) => rows.map(({ id, version, row }) => ({ id, version, row }));
export const byId = (rows) => [...plain(rows)].sort((a, b) => (a.id < b.id ? -1 : 1));

/** Lets every pending promise callback and I/O callback run. */
export async function flush() {
  for (let i = 0; i < 20; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

/** Lets the digests of `synced` be hashed (Web Crypto answers on its own thread). */
export async function settle() {
  for (let i = 0; i < 5; i++) await flush();
  await new Promise((resolve) => setTimeout(resolve, 20));
  await flush();
}

/** The server's delta messages of a recording's frames. */
export const deltas = (frames) => frames.filter((f) => !f.sent).flat().filter((m) => m.type === "delta");
/** The subscribes a fake WebSocket was sent. */
export const subscribes = (ws) => ws.sent.filter((m) => m.type === "subscribe");

/** The server's frames of a recording, renamed to `sub`, edited by `edit(message)`. */
export function play(ws, frames, sub, edit = (m) => m) {
  for (const frame of frames) {
    if (frame.sent) continue;
    const one = (m) => edit({ ...m, sub });
    ws.receive(Array.isArray(frame) ? frame.map(one) : one(frame));
  }
}

/** A manual clock: timers run only when the test advances time. */
export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.t = start;
    this.timers = new Map();
    this.next = 1;
    this.delays = []; // every delay asked for, in order
  }

  now() {
    return this.t;
  }

  setTimeout(fn, ms) {
    const id = this.next++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    this.delays.push(ms);
    return id;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  /** Run every timer due within `ms`, in order, letting promises settle between them. */
  async advance(ms) {
    const end = this.t + ms;
    for (let runs = 0; ; runs += 1) {
      if (runs > 10_000) throw new Error("runaway timers: a retry loop that never waits?");
      await flush();
      let due = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (!due || timer.at < due[1].at)) due = [id, timer];
      }
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
    await flush();
  }
}

/** WebSockets the client opens; the test plays the gateway on each. */
export class FakeWebSockets {
  constructor() {
    this.sockets = [];
    const hub = this;
    this.Ctor = class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.sent = [];
        this.closeCode = null;
        hub.sockets.push(this);
      }

      send(data) {
        if (this.readyState !== 1) throw new Error("send on a socket that is not open");
        this.sent.push(JSON.parse(data));
      }

      close(code = 1000) {
        if (this.readyState < 2) {
          this.readyState = 2;
          this.closeCode = code;
        }
      }

      // -- the gateway's side
      open() {
        this.readyState = 1;
        this.onopen?.({});
      }

      receive(message) {
        this.onmessage?.({ data: typeof message === "string" ? message : JSON.stringify(message) });
      }

      drop(code = 1006, reason = "") {
        this.readyState = 3;
        this.onerror?.({});
        this.onclose?.({ code, reason });
      }
    };
  }

  get last() {
    return this.sockets.at(-1);
  }

  /** Open the newest socket and answer its auth with `ready`. */
  async accept() {
    await flush();
    const ws = this.last;
    ws.open();
    ws.receive({ type: "ready", tenant: "t" });
    await flush();
    return ws;
  }
}

/** EventSources the client opens; the test plays the gateway's streams. */
export class FakeEventSources {
  constructor() {
    this.all = [];
    const hub = this;
    this.Ctor = class FakeEventSource extends EventTarget {
      constructor(url) {
        super();
        this.url = url;
        this.params = new URL(url).searchParams;
        this.readyState = 0;
        this.lastId = "";
        hub.all.push(this);
      }

      close() {
        this.readyState = 2;
      }

      // -- the gateway's side
      open() {
        this.readyState = 1;
        this.dispatchEvent(new Event("open"));
      }

      /** One event: `name`, `data` (an object is sent as JSON), `id` (kept, as browsers do). */
      emit(name, data, id) {
        if (id) this.lastId = id;
        const event = new Event(name);
        event.data = typeof data === "string" ? data : JSON.stringify(data);
        event.lastEventId = this.lastId;
        this.dispatchEvent(event);
      }

      /** EventSource's own error: a dropped connection or a refused request. */
      fail() {
        this.dispatchEvent(new Event("error"));
      }
    };
  }

  get last() {
    return this.all.at(-1);
  }
}

/**
 * A fetch that answers with `handler(call)` -> `[status, body]` and records each call
 * as `{url, method, headers, body}` (the body parsed from JSON).
 */
export function fakeFetch(handler) {
  const calls = [];
  const fetchFn = async (url, init = {}) => {
    const call = { url, method: init.method ?? "GET", headers: init.headers ?? {},
      body: init.body === undefined ? undefined : JSON.parse(init.body) };
    calls.push(call);
    const [status, body] = await handler(call);
    if (status === "network") throw new TypeError("fetch failed");
    const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
    return new Response(text, { status });
  };
  fetchFn.calls = calls;
  return fetchFn;
}

/** An unsigned JWT whose payload is `claims` (the client reads, never verifies). */
export function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.c2ln`;
}

/** A client over fake WebSockets and a fake clock (pushed to `clients`, for closing). */
export function wsClient(clients) {
  const sockets = new FakeWebSockets();
  const clock = new FakeClock();
  const client = connect({
    url: "http://gw.test:8080/", token: "tok", WebSocket: sockets.Ctor, clock, random: () => 0.5,
    transport: "ws", fetch: fakeFetch(() => [500, {}]), heartbeat: 1e9,
  });
  clients.push(client);
  return { client, sockets, clock };
}
