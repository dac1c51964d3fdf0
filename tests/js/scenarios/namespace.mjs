#!/usr/bin/env node
// Scenario (f): connect to the namespace `/custom` (with `auth`) and receive its `auth` event.
// With --multiplex the main namespace `/` is opened too, over the same Engine.IO connection
// (one Manager), and both must connect and get their `auth`.
//   node scenarios/namespace.mjs URL [--nsp /custom] [--token abc] [--transports ...] [--multiplex]
// Prints {"scenario":"namespace","ok":true,"nsp":"/custom","id":...,"auth":{...}}.
import { Manager } from "socket.io-client";
import { runScenario, clientOptions, EventLog, check, sameValue, jsonSafe, ScenarioError, EXIT_USAGE } from "./lib/common.mjs";

runScenario(
  "namespace",
  { extra: { nsp: { type: "string" }, multiplex: { type: "boolean" } }, usage: "[--nsp /custom] [--multiplex]" },
  async (cfg, obs, track) => {
    const nsp = cfg.values.nsp ?? "/custom";
    if (!nsp.startsWith("/")) throw new ScenarioError("--nsp must start with /", { code: EXIT_USAGE });
    if (cfg.token === undefined) cfg.token = "abc";
    const sent = { token: cfg.token };
    const { auth, ...managerOpts } = clientOptions(cfg);
    const manager = new Manager(cfg.url, managerOpts);
    const names = cfg.values.multiplex ? [nsp, "/"] : [nsp];
    const sockets = names.map((n) => {
      const socket = track(manager.socket(n, { auth }));
      const log = new EventLog(n).attachSocket(socket);
      socket.on("connect_error", (err) => {
        if (!socket.active) log.push("$refused", [err]);
      });
      return { n, socket, log };
    });
    const results = [];
    for (const { n, socket, log } of sockets) {
      const refused = log.wait("$refused", cfg.timeoutMs + 1000).then(([err]) => {
        throw new ScenarioError(`${n}: connect_error ${JSON.stringify(err?.message)}`, { details: { data: err?.data } });
      });
      refused.catch(() => {});
      await Promise.race([log.wait("connect", cfg.timeoutMs, () => true, `"connect" to ${n}`), refused]);
      const [payload] = await log.wait("auth", cfg.timeoutMs, () => true, `"auth" on ${n}`);
      results.push({ nsp: n, id: socket.id, auth: jsonSafe(payload) });
      check(sameValue(payload, sent), `${n}: "auth" payload ${JSON.stringify(jsonSafe(payload))} != ${JSON.stringify(sent)}`);
    }
    obs.nsp = nsp;
    obs.transport = manager.engine.transport.name;
    obs.id = results[0].id;
    obs.auth = results[0].auth;
    if (cfg.values.multiplex) {
      obs.sockets = results;
      obs.engineConnections = 1; // one Manager, so one Engine.IO connection by construction
      check(results[0].id !== results[1].id, "the two namespaces got the same socket id");
    }
  },
);
