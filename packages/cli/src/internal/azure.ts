/**
 * `runcmd azure run-commands list|show|delete`: the lifecycle of managed run commands on the Azure targets of an
 * inventory (the seed's lifecycle table), through `@runcmd/transport-azure`'s `RunCommands`, loaded only here.
 *
 * @since 0.1.0
 * @internal
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Selector from "@runcmd/core/Selector"
import type * as Target from "@runcmd/core/Target"
import * as Effect from "effect/Effect"
import { type CliError, fromInvalidPlan, usage } from "./errors.js"
import { ExitCode } from "./exitCode.js"
import { loadInventory } from "./plan.js"
import { azureOptions } from "./transports.js"

/** @internal */
export interface AzureFlags {
  readonly inventory: string | undefined
  readonly select: ReadonlyArray<string>
  readonly output: "human" | "json"
}

const isAzure = (t: Target.Target) => t.kind === "azure-vm" || t.kind === "azure-vmss-vm"

const pad = (text: string, width: number) => text + " ".repeat(Math.max(0, width - [...text].length))

const table = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => [...r[i]!].length)))
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : pad(c, widths[i]!))).join("  ").trimEnd())
    .join("\n") + "\n"
}

/**
 * Runs one of the three commands on each selected Azure target, returning the exit code: 0 when every target
 * answered, 1 when some did not (each named with its error), 2 for bad usage (nothing asked).
 *
 * @internal
 */
export const runCommands = (
  action: "list" | "show" | "delete",
  name: string | undefined,
  flags: AzureFlags
): Effect.Effect<number, CliError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const where = `azure run-commands ${action}`
    if (flags.inventory === undefined) {
      return yield* Effect.fail(
        usage(`runcmd ${where}: --inventory is missing. Fix: name the inventory with the azure targets (-i FILE).`)
      )
    }
    const inventory = yield* loadInventory(flags.inventory, where)
    const selected = flags.select.length === 0
      ? inventory.targets
      : yield* Selector.select(inventory.targets, flags.select).pipe(
        Effect.mapError((e) => fromInvalidPlan(e, { command: where }))
      )
    const targets = selected.filter(isAzure)
    if (targets.length === 0) {
      return yield* Effect.fail(
        usage(
          `runcmd ${where}: no azure-vm or azure-vmss-vm target in ${flags.inventory}${
            flags.select.length === 0 ? "" : " matches the selector"
          }. Fix: select Azure targets.`
        )
      )
    }
    const RunCommands = yield* Effect.promise(() => import("@runcmd/transport-azure/RunCommands"))
    const options = yield* azureOptions.pipe(
      Effect.mapError((e) => usage(`runcmd ${where}: ${String(e)}. Fix: correct the RUNCMD_AZURE_* variable.`))
    )
    const results = yield* Effect.forEach(
      targets,
      (target) => {
        const t = target as Parameters<typeof RunCommands.list>[0]
        const effect = action === "list"
          ? RunCommands.list(t)
          : action === "show"
          ? Effect.map(RunCommands.show(t, name!), (info) => [info])
          : Effect.as(RunCommands.delete(t, name!), [])
        return effect.pipe(
          Effect.either,
          Effect.map((result) => ({ id: target.id, result }))
        )
      },
      { concurrency: 8 }
    ).pipe(Effect.provide(RunCommands.layer(options)))
    let failed = 0
    const json: Array<unknown> = []
    const rows: Array<Array<string>> = [["TARGET", "NAME", "STATE", "EXIT", "ENDED"]]
    const errors: Array<string> = []
    for (const { id, result } of results) {
      if (result._tag === "Left") {
        failed++
        errors.push(`${id}: ${result.left.message}`)
        json.push({ target: id, error: result.left.message })
        continue
      }
      if (action === "delete") {
        json.push({ target: id, deleted: name })
        rows.push([id, name!, "deleted", "-", "-"])
        continue
      }
      for (const info of result.right) {
        json.push({ target: id, ...info })
        rows.push([
          id,
          info.name,
          info.executionState ?? info.provisioningState ?? "-",
          info.exitCode === undefined ? "-" : String(info.exitCode),
          info.endTime === undefined ? "-" : info.endTime.toISOString()
        ])
      }
    }
    if (flags.output === "json") {
      process.stdout.write(JSON.stringify(json, null, 2) + "\n")
    } else {
      process.stdout.write(table(rows))
      if (action === "show") {
        for (const { id, result } of results) {
          if (result._tag === "Right" && result.right[0]?.output !== undefined) {
            process.stdout.write(`\n${id} output:\n${result.right[0].output}`)
          }
        }
      }
    }
    for (const e of errors) process.stderr.write(`runcmd ${where}: ${e}\n`)
    return failed === 0 ? ExitCode.Success : ExitCode.TargetsFailed
  })
