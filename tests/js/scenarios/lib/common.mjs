// Shared plumbing for the interop scenarios: argument parsing, bounded waits, and the
// one-JSON-line result contract.
//
// Contract of every scenario script:
// - the server URL comes from the first positional argument, `--url`, or `KEEL_URL`;
// - every wait is bounded (`--timeout`, default 5000 ms per wait) and a watchdog
//   (`--deadline`) ends the process whatever happens;
// - the LAST stdout line is one JSON object: `{"scenario", "ok": true, ...observations}`
//   with exit code 0, or `{"scenario", "ok": false, "error", ...}` with a non-zero exit code
//   (1 failed expectation, 2 bad usage, 3 timeout) and the same message on stderr.
//   Scenarios that need a sync point with the harness (reconnect, driver signals) print
//   earlier JSON lines too, each with an `"event"` or `"signal"` key and no `"ok"` key.

import { parseArgs } from "node:util";
import { isDeepStrictEqual } from "node:util";
import { Buffer } from "node:buffer";

export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;
export const EXIT_TIMEOUT = 3;

/** An error whose exit code is chosen by its kind. */
export class ScenarioError extends Error {
  constructor(message, { code = EXIT_FAIL, details } = {}) {
    super(message);
    this.exitCode = code;
    this.details = details;
  }
}

export class TimeoutError extends ScenarioError {
  constructor(message, details) {
    super(message, { code: EXIT_TIMEOUT, details });
  }
}

export const COMMON_OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  transports: { type: "string" },
  path: { type: "string" },
  timeout: { type: "string" },
  deadline: { type: "string" },
  help: { type: "boolean", short: "h" },
};

function intOption(name, raw, fallback) {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    throw new ScenarioError(`--${name} must be a positive integer (milliseconds), got ${JSON.stringify(raw)}`, {
      code: EXIT_USAGE,
    });
  }
  return n;
}

/**
 * Parses argv for one scenario. `extra` adds scenario-specific options (parseArgs format).
 * Returns { url, token, transports, path, timeoutMs, deadlineMs, values, positionals }.
 */
export function parseScenarioArgs(scenario, { extra = {}, usage = "", defaultDeadlineMs = 30000 } = {}) {
  let parsed;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      options: { ...COMMON_OPTIONS, ...extra },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new ScenarioError(`${e.message}\n${usageText(scenario, usage)}`, { code: EXIT_USAGE });
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(usageText(scenario, usage) + "\n");
    process.exit(0);
  }
  const url = values.url ?? positionals[0] ?? process.env.KEEL_URL;
  if (!url) {
    throw new ScenarioError(`no server URL: pass it as the first argument, --url, or KEEL_URL\n${usageText(scenario, usage)}`, {
      code: EXIT_USAGE,
    });
  }
  try {
    const u = new URL(url);
    if (!["http:", "https:", "ws:", "wss:"].includes(u.protocol)) throw new Error("scheme");
  } catch {
    throw new ScenarioError(`not an http(s)/ws(s) URL: ${JSON.stringify(url)}`, { code: EXIT_USAGE });
  }
  const transportsRaw = values.transports ?? process.env.KEEL_TRANSPORTS;
  let transports;
  if (transportsRaw) {
    transports = transportsRaw.split(",").map((t) => t.trim()).filter(Boolean);
    for (const t of transports) {
      if (!["polling", "websocket", "webtransport"].includes(t)) {
        throw new ScenarioError(`unknown transport ${JSON.stringify(t)} (polling, websocket)`, { code: EXIT_USAGE });
      }
    }
  }
  const timeoutMs = intOption("timeout", values.timeout ?? process.env.KEEL_TIMEOUT_MS, 5000);
  const deadlineMs = intOption("deadline", values.deadline, Math.max(defaultDeadlineMs, timeoutMs * 4));
  return {
    url: url.replace(/\/+$/, ""),
    token: values.token ?? process.env.KEEL_TOKEN,
    transports,
    path: values.path ?? process.env.KEEL_PATH,
    timeoutMs,
    deadlineMs,
    values,
    positionals,
  };
}

function usageText(scenario, usage) {
  return [
    `usage: node scenarios/${scenario}.mjs [URL] [--url URL] [--token T] [--transports websocket,polling]`,
    `       [--path /socket.io/] [--timeout MS] [--deadline MS]${usage ? " " + usage : ""}`,
    `       URL defaults to $KEEL_URL (e.g. http://127.0.0.1:3000); token to $KEEL_TOKEN.`,
  ].join("\n");
}

