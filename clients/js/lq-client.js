/**
 * The JavaScript client of lq, the live query cluster on Redis.
 *
 * One self-contained ES module (no imports, no build step, no dependencies), so the
 * gateway can serve this very file at `/v1/client.js`. It speaks only the public
 * protocol (docs/protocol.md): live views over one WebSocket (or, where WebSockets are
 * blocked, one Server-Sent Events stream per view), and the HTTP data API.
 *
 * Invariants of the whole client:
 * - a view's `rows` is what PROTOCOL.md section 3 says, applied message by message and
 *   checked (`ViewState`); a violation never leaves a wrong list in place: the view is
 *   subscribed again under a new id and `restarts` counts it;
 * - a view's `status` is `live` only while its transport is up and its list is synced,
 *   so an app never shows a stale list as live;
 * - a refused token (close 4401/4403, HTTP 401/403) is retried only when the token
 *   callback then returns a different token, and only once in a row;
 * - the token never goes into a URL: the WebSocket authenticates with its first
 *   message, an event stream with a single-use ticket from `POST /v1/tickets`.
 *
 * Sections: errors, backoff, tokens, the applier, events, views, the WebSocket
 * transport, the SSE transport, the data API, the client. They stand in for modules:
 * the file must stay one import for a browser with no bundler, so each section keeps
 * to itself and says its invariant where it starts.
 */

// ---------------------------------------------------------------------------- errors

/**
 * The root of every error the client raises or reports on purpose. `code` is the
 * protocol's error code (PROTOCOL.md sections 3 and 7), `status` the HTTP status when
 * there was one, `sub` the view's id for a live error about one view, `version` the
 * row's current version for a failed precondition.
 */
export class LiveError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{sub?: string|null, status?: number|null, version?: number|null, outcome?: string|null}} [details]
   */
  constructor(code, message, { sub = null, status = null, version = null, outcome = null } = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.sub = sub;
    this.status = status;
    this.version = version;
    this.outcome = outcome;
  }
}

/** The token is missing, malformed, expired or signed with another key. */
export class Unauthorized extends LiveError {}
/** The token is valid but lacks the scope. */
export class Forbidden extends LiveError {}
/** The query, cursor or reanchor is invalid; the message names the part at fault. */
export class InvalidQuery extends LiveError {}
/** A malformed request that is not a query: entity, id, row, body or message. */
export class InvalidRequest extends LiveError {}
/** No such row (for this tenant). */
export class NotFound extends LiveError {}
/** `ifMatch` / `createOnly` failed; `version` is the row's current one, or null. */
export class PreconditionFailed extends LiveError {}
/** Over a configured limit of the gateway (e.g. subscriptions per connection). */
export class LimitExceeded extends LiveError {}
/** Over a configured rate; try again later. */
export class RateLimited extends LimitExceeded {}
/** The gateway cannot be reached or cannot serve now; nothing was written. */
export class Unavailable extends LiveError {}
/** The server's live messages broke a rule of PROTOCOL.md section 3 (the view restarts). */
export class ProtocolViolation extends LiveError {
  /** @param {string} message */
  constructor(message) {
    super("protocol_violation", message);
  }
}

/** A `synced` or `check` digest differs from the list's: the list diverged (the view restarts). */
export class DigestMismatch extends ProtocolViolation {}

/**
 * The window digest of PROTOCOL.md section 3 over `[id, version]` pairs in order: the
 * first 16 hex digits of SHA-256 over `id \n version \n` per row. Resolves to null
 * where Web Crypto is missing (outside a secure context in a browser).
 * @param {Array<[string, number]>} pairs
 * @returns {Promise<string|null>}
 */
export async function windowDigest(pairs) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return null;
  let text = "";
  for (const [id, version] of pairs) text += `${id}\n${version}\n`;
  const hash = new Uint8Array(await subtle.digest("SHA-256", new TextEncoder().encode(text)));
  let hex = "";
  for (const byte of hash.subarray(0, 8)) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

const BY_CODE = {
  unauthorized: Unauthorized,
  forbidden: Forbidden,
  invalid_query: InvalidQuery,
  invalid_request: InvalidRequest,
  invalid_row: InvalidRequest,
  too_large: InvalidRequest,
  invalid_message: InvalidRequest,
  unknown_subscription: InvalidRequest,
  duplicate_subscription: InvalidRequest,
  not_found: NotFound,
  precondition_failed: PreconditionFailed,
  too_many_subscriptions: LimitExceeded,
  rate_limited: RateLimited,
  unavailable: Unavailable,
  overloaded: Unavailable,
};
const BY_STATUS = {
  400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
  412: "precondition_failed", 413: "too_large", 422: "invalid_row", 429: "rate_limited",
  503: "unavailable",
};
/** WebSocket close codes of PROTOCOL.md section 4 that say why, as error codes. */
const CLOSE_CODES = { 4401: "unauthorized", 4408: "unauthorized", 4403: "forbidden", 1013: "overloaded" };

/**
 * The typed error for a protocol code; without a code, for the HTTP status (a status
 * lq does not answer with means what answered is not lq: `Unavailable`).
 * @param {string|null|undefined} code
 * @param {string} message
 * @param {{sub?: string|null, status?: number|null, version?: number|null}} [details]
 * @returns {LiveError}
 */
export function errorFor(code, message, details = {}) {
  if (code == null) code = BY_STATUS[details.status ?? 0] ?? "unavailable";
  const Class = Object.hasOwn(BY_CODE, code) ? BY_CODE[code] : LiveError;
  return new Class(code, message, details);
}

/**
 * The typed error of a WebSocket close code, or null when the code says nothing.
 * @param {number} code
 * @param {string} [reason]
 * @returns {LiveError|null}
 */
export function closeError(code, reason = "") {
  const mapped = CLOSE_CODES[code];
  return mapped ? errorFor(mapped, reason || `closed with ${code}`) : null;
}

// ---------------------------------------------------------------------------- backoff

/**
 * Capped, jittered exponential backoff. Invariant: the pause before retry `n` (0 for the
 * first retry of an outage) is `min(cap, first * factor**n)` times a uniform factor in
 * `[1 - jitter, 1 + jitter]`, never more than `cap`: clients that lost the same gateway
 * spread out instead of coming back in step, and none waits longer than `cap`.
 */
export class Backoff {
  /** @param {{first?: number, cap?: number, factor?: number, jitter?: number}} [options] milliseconds */
  constructor({ first = 100, cap = 5000, factor = 2, jitter = 0.5 } = {}) {
    if (!(first > 0 && first <= cap)) throw new RangeError("backoff: need 0 < first <= cap");
    if (!(factor >= 1 && jitter >= 0 && jitter <= 1)) {
      throw new RangeError("backoff: need factor >= 1 and 0 <= jitter <= 1");
    }
    this.first = first;
    this.cap = cap;
    this.factor = factor;
    this.jitter = jitter;
    Object.freeze(this);
  }

  /**
   * The pause in milliseconds before retry number `retry` (0-based) of one outage.
   * @param {number} retry
   * @param {() => number} [random]
   */
  delay(retry, random = Math.random) {
    const base = Math.min(this.cap, this.first * this.factor ** Math.min(retry, 64));
    return Math.min(this.cap, base * (1 - this.jitter + 2 * this.jitter * random()));
  }
}

// ---------------------------------------------------------------------------- tokens

/**
 * The `exp` claim of a JWT in seconds since the epoch, or null when it has none. The
 * token is read, never verified (the server verifies).
 * @param {string} token
 * @returns {number|null}
 */
export function tokenExpiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(part); // forgiving-base64: padding may be left out
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const exp = JSON.parse(new TextDecoder().decode(bytes)).exp;
    return typeof exp === "number" && Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

const MIN_REFRESH_MS = 500;

/** Milliseconds until a token should be replaced (80 % of what is left), or null. */
function refreshDelay(token, nowMs) {
  const exp = tokenExpiry(token);
  return exp === null ? null : Math.max(MIN_REFRESH_MS, (exp * 1000 - nowMs) * 0.8);
}

// ---------------------------------------------------------------------------- the applier

