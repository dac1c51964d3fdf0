#!/usr/bin/env node
// Scenario (g): connecting to an unknown namespace gets `connect_error` with message
// `Invalid namespace`, never `connect`, and the client does not retry (socket inactive).
//   node scenarios/bad-namespace.mjs URL [--nsp /nope] [--transports ...]
// Prints {"scenario":"bad-namespace","ok":true,"nsp":"/nope","connectError":{"message":"Invalid namespace"},"active":false}.
import { io } from "socket.io-client";
import { runScenario, clientOptions, EventLog, check, describeError, sleep, ScenarioError, EXIT_USAGE } from "./lib/common.mjs";

runScenario(
  "bad-namespace",
  { extra: { nsp: { type: "string" }, message: { type: "string" } }, usage: "[--nsp /nope] [--message 'Invalid namespace']" },
  async (cfg, obs, track) => {
    const nsp = cfg.values.nsp ?? "/nope";
    const expected = cfg.values.message ?? "Invalid namespace";
    if (!nsp.startsWith("/")) throw new ScenarioError("--nsp must start with /", { code: EXIT_USAGE });
    obs.nsp = nsp;
    const socket = track(io(cfg.url + nsp, clientOptions(cfg)));
    const log = new EventLog(nsp).attachSocket(socket);
    // Transport errors (server down) are connect_errors too, but the socket stays active and
    // retries; the server's CONNECT_ERROR leaves it inactive.
    const [err] = await log.wait("connect_error", cfg.timeoutMs, () => !socket.active, "a CONNECT_ERROR from the server");
    obs.connectError = describeError(err);
    obs.active = socket.active;
    await sleep(300); // a `connect` after the error would be a protocol violation
    obs.connected = log.count("connect") > 0;
    check(!obs.connected, "got `connect` for an unknown namespace");
    check(err?.message === expected, `connect_error message ${JSON.stringify(err?.message)} != ${JSON.stringify(expected)}`);
  },
);
