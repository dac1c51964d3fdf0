#!/usr/bin/env node
// Scenario (d): binary arguments (Buffer, Uint8Array, nested in an object, several
// attachments) in `message` come back byte-identical in `message-back`.
//   node scenarios/binary.mjs URL [--transports websocket|polling] [--size N] [--empty]
// --size adds one more attachment of N pseudo-random bytes; --empty adds a zero-length one.
// Prints {"scenario":"binary","ok":true,"transport":...,"sent":[...],"received":[...]} where
// binary values appear as {"kind","length","sha256"}.
import { io } from "socket.io-client";
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { runScenario, clientOptions, connectSocket, check, sameValue, asBytes, ScenarioError, EXIT_USAGE } from "./lib/common.mjs";

function summary(v) {
  const b = asBytes(v);
  if (b) {
    const kind = Buffer.isBuffer(v) ? "Buffer" : v instanceof ArrayBuffer ? "ArrayBuffer" : v.constructor.name;
    return { kind, length: b.length, sha256: createHash("sha256").update(b).digest("hex").slice(0, 16) };
  }
  if (Array.isArray(v)) return v.map(summary);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, summary(x)]));
  return v;
}

function pseudoRandom(n) {
  const out = Buffer.alloc(n);
  let x = 0x12345678;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

runScenario(
  "binary",
  { extra: { size: { type: "string" }, empty: { type: "boolean" } }, usage: "[--size N] [--empty]" },
  async (cfg, obs, track) => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i)); // every byte value
    const args = [
      "binary",
      all,
      { label: "nested", data: new Uint8Array([0, 1, 2, 253, 254, 255]), list: [Buffer.from("\x1e\x00b4", "latin1")] },
    ];
    if (cfg.values.size !== undefined) {
      const n = Number(cfg.values.size);
      if (!Number.isInteger(n) || n < 0) throw new ScenarioError("--size must be a non-negative integer", { code: EXIT_USAGE });
      args.push(pseudoRandom(n));
    }
    if (cfg.values.empty) args.push(Buffer.alloc(0));
    const { socket, log } = await connectSocket(io, cfg.url, clientOptions(cfg), cfg, { track });
    obs.transport = socket.io.engine.transport.name;
    obs.sent = summary(args);
    socket.emit("message", ...args);
    const back = await log.wait("message-back", cfg.timeoutMs);
    obs.received = summary(back);
    check(sameValue(back, args), "message-back differs from what was sent (binary not byte-identical?)");
  },
);
