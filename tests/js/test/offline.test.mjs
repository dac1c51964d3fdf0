// Checks of the scenario scripts that need no realtime server: helpers, usage errors, and that
// every scenario fails cleanly (exit 3, one JSON line) when nothing listens or when the peer
// accepts TCP but never answers. Run: npm test (node's built-in test runner).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { Buffer } from "node:buffer";
import { matches, sameValue, jsonSafe } from "../scenarios/lib/common.mjs";
import { reviveBinary, normalizeSpec } from "../scenarios/lib/driver.mjs";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "scenarios");
const SCENARIOS = [
  "connect-auth",
  "upgrade",
  "message",
  "binary",
  "ack",
  "namespace",
  "bad-namespace",
  "reconnect",
  "keel-connect-error",
  "keel-rooms",
  "keel-disconnect",
  "driver",
];
// Extra arguments a scenario needs to get past its own usage checks.
const REQUIRED = {
  "keel-rooms": ["--token-a", "a", "--token-b", "b"],
  "keel-disconnect": ["--token", "t"],
  driver: ["--steps", '[{"op":"connect","as":"a"}]'],
};

function run(script, args, { env = {} } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(dir, `${script}.mjs`), ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, KEEL_URL: "", ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const started = Date.now();
    child.on("close", (code) => {
      const lines = stdout.trim().split("\n").filter(Boolean);
      let last;
      try {
        last = JSON.parse(lines.at(-1));
      } catch {}
      resolve({ code, stdout, stderr, lines, last, ms: Date.now() - started });
    });
  });
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

describe("helpers", () => {
  test("sameValue compares binary by bytes, whatever its type", () => {
    const bytes = [0, 1, 255];
    assert.ok(sameValue(Buffer.from(bytes), new Uint8Array(bytes).buffer));
    assert.ok(sameValue({ a: [Buffer.from(bytes)] }, { a: [new Uint8Array(bytes)] }));
    assert.ok(!sameValue(Buffer.from(bytes), Buffer.from([0, 1])));
    assert.ok(!sameValue({ a: 1 }, { a: 1, b: 2 }));
    assert.ok(!sameValue([1, 2], [2, 1]));
    assert.ok(!sameValue(Buffer.from("x"), "x"));
  });
  test("matches is a partial match on objects, exact on arrays", () => {
    assert.ok(matches({ ok: true, room: "r", extra: 1 }, { ok: true }));
    assert.ok(!matches({ ok: false }, { ok: true }));
    assert.ok(matches({ a: { b: 1, c: 2 } }, { a: { b: 1 } }));
    assert.ok(!matches([1, 2, 3], [1, 2]));
    assert.ok(!matches(undefined, { ok: true }));
    assert.ok(matches(null, null));
  });
  test("jsonSafe and reviveBinary round-trip binary", () => {
    const v = ["x", Buffer.from([1, 2]), { n: new Uint8Array([3]) }];
    const j = jsonSafe(v);
    assert.deepEqual(j, ["x", { $binary: "0102", length: 2 }, { n: { $binary: "03", length: 1 } }]);
    assert.ok(sameValue(reviveBinary(JSON.parse(JSON.stringify(j))), v));
  });
  test("normalizeSpec rejects bad specs before connecting", () => {
    assert.throws(() => normalizeSpec({}), /non-empty "steps"/);
    assert.throws(() => normalizeSpec([{ op: "nope" }]), /unknown op/);
    assert.throws(() => normalizeSpec([{ op: "wait", as: "a", event: "x" }]), /before its connect step/);
    assert.throws(() => normalizeSpec([{ op: "connect", as: "a" }, { op: "emit", as: "a" }]), /needs "event"/);
    assert.throws(() => normalizeSpec([{ op: "connect", as: "a" }, { op: "connect", as: "a" }]), /already connected/);
    assert.equal(normalizeSpec({ steps: [{ op: "sleep", ms: 1 }] }).length, 1);
  });
});

describe("usage errors exit 2 with one JSON line", { concurrency: true }, () => {
  for (const s of SCENARIOS) {
    test(`${s} without a URL`, async () => {
      const r = await run(s, []);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.last?.ok, false);
      assert.match(r.last.error, /no server URL/);
    });
  }
  test("unknown option", async () => {
    const r = await run("message", ["http://127.0.0.1:1", "--bogus"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bogus/);
  });
  test("keel-rooms needs both tokens", async () => {
    const r = await run("keel-rooms", ["http://127.0.0.1:1"]);
    assert.equal(r.code, 2);
    assert.match(r.last.error, /token-a/);
  });
  test("driver rejects a bad spec", async () => {
    const r = await run("driver", ["http://127.0.0.1:1", "--steps", '[{"op":"frob"}]']);
    assert.equal(r.code, 2);
    assert.match(r.last.error, /unknown op/);
  });
});

describe("nothing listening: every scenario times out cleanly", { concurrency: true }, () => {
  let port;
  before(async () => {
    const s = createServer();
    port = await listen(s);
    await new Promise((r) => s.close(r)); // the port is now (very likely) closed
  });
  for (const s of SCENARIOS) {
    test(s, async () => {
      const r = await run(s, [`http://127.0.0.1:${port}`, "--timeout", "700", ...(REQUIRED[s] ?? [])]);
      assert.equal(r.code, 3, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
      assert.equal(r.last?.ok, false);
      assert.equal(r.last.timeout, true);
      assert.equal(r.last.scenario, s);
      assert.match(r.stderr, /TIMEOUT/);
      assert.ok(r.ms < 6000, `took ${r.ms} ms`);
    });
  }
});

describe("a peer that accepts but never answers: bounded waits", { concurrency: true }, () => {
  let server;
  let port;
  const conns = new Set();
  before(async () => {
    server = createServer((c) => {
      conns.add(c);
      c.on("error", () => {});
    });
    port = await listen(server);
  });
  after(() => {
    for (const c of conns) c.destroy();
    server.close();
  });
  for (const s of ["connect-auth", "upgrade", "bad-namespace", "driver"]) {
    test(s, async () => {
      const r = await run(s, [`http://127.0.0.1:${port}`, "--timeout", "700", ...(REQUIRED[s] ?? [])]);
      assert.equal(r.code, 3, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
      assert.equal(r.last?.timeout, true);
      assert.ok(r.ms < 6000, `took ${r.ms} ms`);
    });
  }
});

test("KEEL_URL is used when no URL argument is given", async () => {
  const r = await run("message", ["--timeout", "300"], { env: { KEEL_URL: "http://127.0.0.1:1" } });
  assert.equal(r.code, 3);
  assert.match(r.last.error, /127\.0\.0\.1:1/);
});
