import { defineConfig } from "tsup"
import { library } from "../../scripts/tsup-library.js"

export default defineConfig([
  // the library (`@runcmd/cli`, `@runcmd/cli/Cli`...): built as every library package is; dist/bundle is the next
  // build's (both run at once), so it is not cleaned
  { ...library, clean: ["!bundle/**"] },
  // the `runcmd` command (bin/runcmd.js loads dist/bundle/runcmd.cjs): one file with everything it imports, so that
  // it starts without resolving and reading ~900 modules. CommonJS, so that V8's compiled code can be cached between
  // runs on Node 20 too (`vm.Script` `cachedData`, see bin/runcmd.js); what only some commands need (the commands, the
  // transports, the YAML parser) stays behind `import()`, which esbuild turns into a deferred module init
  {
    entry: { runcmd: "src/main.ts" },
    outDir: "dist/bundle",
    outExtension: () => ({ js: ".cjs" }),
    format: ["cjs"],
    tsconfig: "tsconfig.build.json",
    // everything is bundled but ssh2 and its native addons (required when the SSH transport is first used) and the
    // cloud SDKs (megabytes that every start would parse; required when an SSM or Azure target is first used)
    noExternal: [/^(?!(?:ssh2|cpu-features)(?:$|\/)|@aws-sdk\/|@smithy\/|@azure\/|@azure-rest\/|@typespec\/)/],
    external: ["ssh2", "cpu-features", /^@aws-sdk\//, /^@smithy\//, /^@azure\//, /^@azure-rest\//, /^@typespec\//],
    esbuildOptions: (options) => {
      // the workspace packages' `import "./chunk-X.js"` lines, dropped because they declare `sideEffects: []`
      options.logOverride = { "ignored-bare-import": "silent" }
    },
    // less text to parse when there is no code cache yet; names are kept for readable stack traces
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: true,
    clean: true,
    target: "node20",
    platform: "node"
  }
])
