/**
 * The commands' flags as the pre-parser knows them (kept in step with the `@effect/cli` options by a test).
 *
 * @since 0.1.0
 * @internal
 */
import type { CommandSpec } from "./argv.js"

/**
 * The flags of each command, for the pre-parser (kept in step with the options above by a test).
 *
 * @internal
 */
export const commandSpecs: ReadonlyArray<CommandSpec> = [
  {
    path: ["run"],
    positional: 0,
    strayHint:
      "Put the command to run after -- (runcmd run -- uptime), or use --command 'shell text' or --script FILE. Nothing was run.",
    flags: [
      { name: "inventory", alias: "i", value: true },
      { name: "ssh-config", value: true },
      { name: "select", alias: "s", value: true },
      { name: "target", alias: "t", value: true },
      { name: "script", value: true },
      { name: "command", alias: "c", value: true },
      { name: "interpreter", value: true },
      { name: "concurrency", value: true },
      { name: "max-errors", value: true },
      { name: "timeout", value: true },
      { name: "deadline", value: true },
      { name: "kill-grace", value: true },
      { name: "retry", value: true },
      { name: "retry-backoff", value: true },
      { name: "batch", value: true },
      { name: "idempotent", value: false },
      { name: "run-as", value: true },
      { name: "become-method", value: true },
      { name: "ask-become-pass", value: false },
      { name: "env", alias: "e", value: true },
      { name: "cwd", value: true },
      { name: "secret", value: true },
      { name: "stdin", value: true },
      { name: "file", value: true },
      { name: "output", alias: "o", value: true },
      { name: "out-dir", value: true },
      { name: "group", value: false },
      { name: "report", value: true },
      { name: "dry-run", value: false },
      { name: "rerun-failed", value: true }
    ]
  },
  {
    path: ["inventory", "check"],
    positional: 1,
    strayHint: "It takes one inventory file: runcmd inventory check FILE.",
    flags: [
      { name: "select", alias: "s", value: true },
      { name: "output", alias: "o", value: true }
    ]
  },
  {
    path: ["report"],
    positional: 1,
    strayHint: "It takes one report file: runcmd report FILE.json.",
    flags: [
      { name: "failed", value: false },
      { name: "show-output", value: false }
    ]
  }
]
