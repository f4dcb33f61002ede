// Builds what GuestGate serves of the front end into build/ (git-ignored, never committed):
//   build/static/guestgate/call-host.js  the lobby's widget host (frontend/call-host.js, bundled,
//                                        an ES module)
//   build/static/guestgate/call-host/    its chunks (esbuild splits at dynamic imports): what
//                                        every lobby loads, and what only the lobby of an
//                                        encrypted room loads (the Rust crypto's code and its
//                                        WebAssembly); hashed names, cached for a year
//   build/root/call/                     Element Call's embedded build, without source maps
// Django serves build/static with the other static files and build/root at the site's root
// (WhiteNoise); `python -m whitenoise.compress build` (the Makefile) adds .gz and .br files.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { cp, mkdir, readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, "build");
const modules = join(root, "node_modules");
const callSource = join(modules, "@element-hq", "element-call-embedded", "dist");
const wasmSource = join(
  modules, "@matrix-org", "matrix-sdk-crypto-wasm", "pkg", "matrix_sdk_crypto_wasm_bg.wasm",
);

await rm(out, { recursive: true, force: true });
const hostOut = join(out, "static", "guestgate");
await mkdir(join(hostOut, "call-host"), { recursive: true });
// The wasm under a name that changes with its content: it may be cached for a year.
const wasm = await readFile(wasmSource);
const wasmName = `call-host/matrix_sdk_crypto-${createHash("sha256").update(wasm).digest("hex").slice(0, 16)}.wasm`;
await cp(wasmSource, join(hostOut, wasmName));
await build({
  entryPoints: [join(root, "frontend", "call-host.js")],
  outdir: hostOut,
  entryNames: "[name]",
  chunkNames: "call-host/[name]-[hash]",
  bundle: true,
  splitting: true,
  minify: true,
  format: "esm",
  platform: "browser",
  target: ["es2020"],
  legalComments: "linked",
  define: {
    "process.env.NODE_ENV": '"production"',
    global: "globalThis",
    GUESTGATE_CRYPTO_WASM: JSON.stringify(`./${wasmName}`),
  },
  logLevel: "warning",
});
// 18 MB of the package are source maps: they are not served (CALL-LAB §9).
await cp(callSource, join(out, "root", "call"), {
  recursive: true,
  filter: (source) => !source.endsWith(".map"),
});
console.log("front end built in build/ (call host bundle, Element Call under /call/)");
