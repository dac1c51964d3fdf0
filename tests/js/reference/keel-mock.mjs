#!/usr/bin/env node
// A mock of Keel's realtime events (API.md "Realtime") on the official `socket.io` server, to
// check the keel-* and driver scenario scripts without the Rust server. Like echo-server.mjs it
// is not a dependency: `npm install --no-save socket.io@4.8.3` first. Error codes here are
// placeholders; the real ones are the Rust server's.
//   node reference/keel-mock.mjs [PORT]      -> `listening on 127.0.0.1:PORT`
// Tokens: tok-a -> user "ua", tok-b -> user "ub". `POST /revoke?user=ID` sends a Socket.IO
// DISCONNECT (41) to that user's sockets, like a session revocation.
import { createServer } from "node:http";

let Server;
try {
  ({ Server } = await import("socket.io"));
} catch {
  process.stderr.write("reference/keel-mock.mjs needs the socket.io package: npm install --no-save socket.io@4.8.3\n");
  process.exit(2);
}

const USERS = { "tok-a": "ua", "tok-b": "ub" };
const ROOM = /^room:[A-Za-z0-9_.-]{1,64}$/;

const http = createServer((req, res) => {
  const u = new URL(req.url, "http://localhost");
  if (req.method === "POST" && u.pathname === "/revoke") {
    io.in(`user:${u.searchParams.get("user")}`).disconnectSockets(false);
    res.end("ok\n");
  }
});
const io = new Server(http);

io.use((socket, next) => {
  const token = socket.handshake.auth?.token;
  const fail = (code) => next(Object.assign(new Error("unauthorized"), { data: { code } }));
  if (!token) return fail("missing_token");
  if (!USERS[token]) return fail("invalid_token");
  socket.data.user = USERS[token];
  next();
});

io.on("connection", (socket) => {
  const user = socket.data.user;
  socket.join(`user:${user}`);
  const refuse = (ack, code) => typeof ack === "function" && ack({ ok: false, error: { code, message: code } });
  socket.on("join", ({ room } = {}, ack) => {
    if (!ROOM.test(room ?? "")) return refuse(ack, "forbidden_room");
    socket.join(room);
    socket.to(room).emit("presence", { room, userId: user, state: "joined" });
    ack?.({ ok: true });
  });
  socket.on("leave", ({ room } = {}, ack) => {
    socket.leave(room);
    socket.to(room).emit("presence", { room, userId: user, state: "left" });
    ack?.({ ok: true });
  });
  socket.on("message", ({ room, body } = {}, ack) => {
    if (!socket.rooms.has(room)) return refuse(ack, "not_in_room");
    socket.to(room).emit("message", { room, from: user, body, sentAt: new Date().toISOString() });
    ack?.({ ok: true });
  });
  socket.on("ping", (ack) => ack?.({ ok: true, serverTime: Date.now() }));
});

http.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  process.stdout.write(`listening on 127.0.0.1:${http.address().port}\n`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
