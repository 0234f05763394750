// Web Push in the browser: a service worker, the user's permission, and a
// subscription made with the server's VAPID key (`GET /push/vapid-public-key`),
// which the client then registers with the server (msgType 16).

import { RtgateError } from "./errors.js";

export interface EnablePushOptions {
  /** The service worker script (default "/push-sw.js", the one rtgate serves). */
  serviceWorker?: string;
  /** A service worker registration the page already has (its push handler is the app's). */
  registration?: ServiceWorkerRegistration;
  /**
   * How long the browser's push service may take to subscribe (ms, default
   * 10000). A browser that cannot reach it (a firewall, a browser built
   * without one) may otherwise never answer.
   */
  timeoutMs?: number;
}

/** base64url (no padding) to bytes: an `applicationServerKey`. */
export function base64UrlBytes(s: string): Uint8Array<ArrayBuffer> {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function sameKey(a: ArrayBuffer | null | undefined, b: Uint8Array<ArrayBuffer>): boolean {
  if (!a) return false;
  const x = new Uint8Array(a);
  return x.length === b.length && x.every((v, i) => v === b[i]);
}

/** The page's service worker registration for push, registered if needed. */
export async function pushRegistration(opts: EnablePushOptions): Promise<ServiceWorkerRegistration> {
  if (opts.registration) return opts.registration;
  if (typeof navigator === "undefined" || !("serviceWorker" in navigator) || typeof PushManager === "undefined") {
    throw new RtgateError(0, "this browser has no Web Push (service workers and PushManager)");
  }
  await navigator.serviceWorker.register(opts.serviceWorker ?? "/push-sw.js");
  return navigator.serviceWorker.ready;
}

/**
 * The browser's push subscription for the server at `base`: the user is
 * asked for permission, an old subscription made with another key is
 * replaced. Rejects with a clear error when the server sends no Web Push,
 * the user says no, or the browser's push service cannot be reached.
 */
export async function browserSubscription(base: string, opts: EnablePushOptions): Promise<PushSubscriptionJSON> {
  const res = await fetch(new URL("/push/vapid-public-key", base));
  if (!res.ok) throw new RtgateError(res.status, "the server sends no Web Push");
  const key = base64UrlBytes((await res.text()).trim());
  const reg = await pushRegistration(opts);
  if (typeof Notification !== "undefined" && Notification.permission !== "granted") {
    const answer = await Notification.requestPermission();
    if (answer !== "granted") throw new RtgateError(403, `notifications are ${answer}`);
  }
  let sub = await reg.pushManager.getSubscription();
  if (sub && !sameKey(sub.options.applicationServerKey, key)) {
    await sub.unsubscribe();
    sub = null;
  }
  const timeoutMs = opts.timeoutMs ?? 10_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    sub ??= await Promise.race([
      reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
      late,
    ]);
  } catch (e) {
    throw new RtgateError(503, `the browser's push service did not subscribe: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
  return sub.toJSON();
}