/** Client options shared by scenarios: no silent retries beyond our waits, fresh Manager. */
export function clientOptions(cfg, more = {}) {
  const opts = {
    forceNew: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    timeout: cfg.timeoutMs, // engine.io connection timeout
    ...more,
  };
  if (cfg.transports) opts.transports = cfg.transports;
  if (cfg.path) opts.path = cfg.path;
  if (cfg.token !== undefined && opts.auth === undefined) opts.auth = { token: cfg.token };
  return opts;
}

/** Writes one line to stdout and resolves once it has been handed to the OS. */
export function printLine(obj) {
  return new Promise((resolve) => {
    process.stdout.write(JSON.stringify(obj) + "\n", () => resolve());
  });
}

/** Describes an error from socket.io-client (connect_error etc.) as plain JSON. */
export function describeError(err) {
  if (err === null || err === undefined) return err;
  if (!(err instanceof Error)) return jsonSafe(err);
  const out = { message: err.message };
  if (err.data !== undefined) out.data = jsonSafe(err.data);
  if (err.type !== undefined) out.type = err.type;
  if (err.description !== undefined) {
    const d = err.description;
    out.description = d instanceof Error ? d.message : typeof d === "object" ? String(d?.message ?? d?.type ?? d) : d;
  }
  if (err.context !== undefined && typeof err.context !== "object") out.context = err.context;
  // An HTTP long-polling error keeps the response in its XHR context: show the server's words.
  if (typeof err.context?.responseText === "string" && err.context.responseText) {
    out.response = err.context.responseText.slice(0, 300);
  }
  return out;
}

/**
 * Makes a value JSON-printable: binary (Buffer, ArrayBuffer, typed arrays) becomes
 * {"$binary": <hex>, "length": n} so the observation shows it was binary.
 */
export function jsonSafe(v) {
  const bytes = asBytes(v);
  if (bytes) return { $binary: Buffer.from(bytes).toString("hex"), length: bytes.length };
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = jsonSafe(x);
    return o;
  }
  if (typeof v === "function") return "[function]";
  return v;
}

/** Returns a Uint8Array view of binary values, or null for anything else. */
export function asBytes(v) {
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return null;
}

/**
 * Deep equality where any binary value equals any other binary value with the same bytes
 * (a Buffer sent may come back as a Buffer or an ArrayBuffer depending on the transport).
 */
export function sameValue(a, b) {
  const ab = asBytes(a);
  const bb = asBytes(b);
  if (ab || bb) return !!ab && !!bb && Buffer.compare(Buffer.from(ab), Buffer.from(bb)) === 0;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  }
  if (a && b && typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return isDeepStrictEqual(ka, kb) && ka.every((k) => sameValue(a[k], b[k]));
  }
  return Object.is(a, b);
}

/**
 * True when `actual` contains `expected`: objects match on the keys of `expected` only,
 * arrays element-wise with the same length, scalars and binary by value.
 */
export function matches(actual, expected) {
  if (expected === null || typeof expected !== "object" || asBytes(expected)) return sameValue(actual, expected);
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length && expected.every((e, i) => matches(actual[i], e));
  }
  if (!actual || typeof actual !== "object") return false;
  return Object.entries(expected).every(([k, e]) => matches(actual[k], e));
}

/**
 * Records every event of an emitter from now on, so a later wait never misses one that
 * arrived early. `wait(event, ms, pred)` resolves with the args of the first unconsumed
 * occurrence matching `pred`.
 */
export class EventLog {
  constructor(label) {
    this.label = label;
    this.entries = []; // { event, args, at, consumed }
    this.waiters = [];
  }

  push(event, args) {
    const entry = { event, args, at: Date.now(), consumed: false };
    // Snapshot errors now: the client resets an XHR error's context (the response) later.
    if (event === "connect_error") entry.described = describeError(args[0]);
    this.entries.push(entry);
    for (const w of [...this.waiters]) {
      if (!entry.consumed && w.event === event && w.pred(...args)) {
        entry.consumed = true;
        w.done(args);
      }
    }
  }

  /** Listens to reserved and ordinary events of a socket.io-client Socket. */
  attachSocket(socket) {
    socket.onAny((event, ...args) => this.push(event, args));
    for (const ev of ["connect", "connect_error", "disconnect"]) socket.on(ev, (...args) => this.push(ev, args));
    return this;
  }

  count(event) {
    return this.entries.filter((e) => e.event === event).length;
  }

