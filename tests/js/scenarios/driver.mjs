#!/usr/bin/env node
// Generic driver for Keel's own events: runs a JSON list of steps (connect, emit with ack,
// wait for an event, no event, wait for a server disconnect, signals to the harness...).
// The step language is documented at the top of lib/driver.mjs.
//   node scenarios/driver.mjs URL --steps '<JSON>'      (or --steps-file F, or $KEEL_STEPS)
// Prints zero or more {"signal":...} lines (sync points), then
//   {"scenario":"driver","ok":true,"steps":[{i,op,as,ok,...observation}],"results":{saved}}.
import { io } from "socket.io-client";
import { readFileSync } from "node:fs";
import { runScenario, ScenarioError, EXIT_USAGE } from "./lib/common.mjs";
import { normalizeSpec, runSteps } from "./lib/driver.mjs";

runScenario(
  "driver",
  {
    extra: { steps: { type: "string" }, "steps-file": { type: "string" }, name: { type: "string" } },
    usage: "--steps JSON | --steps-file FILE [--name LABEL]",
    defaultDeadlineMs: 60000,
  },
  async (cfg, obs, track) => {
    let text = cfg.values.steps ?? process.env.KEEL_STEPS;
    if (cfg.values["steps-file"]) {
      try {
        text = readFileSync(cfg.values["steps-file"], "utf8");
      } catch (e) {
        throw new ScenarioError(`cannot read --steps-file: ${e.message}`, { code: EXIT_USAGE });
      }
    }
    if (!text) throw new ScenarioError("no steps: pass --steps JSON, --steps-file FILE or KEEL_STEPS", { code: EXIT_USAGE });
    let spec;
    try {
      spec = JSON.parse(text);
    } catch (e) {
      throw new ScenarioError(`the steps are not JSON: ${e.message}`, { code: EXIT_USAGE });
    }
    if (cfg.values.name) obs.name = cfg.values.name;
    await runSteps(io, cfg, normalizeSpec(spec), obs, track);
  },
);