const ROW_OPS = new Set(["enter", "leave", "move", "update", "match", "unmatch"]);
const isInt = (v) => Number.isInteger(v);
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * The changes-mode log position a message carries (PROTOCOL.md section 3, "Log
 * position"): a string, or null when it has none; anything else is a violation.
 */
function readPos(m) {
  const pos = m.pos ?? null;
  if (pos !== null && typeof pos !== "string") {
    throw new ProtocolViolation(`${m.op} with a pos that is not a string: ${JSON.stringify(pos)}`);
  }
  return pos;
}

/**
 * What one live message says, checked for what it must carry whatever the list.
 * @returns {{op: string, id?: string, version?: number, from?: number, to?: number,
 *   row?: object|null, count?: unknown, truncated?: boolean, pos?: string|null}}
 */
function readDelta(m) {
  const op = m.op;
  if (op === "reset") return { op, reason: typeof m.reason === "string" ? m.reason : "" };
  const pos = readPos(m);
  if (op === "resume") return { op, count: m.count, pos };
  if (op === "synced" || op === "check") {
    const digest = typeof m.digest === "string" ? m.digest : "";
    return { op, count: m.count, truncated: Boolean(m.truncated), digest, pos };
  }
  if (!ROW_OPS.has(op)) throw new ProtocolViolation(`unknown op ${JSON.stringify(op)}`);
  const { id, version, from, to } = m;
  if (typeof id !== "string" || !isInt(version)) {
    throw new ProtocolViolation(`${op} without a string id and an integer version`);
  }
  const where = `${op} of ${JSON.stringify(id)} from ${from} to ${to}`;
  if (op === "enter" && (from !== -1 || !isInt(to))) throw new ProtocolViolation(where);
  if (op === "leave") {
    if (!isInt(from) || to !== -1) throw new ProtocolViolation(where);
    return { op, id, version, from, to, row: null, pos };
  }
  const placed = op === "move" || (op === "update" && (from != null || to != null));
  if (placed && (!isInt(from) || !isInt(to) || (op === "update" && from !== to))) {
    throw new ProtocolViolation(where);
  }
  if (!isObject(m.row)) {
    if (op === "unmatch") return { op, id, version, row: null, pos }; // null when deleted
    throw new ProtocolViolation(`${op} of ${JSON.stringify(id)} without a row object`);
  }
  const row = Object.freeze({ id, version, row: m.row, cursor: m.cursor ?? null });
  return { op, id, version, from, to, row, pos };
}

/**
 * The list of one subscription on one connection: PROTOCOL.md section 3 applied
 * exactly, and checked, as `lq_client/view.py` does.
 *
 * Invariant: `apply(m)` either moves the list to exactly what the protocol says, or
 * throws `ProtocolViolation` and leaves the list as it was (the caller then subscribes
 * again). It checks what a client may rely on: `seq` grows by exactly one, a
 * subscription starts with `reset`, indexes and ids agree, a window never holds more
 * than `limit` rows, a row is never entered or matched twice, no change reaches the
 * list twice (an `update`, `move` or `unmatch` of a held row carries a newer version
 * than the list holds, a `leave` never an older one), and `synced` counts the list.
 *
 * State-diff resume (PROTOCOL.md section 3): after `restart`, a window list that was
 * synced (`resumable`) can be declared (`held`); the server's `resume` then keeps it (its
 * `count` must be the list's) in place of a `reset`, and the ops and the digested
 * `synced` that follow are checked like any others. A list that was not declared
 * (`resumable` false) never takes a `resume`.
 *
 * Log-position resume (PROTOCOL.md section 3, changes mode): the list keeps `pos`, the
 * log position of the last message applied that carried one (null after a `reset`
 * until one comes; a `synced` without one, from a gateway older than the field, leaves
 * it null). After `restart`, a changes-mode set whose last `synced` was not truncated
 * and named a pos (`resumable`) can name it (`heldPos`); the server's `resume` must echo
 * exactly that pos, and until the next `synced` (`resuming`), and only then, a `match`
 * is an upsert (never to an older version than held) and an `unmatch` removes a held
 * row (never of a newer version) or is a no-op; that `synced` must count exactly the
 * set. Everywhere else `match` of a held row and `unmatch` of a row not held (unless the
 * snapshot was truncated) stay violations, as does a changes-mode `resume` without the
 * pos the list is at.
 */
export class ViewState {
  /**
   * @param {boolean} window window mode (else changes mode)
   * @param {number|null} limit
   */
  constructor(window, limit) {
    this.window = window;
    this.limit = limit ?? null;
    this.rows = []; // window mode, in order
    this.byId = new Map(); // every row held, in both modes
    this.seq = 0;
    this.started = false;
    this.synced = false;
    this.truncated = false;
    this.resumable = false; // synced (not truncated, with a pos in changes mode) since its last reset or resume
    this.resuming = false; // changes mode: between a `resume` and its `synced`
    this.pos = null; // changes mode: the log position of the last message applied that carried one
    this.reason = ""; // the last reset's reason ("" when it gave none)
    this._current = null; // the frozen list `current()` hands out, until the next change
  }

  /** A new subscription: seq starts again and a reset is due; the list stays until it. */
  restart() {
    this.seq = 0;
    this.started = false;
    this.synced = false;
  }

  /** The `[id, version]` pairs to declare in a resume (window mode); null when not `resumable`. */
  held() {
    return this.resumable && this.window ? this.rows.map((r) => [r.id, r.version]) : null;
  }

  /** The log position to resume from (changes mode); null when not `resumable`. */
  heldPos() {
    return this.resumable && !this.window ? this.pos : null;
  }

  /** The list now (a frozen array: window mode in order, changes mode in arrival order). */
  current() {
    this._current ??= Object.freeze(this.window ? [...this.rows] : [...this.byId.values()]);
    return this._current;
  }

  /** Apply one live message, or throw `ProtocolViolation` and change nothing. */
  apply(m) {
    if (m.seq !== this.seq + 1) throw new ProtocolViolation(`seq ${m.seq} after ${this.seq}`);
    this.step(readDelta(m));
    this.seq = m.seq;
  }

  /** @private */
  step(d) {
    if (!this.started && d.op !== "reset" && d.op !== "resume") {
      throw new ProtocolViolation(`the first message is ${JSON.stringify(d.op)}, not reset`);
    }
    if (d.op === "reset") {
      this.reason = d.reason;
      this.started = true;
      this.synced = false;
      this.truncated = false;
      this.resumable = false;
      this.resuming = false;
      this.pos = null;
      this.rows = [];
      this.byId = new Map();
    } else if (d.op === "resume") {
      this.stepResume(d);
    } else if (d.op === "synced") {
      if (d.count !== this.byId.size) {
        throw new ProtocolViolation(`synced count ${d.count}, the list holds ${this.byId.size}`);
      }
      if (this.synced) throw new ProtocolViolation("synced again without a reset");
      this.synced = true;
      this.truncated = d.truncated;
      this.resuming = false;
      if (!this.window) this.pos = d.pos;
      this.resumable = this.window || (!d.truncated && this.pos !== null);
    } else if (d.op === "check" && this.window) {
      if (!this.synced) throw new ProtocolViolation("check before synced");
      if (d.count !== this.rows.length) {
        throw new DigestMismatch(`check count ${d.count}, the list holds ${this.rows.length}`);
      }
    } else if (this.window) {
      this.stepWindow(d);
    } else {
      this.stepChanges(d);
    }
    this._current = null;
  }

  /**
   * @private `resume`: the window's declared list (its `count`), or the changes-mode set
   * at the log position it echoes, is kept; a changes-mode resume is `resuming`.
   */
  stepResume(d) {
    if (this.window) {
      if (this.started || !this.resumable || d.count !== this.rows.length) {
        throw new ProtocolViolation(`resume of ${d.count} rows, the list holds ${this.rows.length} ` +
          `(resumable: ${this.resumable}, started: ${this.started})`);
      }
    } else if (this.started || !this.resumable || d.pos === null || d.pos !== this.pos) {
      throw new ProtocolViolation(`resume from ${q(d.pos)}, the set is at ${q(this.pos)} ` +
        `(resumable: ${this.resumable}, started: ${this.started})`);
    }
    this.started = true;
    this.resumable = false;
    this.resuming = !this.window;
  }

  /** @private */
  stepWindow({ op, id, version, from, to, row }) {
    const rows = this.rows;
    const n = rows.length;
    if (op === "enter") {
      if (!(to >= 0 && to <= n)) {
        throw new ProtocolViolation(`enter of ${q(id)} at ${to} into a list of ${n}`);
      }
      if (this.byId.has(id)) throw new ProtocolViolation(`enter of ${q(id)}, already in the list`);
      if (this.limit !== null && n >= this.limit) {
        throw new ProtocolViolation(`enter of ${q(id)}: a list of ${n + 1} exceeds limit ${this.limit}`);
      }
      rows.splice(to, 0, row);
      this.byId.set(id, row);
      return;
    }
    if (op !== "leave" && op !== "move" && op !== "update") {
      throw new ProtocolViolation(`op ${q(op)} in window mode`);
    }
    if (!(from >= 0 && from < n)) {
      throw new ProtocolViolation(`${op} of ${q(id)} from ${from}: outside a list of ${n}`);
    }
    const held = rows[from];
    if (held.id !== id) {
      throw new ProtocolViolation(`${op} of ${q(id)} from ${from}: the list holds ${q(held.id)} there`);
    }
    if (op === "leave") {
      if (version < held.version) throw notNewer(op, id, held.version, version); // an eviction repeats it
      rows.splice(from, 1);
      this.byId.delete(id);
      return;
    }
    if (!(to >= 0 && to < n)) throw new ProtocolViolation(`${op} of ${q(id)} to ${to} in a list of ${n}`);
    if (version <= held.version) throw notNewer(op, id, held.version, version);
    rows.splice(from, 1);
    rows.splice(to, 0, row);
    this.byId.set(id, row);
  }

  /**
   * @private `match`, `update`, `unmatch`; between a `resume` and its `synced` a `match`
   * may replace a held row and an `unmatch` may name a row not held (a no-op).
   */
  stepChanges({ op, id, version, row, pos }) {
    const held = this.byId.get(id);
    const relaxed = this.resuming && op !== "update"; // a resume's upsert or removal
    if (op === "match") {
      if (held && !relaxed) throw new ProtocolViolation(`match of ${q(id)}, already matched`);
      if (held && version < held.version) throw notNewer(op, id, held.version, version);
      this.byId.set(id, row);
    } else if (op === "update" || op === "unmatch") {
      if (held) {
        if (version < held.version || (version === held.version && !relaxed)) {
          throw notNewer(op, id, held.version, version);
        }
      } else if (!this.truncated && !relaxed) { // a truncated snapshot holds only some matching rows
        throw new ProtocolViolation(`${op} of ${q(id)}, not matched`);
      }
      if (op === "update") this.byId.set(id, row);
      else this.byId.delete(id);
    } else {
      throw new ProtocolViolation(`op ${q(op)} in changes mode`);
    }
    if (pos !== null) this.pos = pos;
  }
}

const q = (v) => JSON.stringify(v);

function notNewer(op, id, held, version) {
  return new ProtocolViolation(version < held
    ? `${op} of ${q(id)}: its version went back ${held} -> ${version}`
    : `${op} of ${q(id)} v${version} again (the list holds v${held}): a duplicate`);
}

// ---------------------------------------------------------------------------- events

/** A minimal event emitter: `on` returns a function that removes the listener. */
class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /**
   * Call `fn` on each `event`; returns a function that stops it.
   * @param {string} event
   * @param {Function} fn
   */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  /** Stop calling `fn` on `event`. */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  /** @protected a listener's exception is reported, never breaks the client */
  _emit(event, ...args) {
    for (const fn of [...(this._listeners.get(event) ?? [])]) {
      try {
        fn(...args);
      } catch (e) {
        (globalThis.reportError ?? console.error)(e);
      }
    }
  }
}

