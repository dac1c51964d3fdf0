#!/usr/bin/env node
// Scenario (b): connect with the client's default options (HTTP long-polling first, then the
// upgrade to WebSocket); report the transport the connection opened with, the one at `connect`
// (already "websocket" when the upgrade finished before the server accepted the CONNECT, as an
// authenticating server may) and the one after the upgrade, then prove the upgraded connection
// carries traffic with a `message` -> `message-back` round trip.
//   node scenarios/upgrade.mjs URL [--skip-echo]
// Prints {"scenario":"upgrade","ok":true,"openTransport":"polling","initialTransport":...,
// "upgradedTo":"websocket","finalTransport":"websocket",...}.
import { io } from "socket.io-client";
import { runScenario, clientOptions, connectSocket, check, sameValue, jsonSafe, withTimeout } from "./lib/common.mjs";

runScenario(
  "upgrade",
  { extra: { "skip-echo": { type: "boolean" } }, usage: "[--skip-echo]" },
  async (cfg, obs, track) => {
    cfg.transports = undefined; // default options: ["polling", "websocket"], upgrade on
    let upgraded;
    const upgrade = new Promise((resolve) => (upgraded = resolve));
    const started = Date.now();
    const { socket, log } = await connectSocket(io, cfg.url, clientOptions(cfg), cfg, {
      track,
      onCreate: (s) => {
        obs.openTransport = s.io.engine.transport?.name;
        s.io.engine.on("upgrade", (t) => {
          obs.upgradedTo = t.name;
          upgraded(t.name);
        });
        s.io.engine.on("upgradeError", (err) => (obs.upgradeError = err?.message ?? String(err)));
      },
    });
    const engine = socket.io.engine;
    obs.id = socket.id;
    obs.initialTransport = engine.transport.name;
    if (engine.transport.name !== "websocket") {
      await withTimeout(upgrade, cfg.timeoutMs, "the upgrade to WebSocket");
    }
    obs.upgradeMs = Date.now() - started;
    obs.finalTransport = engine.transport.name;
    check(obs.openTransport === "polling", `the connection opened with ${obs.openTransport}, not HTTP long-polling`);
    check(obs.upgradedTo === "websocket", `no upgrade to WebSocket was seen (upgradedTo: ${obs.upgradedTo})`);
    check(obs.finalTransport === "websocket", `final transport is ${obs.finalTransport}`);
    if (!cfg.values["skip-echo"]) {
      const args = ["after-upgrade", { n: 1 }];
      socket.emit("message", ...args);
      const back = await log.wait("message-back", cfg.timeoutMs);
      obs.echo = jsonSafe(back);
      check(sameValue(back, args), `message-back ${JSON.stringify(obs.echo)} != ${JSON.stringify(args)}`);
    }
  },
);
