// Bundle the page scripts (and their stylesheet) to IIFEs for the browser: `npm run build`.
// Output goes to the Django app's static directory; it is gitignored and rebuilt by
// `make run` / `make test`. Nothing is loaded from a CDN at run time.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, "../src/liveclass/pages/static/liveclass/build");

const options = {
  entryPoints: {
    broadcast: path.join(here, "broadcast.js"),
    watch: path.join(here, "watch.js"),
    replay: path.join(here, "replay.js"),
    chat: path.join(here, "chat.js"),
    live: path.join(here, "live.css"),
  },
  outdir,
  bundle: true,
  format: "iife",
  platform: "browser",
  target: ["chrome109", "firefox115", "safari16"],
  minify: true,
  sourcemap: "linked",
  legalComments: "linked",
  logLevel: "info",
  define: { "process.env.NODE_ENV": '"production"', global: "globalThis" },
};

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