// ---------------------------------------------------------------------------- views

/** Codes that end a view whose subscribe was refused; others are asked again later. */
const ENDS_A_VIEW = new Set(["forbidden", "invalid_query", "invalid_request", "too_many_subscriptions",
  "duplicate_subscription", "invalid_message", "unauthorized"]);

/**
 * One live query: `rows` is its list now. Events: `change` (every applied live
 * message, with it), `reset` (with the view and the reset's `reason`), `synced`,
 * `check`, `error` (a `LiveError` about this view: a refused subscribe or reanchor, or
 * a `ProtocolViolation` after which the view restarted by itself, a `DigestMismatch`
 * among them), `status` (the new status).
 *
 * Digests: a window's `synced` and `check` are applied at once, in order; the list's
 * ids and versions are copied then and hashed asynchronously (Web Crypto), and on a
 * mismatch, if the subscription is still the one hashed, the view starts over
 * (`digestMismatches` counts it). Messages are never held back for a hash.
 *
 * State-diff resume (WebSocket, window mode): on every reconnect a view whose list was
 * synced, and is trusted, declares its rows (`[id, version]` pairs, when they fit in
 * `DECLARE` bytes); the server then keeps the list (`resume`) and sends only the ops
 * that bring it to the current window, then a digested `synced` (`resumes` counts it),
 * or answers `reset` with reason `resume_miss` and a snapshot (`resumeMisses`). The
 * status stays `reconnecting` until that `synced`. A view started over (a violation or
 * a digest mismatch) never declares its list; an old gateway that refuses the field
 * (`invalid_message`) gets the subscribe again without it, once.
 *
 * Log-position resume (WebSocket, changes mode): likewise, on every reconnect a view
 * whose set was synced whole (not `truncated`) and is trusted names the log position
 * it last applied (`resume: {pos}`); the server keeps the set (`resume`), sends each row
 * changed since then once (an upsert `match` or an `unmatch`), then `synced`, or answers
 * `resume_miss`; counted, refused and fallen back from as above. Event streams never
 * name a pos: the gateway takes only window rows over SSE and long polling.
 *
 * State has one writer: the transport that carries the view calls the `_` methods.
 * The status is derived from that state (`live` = transport up and list synced), never
 * set; `_status` only remembers the last one emitted.
 */
export class LiveView extends Emitter {
  /** @param {LiveClient} client @param {string} id @param {object} query */
  constructor(client, id, query, options = {}) {
    super();
    this.client = client;
    /** Seconds between the server's `check` messages (WebSocket, window mode), or null. */
    this.check = options.check ?? null;
    this.digestMismatches = 0; // restarts caused by a digest that differed
    /** The view's id; on the wire `sub` adds `.n` after the n-th restart. */
    this.id = id;
    this.sub = id;
    this.query = { ...query };
    this.mode = query.mode ?? "window";
    this.restarts = 0; // protocol violations, each followed by a fresh subscription
    this.resumes = 0; // reconnects that kept the list (a state-diff or log-position resume)
    this.resumeMisses = 0; // reconnects that declared the list (or its pos) but got a reset
    /** @type {LiveError|null} the last error about this view */
    this.error = null;
    this.ended = false;
    this._state = new ViewState(this.mode === "window", query.limit);
    this._up = false; // the transport carries it now (WebSocket ready / stream open)
    this._acked = false; // `subscribed` arrived for the current `sub`
    this._everSynced = false;
    this._refusals = 0; // subscribes refused for now (overloaded) since the last ack
    this._reanchoring = null; // the query before an unanswered reanchor
    this._paging = false; // between a reanchor's reset and its synced
    this._heldSynced = false; // synced when the transport went down (an SSE resume restores it)
    this._limitAtReset = undefined; // a reanchor's limit holds from its reset on
    this._declared = false; // the current subscribe declared the list (no message since)
    this._status = "connecting";
  }

  /** The list now: `{id, version, row, cursor}` objects, a frozen array. */
  get rows() {
    return this._state.current();
  }

  /** Whether the list equals the query result (false between a reset and its synced). */
  get synced() {
    return this._state.synced;
  }

  /** Changes mode: the snapshot held only the first `limit` of the matching rows. */
  get truncated() {
    return this._state.truncated;
  }

  /**
   * `connecting` | `live` | `reconnecting` | `offline` (ended). `live`: the transport is
   * up and the list is synced, or is being replaced by a reanchor's new window.
   */
  get status() {
    if (this.ended) return "offline";
    if (this._up && (this._state.synced || this._paging)) return "live";
    return this._everSynced ? "reconnecting" : "connecting";
  }

