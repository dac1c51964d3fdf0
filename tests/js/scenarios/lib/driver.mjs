// A small step interpreter for Keel's own events, so the Rust harness can describe a
// multi-client scenario as JSON instead of needing one script per case.
//
// Spec: {"steps": [step, ...]} (or a bare array). Every step has "op"; client steps have "as"
// (a client name of your choice). Every wait is bounded by the step's "timeoutMs" or the
// script's --timeout. Binary values can be written as {"$binary": "<hex>"} anywhere in args.
//
//   {"op":"connect","as":"a","token":"T"}             connect, expect `connect`
//       optional: "auth":{...} (instead of token; null: send no auth), "nsp":"/",
//       "transports":["websocket"], "extraHeaders":{"cookie":"..","origin":".."},
//       "expect":"connect_error" (then records {message, code: data.code, data, active}),
//       "match":{...} (partial match on the connect_error {message, data} when expected)
//   {"op":"emit","as":"a","event":"join","args":[{"room":"room:x"}]}
//       optional: "ack":true (wait for the ack, recorded), "expectAck":{...} (partial match on
//       the first ack argument; implies ack), "timeoutMs"
//   {"op":"wait","as":"b","event":"message","match":{...}}
//       waits for the next unconsumed `event` whose first argument matches (partially) "match";
//       "matchArgs":[...] matches the whole argument list instead. Events received before the
//       step are not missed.
//   {"op":"noEvent","as":"a","event":"message","forMs":500}  fails if `event` arrives (or arrived
//       unconsumed) within forMs; "match" narrows it
//   {"op":"waitDisconnect","as":"a","reason":"io server disconnect","quietMs":1500}
//       waits for `disconnect`, checks the reason, then for quietMs checks that the client does
//       not reconnect (no reconnect attempt, no second `connect`, socket inactive) unless
//       "reconnects":true is given
//   {"op":"disconnect","as":"a"}                      client-side disconnect
//   {"op":"signal","name":"ready"}                    prints {"signal":"ready","at":ms,...} on stdout
//       (a sync point for the harness); "with":{...} adds fields; "ids":true adds socket ids
//   {"op":"waitInput","line":"go"}                    waits for that line on stdin (harness -> script)
//   {"op":"sleep","ms":200}
// Any step may carry "save":"name": its observation is also put under results.name.

import { Buffer } from "node:buffer";
import { createInterface } from "node:readline";
import {
  EventLog,
  ScenarioError,
  TimeoutError,
  EXIT_USAGE,
  check,
  describeError,
  jsonSafe,
  matches,
  printLine,
  sleep,
  withTimeout,
} from "./common.mjs";

/** Turns {"$binary":"hex"} back into Buffers. */
export function reviveBinary(v) {
  if (Array.isArray(v)) return v.map(reviveBinary);
  if (v && typeof v === "object") {
    if (typeof v.$binary === "string" && Object.keys(v).every((k) => k === "$binary" || k === "length")) {
      return Buffer.from(v.$binary, "hex");
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, reviveBinary(x)]));
  }
  return v;
}

const OPS = new Set(["connect", "emit", "wait", "noEvent", "waitDisconnect", "disconnect", "signal", "waitInput", "sleep"]);

/** Validates a spec up front so a typo fails before any connection is made. */
export function normalizeSpec(spec) {
  const steps = Array.isArray(spec) ? spec : spec?.steps;
  if (!Array.isArray(steps) || steps.length === 0) throw new ScenarioError("the spec needs a non-empty \"steps\" array", { code: EXIT_USAGE });
  const known = new Set();
  steps.forEach((s, i) => {
    const where = `step ${i}`;
    if (!s || typeof s !== "object") throw new ScenarioError(`${where} is not an object`, { code: EXIT_USAGE });
    if (!OPS.has(s.op)) throw new ScenarioError(`${where}: unknown op ${JSON.stringify(s.op)}`, { code: EXIT_USAGE });
    const needsClient = !["signal", "waitInput", "sleep"].includes(s.op);
    if (needsClient && typeof s.as !== "string") throw new ScenarioError(`${where} (${s.op}) needs "as"`, { code: EXIT_USAGE });
    if (s.op === "connect") {
      if (known.has(s.as)) throw new ScenarioError(`${where}: client ${s.as} is already connected`, { code: EXIT_USAGE });
      known.add(s.as);
    } else if (needsClient && !known.has(s.as)) {
      throw new ScenarioError(`${where}: client ${JSON.stringify(s.as)} is used before its connect step`, { code: EXIT_USAGE });
    }
    if (["emit", "wait", "noEvent"].includes(s.op) && typeof s.event !== "string") {
      throw new ScenarioError(`${where} (${s.op}) needs "event"`, { code: EXIT_USAGE });
    }
    if (s.op === "emit" && s.args !== undefined && !Array.isArray(s.args)) throw new ScenarioError(`${where}: "args" must be an array`, { code: EXIT_USAGE });
  });
  return steps;
}

