#!/usr/bin/env node
// Runs every echo-server scenario against a server command, including the restart for the
// reconnect scenario, and prints one line per scenario and a closing "N passed, N failed".
//
//   node run-echo.mjs [--only NAME,NAME] [--timeout MS] -- SERVER COMMAND ... {port} ...
//
// The command is started with `{port}` replaced by 0 (or, without a `{port}`, as it is, with
// PORT=0 in its environment); its first stdout line must be `listening on 127.0.0.1:PORT`.
// For the reconnect scenario the server is killed (SIGKILL) and started again on the same port
// ({port} / PORT set to it). Examples:
//   node run-echo.mjs -- ../../target/debug/examples/echo --port {port}
//   node run-echo.mjs -- node reference/echo-server.mjs --port {port}
// Exit code 0 when every scenario passed.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const sep = process.argv.indexOf("--");
if (sep < 0 || sep === process.argv.length - 1) {
  process.stderr.write("usage: node run-echo.mjs [--only a,b] [--timeout MS] -- SERVER COMMAND (with {port})\n");
  process.exit(2);
}
const { values } = parseArgs({
  args: process.argv.slice(2, sep),
  options: { only: { type: "string" }, timeout: { type: "string" } },
});
const serverCmd = process.argv.slice(sep + 1);
const timeout = values.timeout ?? "5000";

const CASES = [
  ["connect-auth", ["--transports", "websocket", "--token", "abc"]],
  ["connect-auth/polling", ["--transports", "polling", "--token", "abc"], "connect-auth"],
  ["connect-auth/no-auth", ["--no-auth"], "connect-auth"],
  ["upgrade", []],
  ["message/websocket", ["--transports", "websocket"], "message"],
  ["message/polling", ["--transports", "polling"], "message"],
  ["binary/websocket", ["--transports", "websocket", "--size", "65536", "--empty"], "binary"],
  ["binary/polling", ["--transports", "polling", "--size", "65536", "--empty"], "binary"],
  ["ack/websocket", ["--transports", "websocket"], "ack"],
  ["ack/polling", ["--transports", "polling"], "ack"],
  ["namespace", ["--token", "abc"]],
  ["namespace/multiplex", ["--token", "abc", "--multiplex"], "namespace"],
  ["bad-namespace", []],
  ["bad-namespace/websocket", ["--transports", "websocket"], "bad-namespace"],
  ["reconnect", ["--token", "abc", "--expect-auth", "--transports", "websocket"]],
  ["reconnect/default", ["--token", "abc", "--expect-auth"], "reconnect"],
];

function startServer(port) {
  const hasPlaceholder = serverCmd.some((a) => a.includes("{port}"));
  const argv = serverCmd.map((a) => a.replaceAll("{port}", String(port)));
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // own process group, so `cargo run` and the binary it starts die together
    env: hasPlaceholder ? process.env : { ...process.env, PORT: String(port) },
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop(child);
      reject(new Error(`server did not print "listening on" within 120 s\n${stderr}`));
    }, 120000);
    const rl = createInterface({ input: child.stdout });
    rl.once("line", (line) => {
      clearTimeout(timer);
      const m = /^listening on (\S+):(\d+)\s*$/.exec(line);
      if (!m) {
        stop(child);
        return reject(new Error(`unexpected first line from the server: ${JSON.stringify(line)}`));
      }
      child.stdout.resume();
      resolve({ child, host: m[1], port: Number(m[2]) });
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening\n${stderr}`));
    });
  });
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  });
}

function runScenario(script, args, { onLine } = {}) {
  const child = spawn(process.execPath, [join(here, "scenarios", `${script}.mjs`), ...args, "--timeout", timeout], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const lines = [];
  createInterface({ input: child.stdout }).on("line", (l) => {
    lines.push(l);
    onLine?.(l);
  });
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, lines, stderr })));
}

let server = await startServer(0).catch((e) => {
  process.stderr.write(`${e.message}\n`);
  process.exit(1);
});
const url = `http://${server.host}:${server.port}`;
process.stderr.write(`server: ${url}\n`);
const only = values.only ? new Set(values.only.split(",")) : null;
let passed = 0;
let failed = 0;
for (const [name, args, script = name] of CASES) {
  if (only && !only.has(name) && !only.has(script)) continue;
  let restart = Promise.resolve();
  const onLine =
    script === "reconnect"
      ? (l) => {
          if (!l.includes('"event":"connected"')) return;
          restart = (async () => {
            await stop(server.child);
            await new Promise((r) => setTimeout(r, 300));
            server = await startServer(server.port);
          })();
        }
      : undefined;
  const r = await runScenario(script, [url, ...args], { onLine });
  await restart.catch((e) => process.stderr.write(`restart failed: ${e.message}\n`));
  const last = r.lines.at(-1) ?? "";
  if (r.code === 0) {
    passed++;
    process.stdout.write(`PASS ${name}\n`);
  } else {
    failed++;
    process.stdout.write(`FAIL ${name} (exit ${r.code}): ${r.stderr.trim().split("\n")[0] || last}\n`);
  }
  if (process.env.VERBOSE) process.stdout.write(`  ${last}\n`);
}
await stop(server.child);
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
