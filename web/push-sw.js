// rtgate's push service worker (served at /push-sw.js): shows the push the
// server sends when a direct message reached none of the user's sessions,
// and opens (or focuses) the chat when the notification is clicked.
// Payload (PROTOCOL.md section 12): {msgId, from, roomId?, count, preview?}.

self.addEventListener("push", (event) => {
  let p = {};
  try {
    p = event.data ? event.data.json() : {};
  } catch {
    p = { preview: event.data ? event.data.text() : "" };
  }
  const count = Number(p.count) || 1;
  const from = p.from || "someone";
  const title = count > 1 ? `${count} new messages` : `New message from ${from}`;
  const body = p.preview || (count > 1 ? `The latest from ${from}` : "Open the chat to read it");
  event.waitUntil(
    (async () => {
      // Open pages of this origin hear of it too (the demo logs it), with
      // whether the notification could be shown.
      let shown = true;
      try {
        await self.registration.showNotification(title, {
          body,
          tag: "rtgate-inbox",
          renotify: true,
          data: p,
        });
      } catch (e) {
        shown = String(e);
      }
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const w of windows) w.postMessage({ type: "rtgate-push", payload: p, title, body, shown });
      if (shown !== true) throw new Error(`notification not shown: ${shown}`);
    })(),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const p = event.notification.data || {};
  const url = new URL("/", self.location.origin);
  if (p.roomId) url.searchParams.set("room", p.roomId);
  else if (p.from) url.searchParams.set("chat", p.from);
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const w of windows) {
        if (new URL(w.url).origin === self.location.origin) {
          w.postMessage({ type: "rtgate-push-open", payload: p });
          return w.focus();
        }
      }
      return self.clients.openWindow(url.href);
    })(),
  );
});
