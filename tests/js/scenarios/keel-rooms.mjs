#!/usr/bin/env node
// Keel: two authenticated clients in one room. a joins, b joins (a sees presence "joined"),
// a sends `message` to the room (ack ok; b receives {"room","from","body","sentAt"}; a does
// not get its own), `ping` answers {"ok":true,"serverTime"}, b leaves (a sees presence "left"),
// joining `user:*` is refused.
//   node scenarios/keel-rooms.mjs URL --token-a TA --token-b TB [--user-a ID] [--user-b ID]
//        [--room room:interop] [--skip-presence] [--transports ...]
// --user-a/--user-b make the script check `from` and presence `userId` too.
// Prints {"scenario":"keel-rooms","ok":true,"steps":[...],"results":{"joinA","message","presenceJoined",...}}.
import { io } from "socket.io-client";
import { runScenario, ScenarioError, EXIT_USAGE } from "./lib/common.mjs";
import { runSteps } from "./lib/driver.mjs";

runScenario(
  "keel-rooms",
  {
    extra: {
      "token-a": { type: "string" },
      "token-b": { type: "string" },
      "user-a": { type: "string" },
      "user-b": { type: "string" },
      room: { type: "string" },
      "skip-presence": { type: "boolean" },
    },
    usage: "--token-a TA --token-b TB [--user-a ID] [--user-b ID] [--room room:NAME] [--skip-presence]",
  },
  async (cfg, obs, track) => {
    const v = cfg.values;
    const ta = v["token-a"] ?? process.env.KEEL_TOKEN_A;
    const tb = v["token-b"] ?? process.env.KEEL_TOKEN_B;
    if (!ta || !tb) throw new ScenarioError("--token-a and --token-b (or KEEL_TOKEN_A/KEEL_TOKEN_B) are required", { code: EXIT_USAGE });
    const room = v.room ?? "room:interop";
    const presence = !v["skip-presence"];
    const ua = v["user-a"];
    const ub = v["user-b"];
    const body = { text: "hello room", n: 1, nested: { list: [1, "two", null] } };
    const steps = [
      { op: "connect", as: "a", token: ta, save: "connectA" },
      { op: "connect", as: "b", token: tb, save: "connectB" },
      { op: "emit", as: "a", event: "join", args: [{ room }], expectAck: { ok: true }, save: "joinA" },
      { op: "emit", as: "b", event: "join", args: [{ room }], expectAck: { ok: true }, save: "joinB" },
      ...(presence
        ? [{ op: "wait", as: "a", event: "presence", match: { room, state: "joined", ...(ub ? { userId: ub } : {}) }, save: "presenceJoined" }]
        : []),
      { op: "emit", as: "a", event: "message", args: [{ room, body }], expectAck: { ok: true }, save: "messageAck" },
      { op: "wait", as: "b", event: "message", match: { room, body, ...(ua ? { from: ua } : {}) }, save: "message" },
      { op: "noEvent", as: "a", event: "message", forMs: 300 },
      { op: "emit", as: "a", event: "ping", args: [], expectAck: { ok: true }, save: "ping" },
      { op: "emit", as: "a", event: "join", args: [{ room: "user:someone-else" }], expectAck: { ok: false }, save: "joinUserRoom" },
      { op: "emit", as: "b", event: "leave", args: [{ room }], expectAck: { ok: true }, save: "leaveB" },
      ...(presence
        ? [{ op: "wait", as: "a", event: "presence", match: { room, state: "left", ...(ub ? { userId: ub } : {}) }, save: "presenceLeft" }]
        : []),
    ];
    await runSteps(io, cfg, steps, obs, track);
    const msg = obs.results.message;
    if (!msg || msg.sentAt === undefined) throw new ScenarioError(`message has no sentAt: ${JSON.stringify(msg)}`);
    if (obs.results.ping?.serverTime === undefined) throw new ScenarioError(`ping ack has no serverTime: ${JSON.stringify(obs.results.ping)}`);
  },
);
