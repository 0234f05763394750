// Bundles the package into the one script the server embeds and serves at
// /client.js (web/client.js): an IIFE that puts RtgateClient on the page.
// `--check` only compares: it fails when web/client.js is not what the
// sources build, so the committed bundle cannot drift from them.

import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const out = fileURLToPath(new URL("../../../web/client.js", import.meta.url));
const result = await esbuild.build({
  entryPoints: [fileURLToPath(new URL("../src/global.ts", import.meta.url))],
  bundle: true,
  format: "iife",
  target: "es2022",
  charset: "utf8",
  legalComments: "none",
  write: false,
  banner: {
    js: "// rtgate browser client, built from clients/js (npm run build); do not edit.\n// Source, types and docs: clients/js. License: MIT OR Apache-2.0.",
  },
});
const text = result.outputFiles[0].text;

if (process.argv.includes("--check")) {
  const committed = readFileSync(out, "utf8");
  if (committed !== text) {
    console.error("web/client.js differs from what clients/js builds: run `npm run build` in clients/js");
    process.exit(1);
  }
  console.log("web/client.js matches clients/js");
} else {
  writeFileSync(out, text);
  console.log(`web/client.js: ${text.length} bytes`);
}
