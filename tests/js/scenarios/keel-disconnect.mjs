#!/usr/bin/env node
// Keel: the server ends an authenticated socket (logout / session revocation -> Socket.IO
// DISCONNECT `41`). After connecting the script prints
//   {"signal":"connected","step":1,"ids":{"a":"<socket id>"}}
// and the harness then revokes the session. The script waits for `disconnect`, checks the reason
// ("io server disconnect" unless --reason says otherwise) and that the client does not reconnect
// during --quiet ms, then prints
//   {"scenario":"keel-disconnect","ok":true,"reason":"io server disconnect","sinceSignalMs":n,...}.
//   node scenarios/keel-disconnect.mjs URL --token T [--reason R] [--wait-timeout 10000]
//        [--quiet 2000] [--transports ...]
// sinceSignalMs is the time from the "connected" line to the disconnect (API.md: within 1 s of
// the revocation).
import { io } from "socket.io-client";
import { runScenario, ScenarioError, EXIT_USAGE } from "./lib/common.mjs";
import { runSteps } from "./lib/driver.mjs";

runScenario(
  "keel-disconnect",
  {
    extra: { reason: { type: "string" }, "wait-timeout": { type: "string" }, quiet: { type: "string" } },
    usage: "--token T [--reason 'io server disconnect'] [--wait-timeout MS] [--quiet MS]",
  },
  async (cfg, obs, track) => {
    if (cfg.token === undefined) throw new ScenarioError("--token (or KEEL_TOKEN) is required", { code: EXIT_USAGE });
    const waitMs = Number(cfg.values["wait-timeout"] ?? 10000);
    const quietMs = Number(cfg.values.quiet ?? 2000);
    if (!Number.isInteger(waitMs) || waitMs <= 0 || !Number.isInteger(quietMs) || quietMs < 0) {
      throw new ScenarioError("--wait-timeout and --quiet take milliseconds", { code: EXIT_USAGE });
    }
    if (cfg.deadlineMs < cfg.timeoutMs + waitMs + quietMs + 5000) cfg.setDeadline(cfg.timeoutMs + waitMs + quietMs + 5000);
    const steps = [
      { op: "connect", as: "a", token: cfg.token },
      { op: "signal", name: "connected", ids: true },
      { op: "waitDisconnect", as: "a", reason: cfg.values.reason ?? "io server disconnect", quietMs, timeoutMs: waitMs },
    ];
    await runSteps(io, cfg, steps, obs, track);
    const d = obs.steps[2];
    Object.assign(obs, { id: obs.steps[0].id, reason: d.reason, sinceSignalMs: d.sinceSignalMs, active: d.active, reconnectAttempts: d.reconnectAttempts });
    delete obs.steps;
    delete obs.results;
  },
);
