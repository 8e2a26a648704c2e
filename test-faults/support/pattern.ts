/**
 * A known output pattern with its checksum: a script prints numbered lines in chunks (a pause between them, so that
 * a fault can land mid-stream), keeps a record of what it printed, and ends with `END <sha256> <bytes>` of that
 * record; it also appends its pid to a marker file per execution (`exec-<id>`), so that a second run shows.
 * The checks: what a sink holds is a prefix of the pattern, and whole (checksum verified) exactly when the outcome
 * says the target succeeded.
 */
import { assert } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

export interface Shape {
  readonly chunks: number
  readonly lines: number
  /** Seconds between chunks. */
  readonly pause: number
}

const PAD = "x".repeat(40)

/** The script (sh); its target's environment gives `FAULTS_ID` and `FAULTS_DIR`. */
export const script = (shape: Shape): string =>
  `echo "$$" >> "$FAULTS_DIR/exec-$FAULTS_ID"
rec="$FAULTS_DIR/out-$FAULTS_ID.$$"
: > "$rec"
c=0
while [ "$c" -lt ${shape.chunks} ]; do
  awk -v id="$FAULTS_ID" -v c="$c" 'BEGIN { for (j = 0; j < ${shape.lines}; j++) printf "%s %04d %05d ${PAD}\\n", id, c, j }' | tee -a "$rec"
  c=$((c + 1))
  [ "$c" -lt ${shape.chunks} ] && sleep ${shape.pause}
done
printf 'END %s %s\\n' "$(sha256sum < "$rec" | cut -d' ' -f1)" "$(wc -c < "$rec" | tr -d ' ')"
`

/** The whole pattern a target prints (without its END line). */
export const expected = (id: string, shape: Shape): string => {
  const out: Array<string> = []
  for (let c = 0; c < shape.chunks; c++) {
    for (let j = 0; j < shape.lines; j++) {
      out.push(`${id} ${String(c).padStart(4, "0")} ${String(j).padStart(5, "0")} ${PAD}\n`)
    }
  }
  return out.join("")
}

/** A directory the SSH test user can write (markers and records). */
export const workDir = (): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-faults-"))
  fs.chmodSync(dir, 0o777)
  return dir
}

export const env = (dir: string, id: string) => ({ FAULTS_ID: id, FAULTS_DIR: dir })

/** How many times the target's script started. */
export const executions = (dir: string, id: string): number => {
  try {
    return fs.readFileSync(path.join(dir, `exec-${id}`), "utf8").split("\n").filter((l) => l !== "").length
  } catch {
    return 0
  }
}

/** Targets whose script has started (at least once). */
export const started = (dir: string, ids: ReadonlyArray<string>): number =>
  ids.filter((id) => executions(dir, id) > 0).length

/**
 * The output of one execution, as a sink holds it, against the pattern: a prefix of it (nothing lost in the
 * middle, nothing corrupted), whole with a matching checksum exactly when the outcome is `Succeeded`; cut output
 * comes with an outcome that says the target did not succeed and why (its error).
 */
export const checkOutput = (outcome: Outcome.Outcome, sunk: string, shape: Shape): "whole" | "cut" => {
  const id = outcome.targetId
  const whole = expected(id, shape)
  const end = /^END ([0-9a-f]{64}) (\d+)\n$/m.exec(sunk)
  if (end !== null) {
    const body = sunk.slice(0, end.index)
    assert.strictEqual(body.length, whole.length, `${id}: every byte before END`)
    assert.isTrue(body === whole, `${id}: the pattern, byte for byte`)
    assert.strictEqual(end[1], crypto.createHash("sha256").update(body).digest("hex"), `${id}: checksum`)
    assert.strictEqual(Number(end[2]), body.length, `${id}: length`)
    assert.strictEqual(sunk.length, end.index + end[0].length, `${id}: nothing after END`)
    assert.strictEqual(outcome._tag, "Succeeded", `${id}: whole output, so Succeeded`)
    return "whole"
  }
  assert.isTrue(whole.startsWith(sunk), `${id}: the output held is a prefix of the pattern (${sunk.length} bytes)`)
  assert.notStrictEqual(outcome._tag, "Succeeded", `${id}: output cut by the fault, yet Succeeded`)
  assert.property(outcome, "error", `${id}: a cut output comes with an error saying why (${outcome._tag})`)
  return "cut"
}

/** The per-target stdout file of a `file` sink (`per-target` layout). */
export const sunk = (dir: string, id: string): string => {
  try {
    return fs.readFileSync(path.join(dir, `${id}.stdout`), "utf8")
  } catch {
    return ""
  }
}

export const describeOutcomes = (outcomes: ReadonlyArray<Outcome.Outcome>): string =>
  outcomes.map((o) =>
    `${o.targetId}: ${o._tag}${"error" in o ? ` (${o.error.reason}: ${o.error.message})` : ""} ` +
    `stdout ${o.stdout.totalBytes} B`
  ).join("\n")
