#!/usr/bin/env node
// Scenario (a): connect over WebSocket only with `auth: {token}` and receive the echo
// server's `auth` event carrying that CONNECT payload.
//   node scenarios/connect-auth.mjs URL [--token abc] [--transports websocket] [--no-auth]
// Prints {"scenario":"connect-auth","ok":true,"transport":"websocket","id",...,"auth":{...}}.
import { io } from "socket.io-client";
import { runScenario, clientOptions, connectSocket, check, jsonSafe, sameValue } from "./lib/common.mjs";

runScenario(
  "connect-auth",
  { extra: { "no-auth": { type: "boolean" } }, usage: "[--no-auth]" },
  async (cfg, obs, track) => {
    if (!cfg.transports) cfg.transports = ["websocket"];
    if (cfg.token === undefined && !cfg.values["no-auth"]) cfg.token = "abc";
    if (cfg.values["no-auth"]) cfg.token = undefined;
    const sent = cfg.token === undefined ? {} : { token: cfg.token };
    obs.sentAuth = sent;
    const { socket, log } = await connectSocket(io, cfg.url, clientOptions(cfg), cfg, { track });
    obs.id = socket.id;
    obs.transport = socket.io.engine.transport.name;
    obs.engineSid = socket.io.engine.id;
    obs.sidDiffers = socket.id !== socket.io.engine.id;
    const [payload] = await log.wait("auth", cfg.timeoutMs);
    obs.auth = jsonSafe(payload);
    check(sameValue(payload, sent), `"auth" payload ${JSON.stringify(obs.auth)} != sent ${JSON.stringify(sent)}`);
    check(obs.transport === cfg.transports[0] || cfg.transports.length > 1, `transport is ${obs.transport}`);
    check(obs.sidDiffers, "the Socket.IO id equals the Engine.IO sid");
  },
);