  /**
   * Slide the window (window mode): start after `after` (a row's cursor; null for the
   * top), optionally with a new `limit`. Answered with `reset`, the new rows, `synced`.
   * @param {string|null} after
   * @param {number} [limit]
   */
  reanchor(after, limit) {
    if (this.ended) throw new LiveError("closed", `the view ${this.id} has ended`);
    if (this.mode !== "window") throw new InvalidQuery("invalid_query", "reanchor: window mode only");
    this._reanchoring ??= { ...this.query };
    this.query.after = after;
    if (limit !== undefined) {
      this.query.limit = limit;
      this._limitAtReset = limit; // the old window's deltas may come before the reset
    }
    this.client._carrier().reanchor(this, after, limit);
  }

  /** Stop following the query. The view's status becomes `offline`. */
  unsubscribe() {
    if (this.ended) return;
    this.client._carrier().unsubscribe(this);
    this._end(null);
  }

  /**
   * Resolves (with the view) once the list is synced; rejects with the error that
   * refused the subscription or the reanchor, or `Unavailable` past `timeoutMs`.
   * @param {number} [timeoutMs]
   * @returns {Promise<LiveView>}
   */
  whenSynced(timeoutMs = 10000) {
    if (this.synced && !this._reanchoring) return Promise.resolve(this);
    const ended = () => this.error ?? new LiveError("closed", `the view ${this.id} has ended`);
    if (this.ended) return Promise.reject(ended());
    return new Promise((resolve, reject) => {
      const clock = this.client._clock;
      const done = (fn, value) => {
        clock.clearTimeout(timer);
        offSynced();
        offError();
        offStatus();
        fn(value);
      };
      const timer = clock.setTimeout(() => done(reject, new Unavailable("unavailable",
        `no snapshot of ${this.id} within ${timeoutMs} ms`, { sub: this.sub })), timeoutMs);
      const offSynced = this.on("synced", () => done(resolve, this));
      const offError = this.on("error", (e) => { // the view ended, or a reanchor was refused
        if (this.ended || e.code === "invalid_query") done(reject, e);
      });
      const offStatus = this.on("status", (s) => {
        if (s === "offline") done(reject, ended());
      });
    });
  }

  // -- called by the transport that carries the view

  /**
   * @internal The rows to declare in a subscribe (a state-diff resume), or null: the
   * window list is synced and trusted, no reanchor is unanswered, and they fit.
   */
  _declarable() {
    if (this._reanchoring !== null) return null;
    const rows = this._state.held();
    if (rows === null) return null;
    // the whole subscribe must fit the server's frame maximum (64 KiB by default)
    return new TextEncoder().encode(JSON.stringify(rows)).length < DECLARE ? rows : null;
  }

  /**
   * @internal The `resume` of a WebSocket subscribe: `{rows}` (window mode, see
   * `_declarable`), `{pos}` (changes mode: the set was synced whole, with a pos, and is
   * trusted), or null.
   */
  _declaration() {
    if (!this._state.window) {
      const pos = this._state.heldPos();
      return pos === null ? null : { pos };
    }
    const rows = this._declarable();
    return rows === null ? null : { rows };
  }

  /**
   * @internal A new subscription (connect, reconnect or restart): a reset is due, or a
   * resume when `declared` (the subscribe carries the list; else it is not resumable).
   */
  _restart(declared = false) {
    this._acked = false;
    this._state.restart();
    if (!declared) this._state.resumable = false;
    this._declared = declared;
    this._state.limit = this.query.limit ?? null;
    this._limitAtReset = undefined;
    this._reanchoring = null;
    this._paging = false;
    this._heldSynced = false;
    this._changed();
  }

  /** @internal The transport came up or went down. */
  _setUp(up) {
    this._up = up;
    if (!up) { // a resubscribe or a resume is due
      this._heldSynced ||= this._state.synced;
      this._state.synced = false;
      this._paging = false;
    }
    this._changed();
  }

  /** @internal An event stream continued where it stopped: the list is as it was. */
  _resumed() {
    this._state.synced ||= this._heldSynced;
    this._heldSynced = false;
    this._changed();
  }

  /** @internal `subscribed` arrived. */
  _ack() {
    this._acked = true;
    this._refusals = 0;
  }

  /** @internal Apply one live message (throws `ProtocolViolation`: the carrier restarts). */
  _deliver(message) {
    if (message.op === "reset" && this._limitAtReset !== undefined) {
      this._state.limit = this._limitAtReset;
      this._limitAtReset = undefined;
    }
    const declared = this._declared;
    this._state.apply(message);
    this._declared = false;
    if (message.op === "resume") this.resumes += 1;
    else if (declared && message.op === "reset" && message.reason === "resume_miss") this.resumeMisses += 1;
    if (message.op === "reset") {
      this._paging = this._reanchoring !== null;
      this._reanchoring = null;
    }
    if (message.op === "synced") {
      this._everSynced = true;
      this._paging = false;
    }
    if (message.op === "synced" || message.op === "check") this._verify(message.op, message.digest);
    this._emit("change", message, this);
    if (message.op === "reset") this._emit("reset", this, this._state.reason);
    else if (message.op === "synced" || message.op === "check") this._emit(message.op, this);
    this._changed();
  }

  /** The reason of the last `reset` (`subscribe`, `failover`, ...; "" before any). */
  get resetReason() {
    return this._state.reason;
  }

  /** @private Hash the list as it is now; start over if it differs from `expected`. */
  _verify(op, expected) {
    if (!expected || !this._state.window) return;
    const pairs = this._state.rows.map((r) => [r.id, r.version]);
    const sub = this.sub;
    windowDigest(pairs).then((mine) => {
      if (mine === null || mine === expected || this.sub !== sub || this.ended) return;
      this.digestMismatches += 1;
      this.client._carrier().startOver(this, new DigestMismatch(
        `${op} digest ${expected}, the list of ${pairs.length} rows has ${mine}`));
    });
  }

  /** @internal A protocol violation: the carrier subscribes again under a new `sub`. */
  _violated(violation) {
    this.restarts += 1;
    this.sub = `${this.id}.${this.restarts}`;
    this.error = violation;
    this._emit("error", violation);
  }

  /** @internal The server refused a reanchor (the old window stays) or a message. */
  _refused(error) {
    this.error = error;
    if (this._reanchoring && error.code === "invalid_query") {
      this.query = this._reanchoring;
      this._reanchoring = null;
      this._limitAtReset = undefined;
    }
    this._emit("error", error);
  }

  /** @internal The view is over (unsubscribed, refused, client closed or token refused). */
  _end(error) {
    if (this.ended) return;
    this.ended = true;
    this._up = false;
    if (error) {
      this.error = error;
      this._emit("error", error);
    }
    this._changed();
  }

  /** @private emit `status` when the derived status moved */
  _changed() {
    const status = this.status;
    if (status !== this._status) {
      this._status = status;
      this._emit("status", status, this);
    }
  }
}

// ---------------------------------------------------------------------------- WebSocket

const REFUSALS = new Set([4401, 4403, 4408]); // close codes that refuse the token
const DECLARE = 48 * 1024; // at most this many bytes of declared rows in a subscribe
const DRAIN = 1001;

/**
 * One WebSocket that carries every view of a client.
 *
 * Invariants: its loop (`run`) is the only writer of the connection; it authenticates
 * with its first message, subscribes every view after `ready`, reconnects with
 * `Backoff` (at once after a 1001 drain or a refused token the callback replaced),
 * sends a fresh token before the current one expires, and treats a connection that
 * answered no ping for a whole heartbeat as lost. A refused token with nothing new
 * from the callback ends the client (`fail`).
 */
class WsCarrier {
  /** @param {LiveClient} client */
  constructor(client) {
    this.client = client;
    this.views = new Map(); // sub -> view
    this.ws = null; // the socket once `ready`, else null
    this.everOpened = false; // some socket ever reached `open` (WebSockets are not blocked)
    this.stopped = false;
    this.wake = null; // ends the pause between attempts
  }

  subscribe(view) {
    this.views.set(view.sub, view);
    if (!this.ws) return; // `ready` subscribes it
    view._setUp(true);
    this.sendSubscribe(view);
  }

  unsubscribe(view) {
    this.views.delete(view.sub);
    this.send({ type: "unsubscribe", sub: view.sub });
  }

  reanchor(view, after, limit) {
    if (!this.ws) return; // the resubscribe carries the new window
    const message = { type: "reanchor", sub: view.sub, after };
    if (limit !== undefined) message.limit = limit;
    this.send(message);
  }

