#!/usr/bin/env node
// Scenario (e): `message-with-ack` acknowledged with the same arguments, through
// `socket.timeout(ms).emitWithAck(...)` (one argument: the promise resolves with it) and through
// the callback form (several arguments, binary included unless --json-only).
//   node scenarios/ack.mjs URL [--transports websocket|polling] [--json-only]
// Prints {"scenario":"ack","ok":true,"emitWithAck":{...},"callback":{...}}.
import { io } from "socket.io-client";
import { Buffer } from "node:buffer";
import { runScenario, clientOptions, connectSocket, check, sameValue, jsonSafe, withTimeout, ScenarioError, TimeoutError } from "./lib/common.mjs";

// socket.io-client rejects with "operation has timed out" when no ack came in time.
const ackError = (what) => (err) => {
  if (err instanceof ScenarioError) throw err;
  const msg = `${what}: ${err?.message ?? err}`;
  throw /timed out/.test(err?.message ?? "") ? new TimeoutError(msg) : new ScenarioError(msg);
};

runScenario(
  "ack",
  { extra: { "json-only": { type: "boolean" } }, usage: "[--json-only]" },
  async (cfg, obs, track) => {
    const { socket } = await connectSocket(io, cfg.url, clientOptions(cfg), cfg, { track });
    obs.transport = socket.io.engine.transport.name;

    // 1. emitWithAck with a timeout: resolves with the first ack argument, rejects on timeout.
    const one = { question: "ack?", n: 7 };
    let t0 = Date.now();
    const answer = await socket.timeout(cfg.timeoutMs).emitWithAck("message-with-ack", one).catch(ackError("emitWithAck"));
    obs.emitWithAck = { sent: one, ack: jsonSafe(answer), ms: Date.now() - t0 };
    check(sameValue(answer, one), `emitWithAck resolved with ${JSON.stringify(jsonSafe(answer))}`);

    // 2. callback form with several arguments: (err, ...ackArgs).
    const many = cfg.values["json-only"] ? ["a", 1, { b: [null, true] }] : ["a", Buffer.from([0, 255, 1, 254]), { b: [null, true], bin: Buffer.from("ok") }];
    t0 = Date.now();
    const acked = await withTimeout(
      new Promise((resolve, reject) => {
        socket.timeout(cfg.timeoutMs).emit("message-with-ack", ...many, (err, ...ackArgs) => (err ? reject(err) : resolve(ackArgs)));
      }),
      cfg.timeoutMs + 1000,
      "the ack callback",
    ).catch(ackError("the ack callback"));
    obs.callback = { sent: jsonSafe(many), ack: jsonSafe(acked), ms: Date.now() - t0 };
    check(sameValue(acked, many), "callback ack arguments differ from what was sent");
  },
);