let stdinLines;
function nextStdinLine() {
  if (!stdinLines) {
    const rl = createInterface({ input: process.stdin });
    const queue = [];
    const waiting = [];
    rl.on("line", (l) => (waiting.length ? waiting.shift()(l) : queue.push(l)));
    rl.on("close", () => {
      while (waiting.length) waiting.shift()(null);
      queue.closed = true;
    });
    stdinLines = () => (queue.length ? Promise.resolve(queue.shift()) : queue.closed ? Promise.resolve(null) : new Promise((r) => waiting.push(r)));
  }
  return stdinLines();
}

/**
 * Runs the steps. `obs.steps` gets one observation per step executed, `obs.results` the saved
 * ones. Throws ScenarioError/TimeoutError naming the failing step.
 */
export async function runSteps(io, cfg, steps, obs, track) {
  const clients = new Map(); // name -> { socket, log, attempts }
  obs.steps = [];
  obs.results = {};
  let lastSignalAt = null; // time of the last signal step, for sinceSignalMs

  for (const [i, step] of steps.entries()) {
    const ms = step.timeoutMs ?? cfg.timeoutMs;
    const label = `step ${i} (${step.op}${step.as ? " " + step.as : ""}${step.event ? " " + step.event : ""})`;
    const record = { i, op: step.op };
    if (step.as) record.as = step.as;
    obs.steps.push(record);
    try {
      switch (step.op) {
        case "connect": {
          let auth = step.auth;
          if (auth === undefined && step.token !== undefined && step.token !== null) auth = { token: step.token };
          const opts = {
            forceNew: true,
            reconnectionDelay: 200,
            reconnectionDelayMax: 1000,
            timeout: ms,
          };
          if (auth !== undefined && auth !== null) opts.auth = reviveBinary(auth);
          const transports = step.transports ?? cfg.transports;
          if (transports) opts.transports = transports;
          if (cfg.path) opts.path = cfg.path;
          if (step.extraHeaders) opts.extraHeaders = step.extraHeaders;
          const url = cfg.url + (step.nsp && step.nsp !== "/" ? step.nsp : "");
          const socket = track(io(url, opts));
          const client = { socket, log: new EventLog(step.as), attempts: 0 };
          client.log.attachSocket(socket);
          socket.io.on("reconnect_attempt", (n) => {
            client.attempts = n;
            client.log.push("$reconnect_attempt", [n]);
          });
          clients.set(step.as, client);
          if (step.expect === "connect_error") {
            // Only a server refusal (CONNECT_ERROR leaves the socket inactive) counts.
            const connected = client.log.wait("connect", ms + 1000).then(() => {
              throw new ScenarioError(`${label}: connected, but a connect_error was expected`, { details: { id: socket.id } });
            });
            connected.catch(() => {});
            const [err] = await Promise.race([
              client.log.wait("connect_error", ms, () => !socket.active, "a CONNECT_ERROR from the server"),
              connected,
            ]);
            const e = describeError(err);
            record.connectError = { message: e.message, code: err?.data?.code, data: e.data, active: socket.active };
            check(client.log.count("connect") === 0, `${label}: got connect as well as connect_error`);
            if (step.match !== undefined) {
              check(matches({ message: err?.message, data: err?.data }, reviveBinary(step.match)), `${label}: connect_error ${JSON.stringify(e)} does not match ${JSON.stringify(step.match)}`);
            }
            if (step.save) obs.results[step.save] = record.connectError;
          } else {
            const refused = client.log.wait("connect_error", ms + 1000, () => !socket.active).then(([err]) => {
              throw new ScenarioError(`${label}: refused: ${err?.message}`, { details: describeError(err) });
            });
            refused.catch(() => {});
            await Promise.race([client.log.wait("connect", ms, () => true, `"connect" to ${url}`), refused]);
            record.id = socket.id;
            record.transport = socket.io.engine.transport.name;
            if (step.save) obs.results[step.save] = { id: socket.id };
          }
          break;
        }
        case "emit": {
          const { socket } = clients.get(step.as);
          const args = reviveBinary(step.args ?? []);
          record.event = step.event;
          const wantsAck = step.ack === true || step.expectAck !== undefined;
          if (!wantsAck) {
            socket.emit(step.event, ...args);
            break;
          }
          const t0 = Date.now();
          const ackArgs = await withTimeout(
            new Promise((resolve, reject) =>
              socket.timeout(ms).emit(step.event, ...args, (err, ...a) => (err ? reject(new TimeoutError(`${label}: no ack within ${ms} ms`)) : resolve(a))),
            ),
            ms + 1000,
            `${label}: the ack`,
          );
          record.ack = jsonSafe(ackArgs.length === 1 ? ackArgs[0] : ackArgs);
          record.ackMs = Date.now() - t0;
          if (step.expectAck !== undefined) {
            check(matches(ackArgs[0], reviveBinary(step.expectAck)), `${label}: ack ${JSON.stringify(record.ack)} does not match ${JSON.stringify(step.expectAck)}`);
          }
          if (step.save) obs.results[step.save] = record.ack;
          break;
        }
        case "wait": {
          const { log } = clients.get(step.as);
          record.event = step.event;
          const pred = step.matchArgs !== undefined ? (...a) => matches(a, reviveBinary(step.matchArgs)) : step.match !== undefined ? (a0) => matches(a0, reviveBinary(step.match)) : () => true;
          const what = `"${step.event}"${step.match !== undefined || step.matchArgs !== undefined ? " matching " + JSON.stringify(step.match ?? step.matchArgs) : ""}`;
          let args;
          try {
            args = await log.wait(step.event, ms, pred, what);
          } catch (e) {
            // Say what did arrive, which is usually the clue.
            const seen = log.entries.filter((x) => x.event === step.event).map((x) => jsonSafe(x.args));
            throw new TimeoutError(`${label}: ${e.message}`, { seen });
          }
          record.args = jsonSafe(args);
          if (lastSignalAt !== null) record.sinceSignalMs = Date.now() - lastSignalAt;
          if (step.save) obs.results[step.save] = jsonSafe(args.length === 1 ? args[0] : args);
          break;
        }
        case "noEvent": {
          const { log } = clients.get(step.as);
          record.event = step.event;
          const pred = step.match !== undefined ? (a0) => matches(a0, reviveBinary(step.match)) : () => true;
          const forMs = step.forMs ?? 500;
          const got = await log.wait(step.event, forMs, pred).then(
            (a) => a,
            (e) => (e instanceof TimeoutError ? null : Promise.reject(e)),
          );
          check(got === null, `${label}: unexpected "${step.event}" ${JSON.stringify(jsonSafe(got))}`);
          break;
        }
        case "waitDisconnect": {
          const client = clients.get(step.as);
          const { socket, log } = client;
          const [reason, description] = await log.wait("disconnect", ms, () => true, `"disconnect"`);
          const at = Date.now();
          record.reason = reason;
          if (description?.description !== undefined) record.description = String(description.description?.message ?? description.description);
          if (lastSignalAt !== null) record.sinceSignalMs = at - lastSignalAt;
          if (step.reason !== undefined) check(reason === step.reason, `${label}: disconnect reason ${JSON.stringify(reason)} != ${JSON.stringify(step.reason)}`);
          const quietMs = step.quietMs ?? 1500;
          const attemptsBefore = log.count("$reconnect_attempt");
          const connectsBefore = log.count("connect");
          await sleep(quietMs);
          record.active = socket.active;
          record.reconnectAttempts = log.count("$reconnect_attempt") - attemptsBefore;
          record.reconnected = log.count("connect") > connectsBefore;
          if (step.reconnects) {
            check(record.reconnectAttempts > 0 || record.reconnected, `${label}: the client did not try to reconnect within ${quietMs} ms`);
          } else {
            check(!socket.active && record.reconnectAttempts === 0 && !record.reconnected, `${label}: the client tried to reconnect after "${reason}"`);
          }
          if (step.save) obs.results[step.save] = { reason, sinceSignalMs: record.sinceSignalMs };
          break;
        }
        case "disconnect": {
          clients.get(step.as).socket.disconnect();
          break;
        }
        case "signal": {
          lastSignalAt = Date.now();
          const line = { signal: step.name ?? "signal", step: i, ...(step.with ?? {}) };
          if (step.ids) line.ids = Object.fromEntries([...clients].map(([n, c]) => [n, c.socket.id ?? null]));
          await printLine(line);
          break;
        }
        case "waitInput": {
          const want = step.line;
          const line = await withTimeout(
            (async () => {
              for (;;) {
                const l = await nextStdinLine();
                if (l === null) throw new ScenarioError(`${label}: stdin closed before ${JSON.stringify(want ?? "a line")}`);
                if (want === undefined || l.trim() === want) return l.trim();
              }
            })(),
            ms,
            `${label}: a line ${JSON.stringify(want ?? "")} on stdin`,
          );
          record.line = line;
          break;
        }
        case "sleep": {
          await sleep(step.ms ?? 0);
          break;
        }
      }
      record.ok = true;
    } catch (e) {
      record.ok = false;
      if (!e.message.startsWith("step ")) e.message = `${label}: ${e.message}`;
      throw e;
    }
  }
  return clients;
}