  /** A protocol violation: the view starts over under a new `sub`. */
  startOver(view, violation) {
    this.views.delete(view.sub);
    this.send({ type: "unsubscribe", sub: view.sub });
    view._violated(violation);
    this.views.set(view.sub, view);
    this.sendSubscribe(view, false);
  }

  /**
   * Subscribe `view` (again): declaring its list, or its changes-mode log position, when
   * `declare` and it can (a resume).
   */
  sendSubscribe(view, declare = true) {
    const resume = declare ? view._declaration() : null;
    view._restart(resume !== null);
    const message = { type: "subscribe", sub: view.sub, query: view.query };
    if (view.check !== null) message.check = view.check;
    if (resume !== null) message.resume = resume;
    this.send(message);
  }

  send(message) {
    if (this.ws) this.ws.send(JSON.stringify(message));
  }

  stop() {
    this.stopped = true;
    this.wake?.();
    this.abort?.(null);
  }

  /** Connect, serve and reconnect until stopped, failed, or fallen back to SSE. */
  async run() {
    const client = this.client;
    let retry = 0;
    let refused = null; // the last refusal (its token, code, error), while none was accepted since
    while (!this.stopped) {
      const attempt = await this.attempt(refused);
      if (this.stopped) return;
      if (attempt.ready) {
        retry = 0;
        refused = null;
      }
      if (REFUSALS.has(attempt.code)) {
        if (!client._renewable || refused !== null) {
          client._fail(attempt.error ?? closeError(attempt.code));
          return;
        }
        refused = attempt; // ask the callback again, and retry at once
        await this.pause(0); // (a timer, not a microtask: a loop here could never starve the page)
        continue;
      }
      if (attempt.error) client._connectionError(attempt.error);
      if (!attempt.opened && !this.everOpened && (await client._fallBack())) return;
      if (this.stopped) return;
      client._setStatus("reconnecting");
      let pause;
      if (attempt.ready) {
        pause = attempt.code === DRAIN ? 0 : client._backoff.delay(0, client._random);
        retry = 1;
      } else {
        pause = client._backoff.delay(retry++, client._random);
      }
      await this.pause(pause);
    }
  }

