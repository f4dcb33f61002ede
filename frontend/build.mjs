// Builds what GuestGate serves of the front end into build/ (git-ignored, never committed):
//   build/static/guestgate/call-host.js  the lobby's widget host (frontend/call-host.js, bundled)
//   build/root/call/                     Element Call's embedded build, without source maps
// Django serves build/static with the other static files and build/root at the site's root
// (WhiteNoise); `python -m whitenoise.compress build` (the Makefile) adds .gz and .br files.
import { build } from "esbuild";
import { cp, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, "build");
const callSource = join(root, "node_modules", "@element-hq", "element-call-embedded", "dist");

await rm(out, { recursive: true, force: true });
await mkdir(join(out, "static", "guestgate"), { recursive: true });
await build({
  entryPoints: [join(root, "frontend", "call-host.js")],
  outfile: join(out, "static", "guestgate", "call-host.js"),
  bundle: true,
  minify: true,
  format: "iife",
  platform: "browser",
  target: ["es2020"],
  legalComments: "linked",
  define: { "process.env.NODE_ENV": '"production"', global: "globalThis" },
  logLevel: "warning",
});
// 18 MB of the package are source maps: they are not served (CALL-LAB §9).
await cp(callSource, join(out, "root", "call"), {
  recursive: true,
  filter: (source) => !source.endsWith(".map"),
});
console.log("front end built in build/ (call host bundle, Element Call under /call/)");