  wait(event, ms, pred = () => true, what = undefined) {
    const found = this.entries.find((e) => !e.consumed && e.event === event && pred(...e.args));
    if (found) {
      found.consumed = true;
      return Promise.resolve(found.args);
    }
    return new Promise((resolve, reject) => {
      const w = {
        event,
        pred,
        done: (args) => {
          clearTimeout(timer);
          this.waiters.splice(this.waiters.indexOf(w), 1);
          resolve(args);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        const label = this.label ? `${this.label}: ` : "";
        reject(new TimeoutError(`${label}timed out after ${ms} ms waiting for ${what ?? `"${event}"`}`, this.lastErrors()));
      }, ms);
      this.waiters.push(w);
    });
  }

  /** Last connect_error / disconnect seen, to explain a timeout. */
  lastErrors() {
    const out = {};
    for (const ev of ["connect_error", "disconnect"]) {
      const e = [...this.entries].reverse().find((x) => x.event === ev);
      if (e) out[ev === "connect_error" ? "lastConnectError" : "lastDisconnect"] = ev === "connect_error" ? e.described : e.args[0];
    }
    return Object.keys(out).length ? out : undefined;
  }
}

/** Rejects with a TimeoutError if `promise` has not settled within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function check(cond, message, details) {
  if (!cond) throw new ScenarioError(message, { details });
}

/**
 * Runs a scenario body and enforces the output contract. `body(cfg, obs)` fills `obs` with
 * observations (printed on failure too) and may return extra fields. `cleanup` closes sockets.
 */
export async function runScenario(scenario, parseOpts, body) {
  const obs = {};
  let cfg;
  const sockets = [];
  const track = (s) => (sockets.push(s), s);
  const finish = async (code, line) => {
    for (const s of sockets) {
      try {
        s.io?.reconnection(false);
        s.disconnect();
        s.io?.engine?.close();
      } catch {}
    }
    await printLine(line);
    process.exit(code);
  };
  try {
    cfg = parseScenarioArgs(scenario, parseOpts);
  } catch (e) {
    process.stderr.write(`${scenario}: ${e.message}\n`);
    await printLine({ scenario, ok: false, error: e.message.split("\n")[0] });
    process.exit(e.exitCode ?? EXIT_USAGE);
  }
  const started = Date.now();
  let watchdog;
  // The body may raise the deadline (e.g. from its own wait options) with cfg.setDeadline(ms).
  cfg.setDeadline = (ms) => {
    cfg.deadlineMs = ms;
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      const msg = `deadline of ${cfg.deadlineMs} ms exceeded`;
      process.stderr.write(`${scenario}: TIMEOUT: ${msg}\n`);
      finish(EXIT_TIMEOUT, { scenario, ok: false, timeout: true, error: msg, ...obs });
    }, Math.max(0, started + ms - Date.now()));
  };
  cfg.setDeadline(cfg.deadlineMs);
  try {
    const extra = (await body(cfg, obs, track)) ?? {};
    clearTimeout(watchdog);
    await finish(0, { scenario, ok: true, ...obs, ...extra });
  } catch (e) {
    clearTimeout(watchdog);
    const code = e instanceof ScenarioError ? e.exitCode : EXIT_FAIL;
    const kind = code === EXIT_TIMEOUT ? "TIMEOUT" : "FAIL";
    process.stderr.write(`${scenario}: ${kind}: ${e.message}\n`);
    if (!(e instanceof ScenarioError)) process.stderr.write(`${e.stack}\n`);
    const line = { scenario, ok: false, error: e.message, ...obs };
    if (code === EXIT_TIMEOUT) line.timeout = true;
    if (e.details !== undefined) line.details = jsonSafe(e.details);
    await finish(code, line);
  }
}

/**
 * Connects a socket and waits for `connect`. A connect_error that the client will not retry
 * (a CONNECT_ERROR packet from the server: the socket is no longer active) fails at once;
 * transport errors are retried by the client until the wait times out, and the timeout names
 * the last connect_error. Returns { socket, log }.
 */
export async function connectSocket(io, url, opts, cfg, { label = "socket", track = (s) => s, onCreate } = {}) {
  const socket = track(io(url, opts));
  if (onCreate) onCreate(socket);
  const log = new EventLog(label).attachSocket(socket);
  const refused = new Promise((_, reject) => {
    socket.on("connect_error", (err) => {
      if (!socket.active) {
        reject(new ScenarioError(`${label}: connection refused by the server: ${err?.message}`, { details: describeError(err) }));
      }
    });
  });
  refused.catch(() => {});
  await Promise.race([log.wait("connect", cfg.timeoutMs, () => true, `"connect" to ${url}`), refused]);
  return { socket, log };
}