  pause(ms) {
    return new Promise((resolve) => {
      const timer = this.client._clock.setTimeout(resolve, ms);
      this.wake = () => {
        this.client._clock.clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * One connection, served until it ends.
   * @returns {Promise<{token: string|null, opened: boolean, ready: boolean,
   *   code: number|null, error: LiveError|null}>}
   */
  async attempt(refused) {
    const client = this.client;
    const attempt = { token: null, opened: false, ready: false, code: null, error: null };
    try {
      attempt.token = await client._token();
    } catch (e) {
      attempt.error = new Unavailable("unavailable", `the token callback failed: ${e}`);
      return attempt;
    }
    if (this.stopped) return attempt;
    if (refused !== null && attempt.token === refused.token) { // nothing new to knock with
      attempt.code = refused.code;
      attempt.error = refused.error;
      return attempt;
    }
    let ws;
    try {
      ws = new client._WebSocket(client._wsUrl);
    } catch (e) {
      attempt.error = new Unavailable("unavailable", `${client._wsUrl}: ${e}`);
      return attempt;
    }
    return new Promise((resolve) => this.serve(ws, attempt, resolve));
  }

  /** Wire one socket's events; `finish` runs once, whatever ends it. */
  serve(ws, attempt, resolve) {
    const client = this.client;
    const clock = client._clock;
    const timers = { ready: null, heartbeat: null, refresh: null };
    let done = false;
    let heard = true; // something arrived since the last ping
    const finish = (code, error) => {
      if (done) return;
      done = true;
      for (const t of Object.values(timers)) if (t) clock.clearTimeout(t);
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      this.abort = null;
      if (this.ws === ws) this.ws = null;
      for (const view of this.views.values()) view._setUp(false);
      if (attempt.ready && !this.stopped) client._setStatus("reconnecting");
      attempt.code = code;
      if (error) attempt.error = error;
      if (ws.readyState < 2) try { ws.close(1000); } catch { /* closing already */ }
      resolve(attempt);
    };
    const beat = () => clock.setTimeout(() => {
      if (!heard) return finish(null, new Unavailable("unavailable", "the connection answered no ping"));
      heard = false;
      ws.send(JSON.stringify({ type: "ping", t: clock.now() }));
      timers.heartbeat = beat();
    }, client._heartbeat);
    this.abort = (error) => finish(null, error);
    timers.ready = clock.setTimeout(() => finish(null, new Unavailable("unavailable",
      `${client._wsUrl}: no \`ready\` within ${client._connectTimeout} ms`)), client._connectTimeout);
    ws.onopen = () => {
      attempt.opened = this.everOpened = true;
      ws.send(JSON.stringify({ type: "auth", token: attempt.token }));
    };
    ws.onclose = (event) => finish(event.code, this.closeReason(event, attempt));
    ws.onerror = () => {}; // `close` follows with the code
    ws.onmessage = (event) => {
      heard = true;
      let messages;
      try {
        messages = parseFrame(event.data);
      } catch {
        return finish(null, new Unavailable("unavailable", `${client._wsUrl}: a frame that is not JSON`));
      }
      for (const message of messages) {
        if (done) return;
        if (message?.type === "ready" && !attempt.ready) {
          clock.clearTimeout(timers.ready);
          timers.ready = null;
          this.ready(ws, attempt, timers);
          timers.heartbeat = beat();
        }
        this.dispatch(message ?? {}, attempt);
      }
    };
  }

  closeReason(event, attempt) {
    const error = closeError(event.code, event.reason);
    if (error && attempt.error?.code === error.code) return attempt.error; // told before the close
    if (error) return error;
    const url = this.client._wsUrl;
    if (!attempt.opened) return new Unavailable("unavailable", `${url}: the WebSocket did not open`);
    if (!attempt.ready) return new Unavailable("unavailable", `${url}: closed before \`ready\``);
    return null;
  }

  /** `ready`: the connection is live; every view subscribes again. */
  ready(ws, attempt, timers) {
    attempt.ready = true;
    attempt.error = null;
    this.ws = ws;
    this.client._setStatus("live");
    for (const view of [...this.views.values()]) {
      view._setUp(true);
      this.sendSubscribe(view);
    }
    this.scheduleRefresh(ws, attempt, timers);
  }

  /** Send a fresh token from the callback before the current one expires. */
  scheduleRefresh(ws, attempt, timers) {
    const client = this.client;
    if (!client._renewable) return;
    const delay = refreshDelay(attempt.token, client._clock.now());
    if (delay === null) return;
    timers.refresh = client._clock.setTimeout(async () => {
      let token;
      try {
        token = await client._token();
      } catch (e) { // at expiry the server closes with 4401, and the reconnect asks again
        client._connectionError(new Unauthorized("unauthorized", `the token callback failed: ${e}`));
        return;
      }
      if (this.ws !== ws) return;
      if (token !== attempt.token) {
        ws.send(JSON.stringify({ type: "auth", token }));
        attempt.token = token;
      }
      this.scheduleRefresh(ws, attempt, timers);
    }, delay);
  }

  dispatch(message, attempt) {
    const { type, sub } = message;
    if (type === "error" && sub == null) { // about the connection; a close may follow
      attempt.error = errorFor(message.code, String(message.message ?? ""));
      this.client._connectionError(attempt.error);
      return;
    }
    const view = typeof sub === "string" ? this.views.get(sub) : undefined;
    if (!view) return;
    if (type === "subscribed") view._ack();
    else if (type === "delta") this.deliver(view, message);
    else if (type === "error") {
      this.viewError(view, errorFor(message.code, String(message.message ?? ""), { sub }));
    }
  }

  deliver(view, message) {
    try {
      view._deliver(message);
    } catch (e) {
      this.startOver(view, asViolation(e));
    }
  }

  viewError(view, error) {
    if (!view._acked) { // the subscribe was refused: the server holds nothing for it
      if (error.code === "invalid_message" && view._declared) { // a gateway without resume
        this.sendSubscribe(view, false);
      } else if (ENDS_A_VIEW.has(error.code)) {
        this.views.delete(view.sub);
        view._end(error);
      } else { // refused for now (overloaded, rate limited): ask again after a pause
        const ws = this.ws;
        view.error = error;
        view._emit("error", error);
        this.client._clock.setTimeout(() => {
          const still = this.ws === ws && ws && this.views.get(view.sub) === view && !view._acked;
          if (still) this.sendSubscribe(view);
        }, this.client._backoff.delay(view._refusals++, this.client._random));
      }
    } else if (error.code === "forbidden") { // a refreshed token lost the scope
      this.views.delete(view.sub);
      view._end(error);
    } else {
      view._refused(error);
    }
  }
}

/** A WebSocket frame: one JSON message or an array of them (a batch). */
function parseFrame(data) {
  const text = typeof data === "string" ? data : new TextDecoder().decode(data);
  const parsed = JSON.parse(text);
  return Array.isArray(parsed) ? parsed : [parsed];
}

// ---------------------------------------------------------------------------- SSE

/** Event names a stream uses: one per op, and the control messages. */
const SSE_EVENTS = ["reset", "resume", "enter", "leave", "move", "update", "synced", "match",
  "unmatch", "subscribed", "message"];
/** The longest stream URL a view's declared list may make (bytes): what proxies commonly
 * accept in a request line (nginx 8 KiB); PROTOCOL.md section 5, "How much fits". */
const SSE_URL_LIMIT = 8 * 1024;
/** Answers of the query probe that say a stream will never open (no retry helps). */
const FINAL_REFUSALS = new Set([Forbidden, InvalidQuery, InvalidRequest, NotFound]);

/**
 * The views of a client carried by Server-Sent Events: one stream per view.
 *
 * Invariants: every stream opens with a fresh single-use ticket (`POST /v1/tickets`;
 * never the token in the URL) and, when it continues one, `last_event_id`, so the
 * gateway resumes after the last event seen without a snapshot where it still can;
 * a stream that the gateway started over (a new name in its event ids) restarts the
 * view's list. Every reopen that continues also declares the view's list (`resume`, a
 * state-diff resume, PROTOCOL.md section 5) when it can be declared and the whole URL
 * stays within `sseUrlLimit`: a gateway that cannot continue then sends the difference,
 * not a snapshot. A stream that declared and did not open is retried once without the
 * list (a gateway older than `resume` refuses the parameter). A changes-mode view never
 * declares over SSE: the gateway takes no log position there (PROTOCOL.md section 5:
 * `resume` is window rows only), so its reopened stream that cannot be continued costs
 * a snapshot. A stream is closed by the client on every failure (a dead ticket is
 * never retried by the browser) and reopened: at once after `token_expired` or a
 * token refresh, with backoff after a transport error.
 */
class SseCarrier {
  /** @param {LiveClient} client */
  constructor(client) {
    this.client = client;
    this.streams = new Map(); // view -> SseStream
    this.everOpened = false;
    this.reachable = false; // a ticket was given (the fallback's probe)
    this.stopped = false;
  }

  subscribe(view) {
    const stream = new SseStream(this, view);
    this.streams.set(view, stream);
    stream.open(false);
    this.status();
  }

  unsubscribe(view) {
    this.streams.get(view)?.close();
    this.streams.delete(view);
    this.status();
  }

  reanchor(view) { // SSE has no reanchor message: a new stream of the new window
    this.streams.get(view)?.reopen(false);
  }

  startOver(view, violation) {
    view._violated(violation);
    this.streams.get(view)?.reopen(false);
  }

  stop() {
    this.stopped = true;
    for (const stream of this.streams.values()) stream.close();
  }

  /**
   * The client's status: `live` once a stream (or the fallback's ticket) got through and
   * while no stream is lost (dropped, or failing to open); a new view's first stream does
   * not count as lost.
   */
  status() {
    if (this.stopped) return;
    const streams = [...this.streams.values()];
    if (streams.some((s) => s.lost)) {
      this.client._setStatus(this.everOpened ? "reconnecting" : "connecting");
    } else if (this.everOpened || this.reachable || streams.some((s) => s.up)) {
      this.client._setStatus("live");
    }
  }
}

class SseStream {
  /** @param {SseCarrier} carrier @param {LiveView} view */
  constructor(carrier, view) {
    this.carrier = carrier;
    this.client = carrier.client;
    this.view = view;
    this.es = null;
    this.up = false;
    this.lost = false; // dropped or failing since it was last open
    this.name = null; // the gateway's name of the stream (the ids' prefix)
    this.lastEventId = null;
    this.token = null; // the token the open stream's ticket was made with
    this.refused = null; // the token refused last, while none was accepted since
    this.retry = 0;
    this.timer = null; // the next reopen or refresh
    this.closed = false;
    this.generation = 0; // bumps on every open: late callbacks of older ones are ignored
    this.declared = false; // the current stream's URL declared the view's list
    this.skipDeclare = false; // the last stream declared and did not open: not this time
  }

  /** Open a stream: continuing after `lastEventId` (and declaring the list) when
   * `resume`, else afresh. */
  async open(resume) {
    const client = this.client;
    const generation = ++this.generation;
    if (!resume) this.lastEventId = null;
    let token;
    let ticket;
    try {
      token = await client._token();
      if (this.refused !== null && token === this.refused) {
        throw new Unauthorized("unauthorized", "the token was refused and the callback returned it again");
      }
      ticket = await client._ticket(token);
    } catch (e) {
      if (generation === this.generation && !this.closed) this.failed(toLiveError(e), token);
      return;
    }
    if (generation !== this.generation || this.closed) return;
    this.token = token;
    try {
      this.es = new client._EventSource(this.url(ticket, resume));
    } catch (e) {
      return this.failed(new Unavailable("unavailable", `EventSource: ${e}`), token);
    }
    this.listen(this.es, generation);
  }

  /**
   * The stream's URL: the query, the ticket, `last_event_id` when continuing, and with
   * `declare` the view's list as `resume` when it can be declared and the whole URL fits
   * in `sseUrlLimit` (`declared` says whether it went in).
   */
  url(ticket, declare) {
    const params = [`q=${encodeURIComponent(JSON.stringify(this.view.query))}`,
      `ticket=${encodeURIComponent(ticket)}`];
    if (this.lastEventId) params.push(`last_event_id=${encodeURIComponent(this.lastEventId)}`);
    const url = `${this.client._url}/v1/sse?${params.join("&")}`;
    const rows = declare && !this.skipDeclare ? this.view._declarable() : null;
    this.skipDeclare = false;
    const declaring = rows === null ? url : `${url}&resume=${encodeURIComponent(JSON.stringify(rows))}`;
    this.declared = rows !== null && declaring.length <= this.client._sseUrlLimit;
    return this.declared ? declaring : url;
  }

  listen(es, generation) {
    const current = () => generation === this.generation && !this.closed;
    es.addEventListener("open", () => current() && this.opened());
    for (const name of SSE_EVENTS) es.addEventListener(name, (e) => current() && this.event(e));
    es.addEventListener("token_expired", () => current() && this.expired());
    es.addEventListener("error", (e) => current() && this.error(e));
  }

  opened() {
    this.up = true;
    this.lost = false;
    this.retry = 0;
    this.refused = null;
    this.carrier.everOpened = true;
    this.view._setUp(true);
    if (this.lastEventId) this.view._resumed(); // a new name in the next event says otherwise
    this.carrier.status();
    this.scheduleRefresh();
  }

  event(e) {
    let message;
    try {
      message = JSON.parse(e.data);
    } catch {
      return this.carrier.startOver(this.view, new ProtocolViolation("an event that is not JSON"));
    }
    const id = e.lastEventId || "";
    const name = message.type === "subscribed" ? message.sub : id.slice(0, id.lastIndexOf("."));
    if (name && name !== this.name) { // a new stream, or one started over: seq from 1, and
      this.name = name; // a reset next, or a resume of the list the URL declared
      this.view._restart(this.declared);
      this.view._ack();
    }
    if (id) this.lastEventId = id;
    if (message.type === "delta") this.deliver(message);
    else if (message.type === "error") this.serverError(message);
  }

  deliver(message) {
    try {
      this.view._deliver(message);
    } catch (e) {
      this.carrier.startOver(this.view, asViolation(e));
    }
  }

  /** The gateway ended the stream because the token expired: a fresh token, and go on. */
  expired() {
    this.refused = this.token;
    this.reopen(true, true);
  }

  error(e) {
    if (typeof e?.data === "string") { // the server's `event: error`, not EventSource's own
      let message;
      try {
        message = JSON.parse(e.data);
      } catch {
        message = { code: "internal", message: e.data };
      }
      if (message.code === "unauthorized") return this.expired(); // a gateway before token_expired
      return this.serverError(message);
    }
    const wasUp = this.up;
    this.lost = true;
    this.skipDeclare = !wasUp && this.declared; // perhaps a gateway that refuses `resume`
    this.drop();
    if (wasUp) this.later(this.client._backoff.delay(this.retry++, this.client._random));
    else this.diagnose();
  }

  serverError(message) {
    const error = errorFor(message.code, String(message.message ?? ""), { sub: this.view.sub });
    if (ENDS_A_VIEW.has(error.code) && error.code !== "unauthorized") return this.end(error);
    this.view._refused(error);
    this.lost = true;
    this.drop();
    this.later(this.client._backoff.delay(this.retry++, this.client._random));
  }

  /**
   * The stream did not open. EventSource cannot read the 4xx that refused it, so the
   * same query goes to the data API: a refusal there is final, anything else retries.
   */
  async diagnose() {
    const generation = this.generation;
    let refusal = null;
    try {
      await this.client._probe(this.view.query);
    } catch (e) {
      refusal = toLiveError(e);
    }
    if (generation !== this.generation || this.closed) return;
    if (refusal instanceof Unauthorized || FINAL_REFUSALS.has(refusal?.constructor)) {
      return this.failed(refusal, this.token);
    }
    this.later(this.client._backoff.delay(this.retry++, this.client._random));
  }

  /**
   * Opening failed with `error` (the callback, the ticket or the probe said so): a
   * refused token is asked again once, a refused query ends the view, the rest retries.
   */
  failed(error, token) {
    this.lost = true;
    this.drop();
    if (error instanceof Unauthorized) {
      if (this.client._renewable && this.refused === null && token != null) {
        this.refused = token; // ask the callback again, at once
        return this.later(0);
      }
      return this.client._fail(error);
    }
    if (FINAL_REFUSALS.has(error.constructor)) return this.end(error);
    this.client._connectionError(error);
    this.later(this.client._backoff.delay(this.retry++, this.client._random));
  }

  scheduleRefresh() {
    if (!this.client._renewable) return;
    const delay = refreshDelay(this.token, this.client._clock.now());
    if (delay === null) return;
    const generation = this.generation;
    this.setTimer(async () => {
      let token;
      try {
        token = await this.client._token();
      } catch (e) {
        this.client._connectionError(new Unauthorized("unauthorized", `the token callback failed: ${e}`));
        return;
      }
      if (generation !== this.generation || this.closed) return;
      if (token === this.token) return this.scheduleRefresh();
      this.reopen(true, true); // a new stream with the new token, continuing after the last event
    }, delay);
  }

  /**
   * Close the current stream and open the next at once (`resume`: continue it; `quiet`:
   * a planned switch, the view stays up unless the next one fails).
   */
  reopen(resume, quiet = false) {
    this.drop(quiet);
    this.open(resume);
  }

  later(ms) {
    this.setTimer(() => this.open(true), ms);
  }

  setTimer(fn, ms) {
    if (this.timer) this.client._clock.clearTimeout(this.timer);
    this.timer = this.client._clock.setTimeout(() => {
      this.timer = null;
      fn();
    }, ms);
  }

  /** The current stream is over (the view stays, waiting for the next). */
  drop(quiet = false) {
    this.generation += 1;
    if (this.timer) this.client._clock.clearTimeout(this.timer);
    this.timer = null;
    this.es?.close();
    this.es = null;
    if (this.up && !quiet) {
      this.up = false;
      this.view._setUp(false);
    }
    this.carrier.status();
  }

  end(error) {
    this.close();
    this.carrier.streams.delete(this.view);
    this.view._end(error);
    this.carrier.status();
  }

  close() {
    this.closed = true;
    this.drop();
  }
}

function asViolation(e) {
  return e instanceof ProtocolViolation ? e : new ProtocolViolation(String(e));
}

function toLiveError(e) {
  return e instanceof LiveError ? e : new Unavailable("unavailable", String(e?.message ?? e));
}

// ---------------------------------------------------------------------------- data API

/**
 * One HTTP call of the data API (PROTOCOL.md section 7). Invariant: every answer other
 * than 2xx raises the typed error of its code (`errorFor`); no answer, or one that is
 * not lq's, raises `Unavailable`.
 */
async function call(fetchFn, method, url, token, { body, headers = {}, contentType } = {}) {
  const sent = { ...headers, Authorization: `Bearer ${token}` };
  if (body !== undefined) sent["Content-Type"] = contentType ?? "application/json";
  let response;
  try {
    const text = body === undefined ? undefined : JSON.stringify(body);
    response = await fetchFn(url, { method, headers: sent, body: text });
  } catch (e) {
    throw new Unavailable("unavailable", `${method} ${url}: ${e?.message ?? e}`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    if (response.ok) throw new Unavailable("unavailable", `${url}: HTTP ${response.status}, not JSON`);
  }
  if (response.ok) return data;
  const error = isObject(data) && isObject(data.error) ? data.error : null;
  if (!error || typeof error.code !== "string") {
    throw errorFor(null, `${method} ${url}: HTTP ${response.status}`, { status: response.status });
  }
  throw errorFor(error.code, String(error.message ?? ""), {
    status: response.status, version: isInt(error.version) ? error.version : null,
    outcome: typeof error.outcome === "string" ? error.outcome : null,
  });
}

function preconditions({ ifMatch, createOnly } = {}) {
  if (ifMatch != null) return { "If-Match": `"${ifMatch}"` };
  return createOnly ? { "If-None-Match": "*" } : {};
}

const rowPath = (entity, id) => `/v1/entities/${encodeURIComponent(entity)}/rows/${encodeURIComponent(id)}`;

// ---------------------------------------------------------------------------- the client

const realClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t),
};

/**
 * Live views and the data API of one lq gateway (or a load balancer in front of
 * several). Events: `status` (the new status), `error` (a connection-level
 * `LiveError`; the client keeps trying unless `status` is `offline`).
 */
export class LiveClient extends Emitter {
  /** @param {ConnectOptions} options see `connect` */
  constructor(options = {}) {
    super();
    const { url = globalThis.location?.origin, token, getToken, transport = "auto" } = options;
    if (!url) throw new TypeError("connect: give the gateway's url");
    if ((token == null) === (getToken == null)) {
      throw new TypeError("connect: give exactly one of token and getToken");
    }
    if (!["auto", "ws", "sse"].includes(transport)) {
      throw new TypeError(`connect: unknown transport ${transport}`);
    }
    this._url = String(url).replace(/\/+$/, "").replace(/^ws(s?):/, "http$1:");
    this._wsUrl = this._url.replace(/^http(s?):/, "ws$1:") + "/v1/ws";
    this._getToken = getToken ?? (() => token);
    this._renewable = getToken != null;
    this._transport = transport;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._EventSource = options.EventSource ?? globalThis.EventSource;
    this._fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this._backoff = options.backoff instanceof Backoff ? options.backoff : new Backoff(options.backoff);
    this._random = options.random ?? Math.random;
    this._clock = options.clock ?? realClock;
    this._connectTimeout = options.connectTimeout ?? 5000;
    this._heartbeat = options.heartbeat ?? 20000;
    this._sseUrlLimit = options.sseUrlLimit ?? SSE_URL_LIMIT;
    this._status = "connecting";
    this._views = new Set();
    this._counter = 0;
    this._spareTicket = null; // the fallback probe's ticket, used by the first stream
    /** @type {LiveError|null} the last connection-level error */
    this.error = null;
    this._ws = null;
    this._sse = null;
    if (transport === "sse" || (transport === "auto" && !this._WebSocket)) this._useSse();
    else if (this._WebSocket) this._useWs();
    else throw new TypeError("connect: no WebSocket here: pass `WebSocket` to connect() (Node 20 has none)");
  }

  /** `connecting` | `live` | `reconnecting` | `offline` (closed, or the token refused for good). */
  get status() {
    return this._status;
  }

  /** The transport in use now: `ws` or `sse`. */
  get transport() {
    return this._sse ? "sse" : "ws";
  }

  /** The views that have not ended. */
  get views() {
    return [...this._views].filter((v) => !v.ended);
  }

  /**
   * Follow a query live (PROTOCOL.md section 2). Returns the view at once; its `rows`
   * fill in as the snapshot arrives (`whenSynced()` waits for it).
   * @param {object} query `{entity, where?, sort?, limit?, after?, mode?}`
   * @param {{check?: number}} [options] `check`: seconds (1-3600) between the server's
   *   `check` messages of the list's digest (WebSocket, window mode; SSE sends none)
   * @returns {LiveView}
   */
  subscribe(query, options = {}) {
    if (!isObject(query) || typeof query.entity !== "string") {
      throw new TypeError("subscribe: the query is an object with an entity");
    }
    const view = new LiveView(this, `v${++this._counter}`, query, options);
    if (this._status === "offline") {
      view._end(this.error ?? new LiveError("closed", "the client is closed"));
      return view;
    }
    this._views.add(view);
    view.on("status", (s) => s === "offline" && this._views.delete(view));
    this._carrier().subscribe(view);
    return view;
  }

  /** Close the connection and end every view. */
  close() {
    this._setStatus("offline");
    for (const view of [...this._views]) view._end(null);
    this._views.clear();
    this._ws?.stop();
    this._sse?.stop();
  }

  // -- data API (PROTOCOL.md section 7)

  /**
   * The row, or null when there is none.
   * @returns {Promise<{id: string, version: number, row: object}|null>}
   */
  async get(entity, id) {
    try {
      return await this._request("GET", rowPath(entity, id));
    } catch (e) {
      if (e instanceof NotFound) return null;
      throw e;
    }
  }

  /** Write a whole row. `ttl` in seconds; `ifMatch` a version; `createOnly`. */
  put(entity, id, row, { ifMatch, createOnly, ttl } = {}) {
    const query = ttl != null ? `?ttl=${encodeURIComponent(ttl)}` : "";
    const headers = preconditions({ ifMatch, createOnly });
    return this._request("PUT", rowPath(entity, id) + query, { body: row, headers });
  }

  /** Merge `patch` into the row (RFC 7396); `NotFound` when it is absent. */
  patch(entity, id, patch, { ifMatch } = {}) {
    return this._request("PATCH", rowPath(entity, id), {
      body: patch, headers: preconditions({ ifMatch }), contentType: "application/merge-patch+json",
    });
  }

  /** Delete the row; `NotFound` when it is absent. */
  delete(entity, id, { ifMatch } = {}) {
    return this._request("DELETE", rowPath(entity, id), { headers: preconditions({ ifMatch }) });
  }

  /** One page of a query: `{rows: [{id, version, row, cursor}], next}`. */
  query(entity, { where, sort, limit, after } = {}) {
    const given = Object.entries({ where, sort, limit, after }).filter(([, v]) => v !== undefined);
    const body = Object.fromEntries(given);
    return this._request("POST", `/v1/entities/${encodeURIComponent(entity)}/query`, { body });
  }

  /** Several writes in one request, not atomic: one result per op, in order. */
  async batch(ops) {
    const answer = await this._request("POST", "/v1/batch", { body: { ops } });
    return answer.results;
  }

  // -- internals shared by the transports

  /** The token now: the string, or what the callback returns. */
  async _token() {
    const token = await this._getToken();
    if (typeof token !== "string" || !token) throw new TypeError("the token callback returned no string");
    return token;
  }

  /** A data call; a 401 is retried once when the callback gives a different token. */
  async _request(method, path, options) {
    if (!this._fetch) throw new TypeError("no fetch: pass `fetch` to connect()");
    const token = await this._token();
    try {
      return await call(this._fetch, method, this._url + path, token, options);
    } catch (e) {
      if (!(e instanceof Unauthorized) || !this._renewable) throw e;
      const fresh = await this._token();
      if (fresh === token) throw e;
      return call(this._fetch, method, this._url + path, fresh, options);
    }
  }

  /** A single-use ticket for an event stream, made with `token`. */
  async _ticket(token) {
    const spare = this._spareTicket;
    this._spareTicket = null;
    if (spare && spare.token === token && spare.until > this._clock.now()) return spare.ticket;
    const answer = await call(this._fetch, "POST", `${this._url}/v1/tickets`, token);
    if (!isObject(answer) || typeof answer.ticket !== "string") {
      throw new Unavailable("unavailable", "POST /v1/tickets answered without a ticket");
    }
    return answer.ticket;
  }

  /** Whether the data API takes the query: what a stream that did not open cannot say. */
  _probe(query) {
    const { entity, where, sort, after, limit } = query;
    return this.query(entity, { where, sort, after, limit: limit ?? 1 });
  }

  /**
   * `auto` after a WebSocket that never opened: when HTTP answers (a ticket), the
   * WebSocket is blocked on the way, so the views move to event streams.
   */
  async _fallBack() {
    if (this._transport !== "auto" || !this._EventSource || !this._fetch) return false;
    try {
      const token = await this._token();
      const answer = await call(this._fetch, "POST", `${this._url}/v1/tickets`, token);
      if (isObject(answer) && typeof answer.ticket === "string") {
        const ttl = (isInt(answer.expires_in) ? answer.expires_in : 30) * 1000;
        this._spareTicket = { token, ticket: answer.ticket, until: this._clock.now() + ttl / 2 };
      }
    } catch (e) {
      if (!(e instanceof LiveError) || e instanceof Unavailable) return false; // the gateway is down
    }
    if (this._status === "offline") return false;
    this._ws.stop();
    this._ws = null;
    this._useSse();
    this._sse.reachable = true;
    for (const view of this._views) this._sse.subscribe(view);
    this._sse.status();
    return true;
  }

  _useWs() {
    this._ws = new WsCarrier(this);
    this._ws.run().catch((e) => this._fail(toLiveError(e)));
  }

  _useSse() {
    if (!this._EventSource) {
      throw new TypeError("connect: neither WebSocket nor EventSource here: pass one to connect()");
    }
    if (!this._fetch) throw new TypeError("connect: SSE needs fetch (for tickets): pass `fetch` to connect()");
    this._sse = new SseCarrier(this);
    this._sse.status();
  }

  /** @returns {WsCarrier|SseCarrier} */
  _carrier() {
    return this._sse ?? this._ws;
  }

  _setStatus(status) {
    if (status === this._status || this._status === "offline") return;
    this._status = status;
    this._emit("status", status, this);
  }

  _connectionError(error) {
    this.error = error;
    this._emit("error", error);
  }

  /** The token was refused for good: the client goes offline, every view ends with it. */
  _fail(error) {
    if (this._status === "offline") return;
    this._connectionError(error);
    this._setStatus("offline");
    for (const view of [...this._views]) view._end(error);
    this._views.clear();
    this._ws?.stop();
    this._sse?.stop();
  }
}

/**
 * Connect to an lq gateway: `connect({url, token})` or `connect({url, getToken})`.
 * @param {ConnectOptions} options
 * @returns {LiveClient}
 *
 * @typedef {object} ConnectOptions
 * @property {string} [url] the gateway, `http(s)://host:port` (default: the page's origin)
 * @property {string} [token] a fixed token
 * @property {() => string|Promise<string>} [getToken] asked at every connect, before the
 *   current token expires, and after a refusal; it should cache its token
 * @property {"auto"|"ws"|"sse"} [transport] `auto` (default) falls back to SSE when the
 *   WebSocket cannot open but HTTP answers
 * @property {new (url: string) => any} [WebSocket] constructor (default `globalThis.WebSocket`)
 * @property {new (url: string) => any} [EventSource] constructor (default `globalThis.EventSource`)
 * @property {(url: string, init?: object) => Promise<any>} [fetch] (default `globalThis.fetch`)
 * @property {Backoff|{first?: number, cap?: number, factor?: number, jitter?: number}} [backoff]
 * @property {number} [connectTimeout] ms for the WebSocket to say `ready` (default 5000)
 * @property {number} [heartbeat] ms between pings; a silent interval drops the connection (20000)
 * @property {number} [sseUrlLimit] SSE: the longest stream URL (bytes) that may carry the
 *   view's list for a state-diff resume; a longer one leaves it out (default 8192)
 * @property {() => number} [random] for tests: the source of jitter (default Math.random)
 * @property {{now(): number, setTimeout(fn: () => void, ms: number): any,
 *   clearTimeout(t: any): void}} [clock] for tests: the clock and timers
 */
export function connect(options) {
  return new LiveClient(options);
}
