// uWebSockets.js as the best-known peer of rtgate-bench: the fan-out subset
// of the protocol that the floor (examples/rtgate-bench/baseline.rs) speaks
// (login with a room, room messages, `ping`), on uWS's native pub/sub: a
// room is a topic, a message is published once to it (the publisher
// excluded), and uWS corks each socket's writes per event-loop turn.
// No auth, no store. Prints `baseline listening http=ADDR` like the floor.
"use strict";
const uWS = require("uWebSockets.js");

const addr = process.argv[2] || "127.0.0.1";
const decoder = new TextDecoder();

uWS
  .App()
  .ws("/*", {
    compression: uWS.DISABLED,
    maxPayloadLength: 256 * 1024,
    // The generator's subscribers never fall behind by design; a backlog
    // past this is dropped by uWS as it would be in production.
    maxBackpressure: 64 * 1024 * 1024,
    idleTimeout: 0,
    message: (ws, message, isBinary) => {
      const text = decoder.decode(message);
      if (text === "ping") {
        ws.send("pong", false);
        return;
      }
      let v;
      try {
        v = JSON.parse(text);
      } catch {
        return;
      }
      const room = typeof v.roomId === "string" ? v.roomId : null;
      if (v.msgType === 2 && room === null) {
        ws.send('{"msgType":2}', false);
        return;
      }
      if (room === null) return;
      if (v.msgType === 2 || v.msgType === 5) {
        ws.subscribe(room);
        ws.send(JSON.stringify({ msgType: 2, roomId: room }), false);
        return;
      }
      // The frame as it came, to every other member.
      ws.publish(room, message, isBinary);
    },
  })
  .listen(addr, 0, (token) => {
    if (!token) {
      console.error("uws: could not listen");
      process.exit(1);
    }
    const port = uWS.us_socket_local_port(token);
    console.log(`baseline listening http=${addr}:${port}`);
  });
