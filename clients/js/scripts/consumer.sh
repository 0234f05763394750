#!/usr/bin/env bash
# Installs the packed tarball ($1) into a scratch project, as an application
# would: its dependencies from npm's cache where `npm ci` left them, else
# from the registry (`npm ci` caches tarballs, not the registry's metadata
# that an install of a tarball resolves its dependencies with: `--offline`
# failed with ENOTCACHED on a fresh machine). Then it uses the package: its
# types compile under strict TypeScript (a wrong event name does not), and
# its ESM entry loads in Node.
set -euo pipefail
tarball=$(realpath "$1")
tsc=$(realpath "$(dirname "$0")/../node_modules/.bin/tsc")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
printf '{"name":"consumer","private":true,"type":"module"}\n' > package.json
npm install --prefer-offline --no-audit --no-fund --loglevel=error "$tarball"
cat > use.ts <<'TS'
import { RtgateClient, RtgateError, type Ack, type Message } from "rtgate-client";
const c = new RtgateClient({ url: "https://chat.example", userId: "alice", sendTimeoutMs: 5000 });
c.on("message", (m: Message) => console.log(m.msgBody));
c.on("presence", (p) => console.log(p.userId, p.event));
// @ts-expect-error: there is no such event
c.on("mesage", () => {});
const sent: Promise<Ack | null> = c.sendToRoom("lobby", { text: "hi" });
sent.catch((e: RtgateError) => console.log(e.code));
TS
"$tsc" --noEmit --strict --lib es2022,dom --module nodenext --moduleResolution nodenext use.ts
node --input-type=module -e '
import { RtgateClient, FrameDecoder, encodeFrame } from "rtgate-client";
const [f] = new FrameDecoder().push(encodeFrame("{}"));
if (typeof RtgateClient !== "function" || f !== "{}") process.exit(1);
console.log("the packed package installs, type-checks and loads");'
