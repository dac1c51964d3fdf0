#!/usr/bin/env node
// Scenario (c): `message` -> `message-back` round trip with JSON arguments.
//   node scenarios/message.mjs URL [--transports websocket|polling] [--args '<JSON array>']
// Prints {"scenario":"message","ok":true,"transport":...,"sent":[...],"received":[...],"roundTripMs":n}.
import { io } from "socket.io-client";
import { runScenario, clientOptions, connectSocket, check, sameValue, jsonSafe, ScenarioError, EXIT_USAGE } from "./lib/common.mjs";

const DEFAULT_ARGS = [
  "hello",
  42,
  -1.5,
  { a: 1, nested: { b: [1, 2, "x"], t: true }, text: "ünïcødé ✓ 🚀 \"quoted\" \\ \n" },
  [true, false, null, [], {}],
  null,
];

runScenario(
  "message",
  { extra: { args: { type: "string" } }, usage: "[--args '<JSON array>']" },
  async (cfg, obs, track) => {
    let args = DEFAULT_ARGS;
    if (cfg.values.args !== undefined) {
      try {
        args = JSON.parse(cfg.values.args);
      } catch (e) {
        throw new ScenarioError(`--args is not JSON: ${e.message}`, { code: EXIT_USAGE });
      }
      if (!Array.isArray(args)) throw new ScenarioError("--args must be a JSON array", { code: EXIT_USAGE });
    }
    const { socket, log } = await connectSocket(io, cfg.url, clientOptions(cfg), cfg, { track });
    obs.transport = socket.io.engine.transport.name;
    obs.sent = args;
    const t0 = Date.now();
    socket.emit("message", ...args);
    const back = await log.wait("message-back", cfg.timeoutMs);
    obs.roundTripMs = Date.now() - t0;
    obs.received = jsonSafe(back);
    check(sameValue(back, args), `message-back differs from what was sent`);
  },
);
