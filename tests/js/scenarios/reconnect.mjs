#!/usr/bin/env node
// Scenario (h): the client reconnects by itself after the server goes away and comes back on the
// same port. The harness starts the server, runs this script, waits for the first line
//   {"event":"connected","n":1,"id":...,"transport":...}
// then kills the server and starts it again on the same port. The script waits for the
// disconnect and a second `connect` (bounded by --reconnect-timeout, default 30000 ms), then prints
//   {"scenario":"reconnect","ok":true,"connects":2,"disconnectReason":"transport close",...}.
//   node scenarios/reconnect.mjs URL [--token abc] [--transports ...] [--expect-auth]
//        [--reconnect-timeout MS]
// --expect-auth: the server emits `auth` on every connection (the echo server does); require it
// after both connects, with the same payload (the client re-sends its CONNECT auth).
import { io } from "socket.io-client";
import { runScenario, clientOptions, connectSocket, check, sameValue, jsonSafe, printLine, ScenarioError, EXIT_USAGE } from "./lib/common.mjs";

runScenario(
  "reconnect",
  {
    extra: { "expect-auth": { type: "boolean" }, "reconnect-timeout": { type: "string" } },
    usage: "[--expect-auth] [--reconnect-timeout MS]",
    defaultDeadlineMs: 90000,
  },
  async (cfg, obs, track) => {
    const reconnectMs = Number(cfg.values["reconnect-timeout"] ?? 30000);
    if (!Number.isInteger(reconnectMs) || reconnectMs <= 0) throw new ScenarioError("--reconnect-timeout must be a positive integer", { code: EXIT_USAGE });
    if (cfg.deadlineMs < 2 * reconnectMs + 3 * cfg.timeoutMs) cfg.setDeadline(2 * reconnectMs + 3 * cfg.timeoutMs);
    const expectAuth = !!cfg.values["expect-auth"];
    const sent = cfg.token === undefined ? {} : { token: cfg.token };
    const opts = clientOptions(cfg, { reconnectionDelay: 100, reconnectionDelayMax: 500, randomizationFactor: 0 });
    let attempts = 0;
    const { socket, log } = await connectSocket(io, cfg.url, opts, cfg, {
      track,
      onCreate: (s) => s.io.on("reconnect_attempt", (n) => (attempts = n)),
    });
    obs.firstId = socket.id;
    obs.firstTransport = socket.io.engine.transport.name;
    if (expectAuth) {
      const [a] = await log.wait("auth", cfg.timeoutMs, () => true, `"auth" after the first connect`);
      obs.firstAuth = jsonSafe(a);
      check(sameValue(a, sent), `first "auth" ${JSON.stringify(obs.firstAuth)} != ${JSON.stringify(sent)}`);
    }
    await printLine({ event: "connected", n: 1, id: socket.id, transport: obs.firstTransport });

    const [reason, description] = await log.wait("disconnect", reconnectMs, () => true, "the disconnect (was the server stopped?)");
    const downAt = Date.now();
    obs.disconnectReason = reason;
    if (description?.description !== undefined) obs.disconnectDescription = String(description.description?.message ?? description.description);
    obs.activeAfterDisconnect = socket.active;
    check(socket.active, `the client will not reconnect after "${reason}" (socket inactive)`);

    await log.wait("connect", reconnectMs, () => true, "the second connect (was the server started again on the same port?)");
    obs.reconnectMs = Date.now() - downAt;
    obs.reconnectAttempts = attempts;
    obs.connects = log.count("connect");
    obs.secondId = socket.id;
    obs.secondTransport = socket.io.engine.transport.name;
    obs.connectErrors = log.count("connect_error");
    if (expectAuth) {
      const [a] = await log.wait("auth", cfg.timeoutMs, () => true, `"auth" after the second connect`);
      obs.secondAuth = jsonSafe(a);
      check(sameValue(a, sent), `second "auth" ${JSON.stringify(obs.secondAuth)} != ${JSON.stringify(sent)}`);
    }
    check(obs.connects === 2, `saw ${obs.connects} connects`);
  },
);
