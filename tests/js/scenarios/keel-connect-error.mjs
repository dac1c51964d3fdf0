#!/usr/bin/env node
// Keel: a connection with a missing or bad token is refused with CONNECT_ERROR
// {"message":"unauthorized","data":{"code":...}}; records the error and that the client
// does not retry by itself.
//   node scenarios/keel-connect-error.mjs URL [--token BAD] [--expect-code CODE]
//        [--expect-message unauthorized] [--transports ...] [--nsp /]
// Prints {"scenario":"keel-connect-error","ok":true,"connectError":{"message","code","data","active":false}}.
import { io } from "socket.io-client";
import { runScenario } from "./lib/common.mjs";
import { runSteps } from "./lib/driver.mjs";

runScenario(
  "keel-connect-error",
  {
    extra: { "expect-code": { type: "string" }, "expect-message": { type: "string" }, nsp: { type: "string" } },
    usage: "[--expect-code CODE] [--expect-message unauthorized] [--nsp /]",
  },
  async (cfg, obs, track) => {
    const match = { message: cfg.values["expect-message"] ?? "unauthorized" };
    if (cfg.values["expect-code"] !== undefined) match.data = { code: cfg.values["expect-code"] };
    const steps = [
      { op: "connect", as: "a", token: cfg.token ?? null, nsp: cfg.values.nsp, expect: "connect_error", match },
      { op: "sleep", ms: 500 },
      { op: "noEvent", as: "a", event: "connect", forMs: 10 },
    ];
    await runSteps(io, cfg, steps, obs, track);
    obs.connectError = obs.steps[0].connectError;
    delete obs.steps;
    delete obs.results;
  },
);
