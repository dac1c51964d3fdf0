#!/usr/bin/env node
// Reference echo server on the official `socket.io` server package, with the behaviour of
// crates/realtime/examples/echo.rs. It is NOT a dependency of the tests: it exists to check
// the scenario scripts themselves ("is it my script or the Rust server?"). Install the server
// package without touching package.json or the lockfile, then run it:
//   npm install --no-save socket.io@4.8.3
//   node reference/echo-server.mjs [--port 0] [--pingInterval 25000] [--pingTimeout 20000] [--maxPayload 1000000]
// First stdout line: `listening on 127.0.0.1:PORT`.
import { createServer } from "node:http";
import { parseArgs } from "node:util";

let Server;
try {
  ({ Server } = await import("socket.io"));
} catch {
  process.stderr.write("reference/echo-server.mjs needs the socket.io package: npm install --no-save socket.io@4.8.3\n");
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    pingInterval: { type: "string" },
    pingTimeout: { type: "string" },
    maxPayload: { type: "string" },
  },
});
const num = (v, env, d) => Number(v ?? process.env[env] ?? d);
const port = num(values.port, "PORT", 0);
const http = createServer();
const io = new Server(http, {
  pingInterval: num(values.pingInterval, "PING_INTERVAL", 25000),
  pingTimeout: num(values.pingTimeout, "PING_TIMEOUT", 20000),
  maxHttpBufferSize: num(values.maxPayload, "MAX_PAYLOAD", 1000000),
});

function onConnection(socket) {
  socket.emit("auth", socket.handshake.auth ?? {});
  socket.on("message", (...args) => {
    if (typeof args[args.length - 1] === "function") args.pop();
    socket.emit("message-back", ...args);
  });
  socket.on("message-with-ack", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (ack) ack(...args);
  });
}
io.of("/").on("connection", onConnection);
io.of("/custom").on("connection", onConnection);

http.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening on 127.0.0.1:${http.address().port}\n`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
