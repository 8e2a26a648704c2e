import type { Options } from "tsup"

/**
 * The build of every library package (`src/*.ts` → dist, ESM and CommonJS); a package's `tsup.config.ts` is
 * `defineConfig(library)`, or spreads it and changes what differs.
 */
export const library: Options = {
  entry: ["src/*.ts"],
  format: ["esm", "cjs"],
  tsconfig: "tsconfig.build.json",
  // declarations come from tsc (`codegen-index.mjs --declarations`, after tsup): the d.ts bundler loses the type
  // side of classes merged with namespaces (`Transport.Registry`) behind `export * as Transport`
  dts: false,
  // only this package's own modules are bundled: every bare import (dependencies, peers, the optional vitest peers
  // of `@runcmd/core/testing`, node builtins) stays an import, so a consumer shares one copy of each
  skipNodeModulesBundle: true,
  removeNodeProtocol: false,
  // shared modules in chunks for CommonJS too: one copy of each class (`TransportError`, `Transport.Registry`...)
  // whichever entry (`@runcmd/core`, `@runcmd/core/Transport`) a consumer requires
  splitting: true,
  sourcemap: true,
  clean: true,
  target: "node20",
  treeshake: true
}
