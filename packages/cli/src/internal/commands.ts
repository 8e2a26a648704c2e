/**
 * The commands of `runcmd` as one declared table: every flag and argument with its help line and group, each
 * command's usage and examples. The pre-parser (`argv.ts`), the `@effect/cli` parser (`parser.ts`) and the help
 * (`help.ts`) are all made from it, so the help cannot drift from what the command accepts. Plain data: `--help`
 * reads it without loading the parser.
 *
 * @since 0.1.0
 * @internal
 */
import type { CommandSpec, FlagSpec } from "./argv.js"

/**
 * A flag: `value` takes one value (optional), `values` takes one per use (repeatable), `switch` takes none.
 *
 * @internal
 */
export interface Flag extends FlagSpec {
  readonly _tag: "Flag"
  readonly kind: "value" | "values" | "switch"
  readonly name: string
  readonly alias?: string | undefined
  /** The value's placeholder (`FILE`); empty for a switch. */
  readonly arg: string
  /** The only values accepted, when they are a fixed set (each one named by `help`). */
  readonly choices?: ReadonlyArray<string> | undefined
  /** The id of its group in its command's `groups`. */
  readonly group: string
  /** One line, lower case, no final period. */
  readonly help: string
}

/** @internal */
export interface ValueFlag extends Flag {
  readonly kind: "value"
}

/** @internal */
export interface ValuesFlag extends Flag {
  readonly kind: "values"
}

/** @internal */
export interface SwitchFlag extends Flag {
  readonly kind: "switch"
}

/**
 * A positional argument (`runcmd report FILE.json`).
 *
 * @internal
 */
export interface Positional {
  readonly _tag: "Positional"
  readonly name: string
  readonly help: string
}

/** @internal */
export type Field = Flag | Positional

/**
 * A command: what the pre-parser needs (`CommandSpec`) and what its help shows.
 *
 * @internal
 */
export interface CommandDoc<F extends Record<string, Field> = Record<string, Field>> extends CommandSpec {
  readonly path: ReadonlyArray<string>
  /** One line for the list of commands. */
  readonly summary: string
  /** A sentence or two under the usage. */
  readonly about: ReadonlyArray<string>
  /** Synopses, after `runcmd`. */
  readonly usage: ReadonlyArray<string>
  /** The flag groups in the order shown, with their headings. */
  readonly groups: ReadonlyArray<{ readonly id: string; readonly title: string }>
  /** The flags and arguments by the name the parser gives their values. */
  readonly fields: F
  readonly flags: ReadonlyArray<Flag>
  readonly positionals: ReadonlyArray<Positional>
  readonly positional: number
  readonly strayHint: string
  /** Command lines, after `runcmd`. */
  readonly examples: ReadonlyArray<string>
  /** Closing lines (exit status...). */
  readonly notes: ReadonlyArray<string>
}

type Extra = { readonly alias?: string; readonly choices?: ReadonlyArray<string> }

const value = (group: string, name: string, arg: string, help: string, extra: Extra = {}): ValueFlag => ({
  _tag: "Flag",
  kind: "value",
  value: true,
  group,
  name,
  arg,
  help,
  ...extra
})

const values = (group: string, name: string, arg: string, help: string, extra: Extra = {}): ValuesFlag => ({
  _tag: "Flag",
  kind: "values",
  value: true,
  group,
  name,
  arg,
  help,
  ...extra
})

const toggle = (group: string, name: string, help: string): SwitchFlag => ({
  _tag: "Flag",
  kind: "switch",
  value: false,
  group,
  name,
  arg: "",
  help
})

const positional = (name: string, help: string): Positional => ({ _tag: "Positional", name, help })

const command = <F extends Record<string, Field>>(
  doc: Omit<CommandDoc<F>, "flags" | "positionals" | "positional">
): CommandDoc<F> => {
  const fields = Object.values(doc.fields)
  const positionals = fields.filter((f): f is Positional => f._tag === "Positional")
  return {
    ...doc,
    flags: fields.filter((f): f is Flag => f._tag === "Flag"),
    positionals,
    positional: positionals.length
  }
}

/** @internal */
export const interpreters = ["sh", "bash", "python", "powershell"] as const
/** @internal */
export const becomeMethods = ["sudo", "su", "runuser", "doas"] as const
/** @internal */
export const controllerLossChoices = ["terminate", "continue"] as const
/** @internal */
export const runOutputs = ["human", "json", "jsonl"] as const
/** @internal */
export const checkOutputs = ["human", "json"] as const

const exitStatus = "Exit status: 0 all succeeded, 1 some did not, 2 bad usage (nothing ran), 130 interrupted."

/**
 * `runcmd run`.
 *
 * @internal
 */
export const run = command({
  path: ["run"],
  summary: "run a script, shell text or command on targets",
  about: [
    "Runs one job on many targets in parallel under a policy, with one outcome per target",
    "(live on a terminal, prefixed lines in a log, or JSON)."
  ],
  usage: [
    "run [flags] --script FILE [-- ARG...]",
    "run [flags] --command TEXT [-- ARG...]",
    "run [flags] -- COMMAND [ARG...]"
  ],
  groups: [
    { id: "targets", title: "Targets (none given: this machine, as the target \"local\")" },
    { id: "job", title: "Job (one of --script, --command, -- COMMAND)" },
    { id: "policy", title: "Policy" },
    { id: "runAs", title: "Run as another user" },
    { id: "output", title: "Output" }
  ],
  fields: {
    inventory: value("targets", "inventory", "FILE", "a YAML inventory: defaults, groups, targets (local, ssh)", {
      alias: "i"
    }),
    sshConfig: value("targets", "ssh-config", "FILE", "add the Host aliases of an OpenSSH config as ssh targets"),
    select: values("targets", "select", "EXPR", "targets matching role=web,env!=prod or id=web-*; repeat to OR", {
      alias: "s"
    }),
    target: values("targets", "target", "ID", "a target by id (without an inventory: a local one)", {
      alias: "t"
    }),
    rerunFailed: value(
      "targets",
      "rerun-failed",
      "FILE.json",
      "only the targets that did not succeed in a saved report"
    ),
    script: value("job", "script", "FILE", "a script file (interpreter from its shebang, else sh)"),
    command: value("job", "command", "TEXT", "shell text, run with sh (arguments after -- are its $1, $2...)", {
      alias: "c"
    }),
    interpreter: value("job", "interpreter", "NAME", "for --script and --command: sh, bash, python or powershell", {
      choices: interpreters
    }),
    env: values("job", "env", "NAME=VALUE", "an environment variable of the script", { alias: "e" }),
    secret: values("job", "secret", "NAME=ENVVAR", "a secret: $NAME from runcmd's $ENVVAR, redacted"),
    file: values("job", "file", "[NAME=]PATH", "ship a local file to $RUNCMD_FILES/NAME, removed after"),
    cwd: value("job", "cwd", "DIR", "working directory on each target"),
    stdin: value("job", "stdin", "FILE|-", "the script's standard input (- for runcmd's own)"),
    concurrency: value("policy", "concurrency", "N|N%", "targets running at once (default 10)"),
    maxErrors: value("policy", "max-errors", "N|N%", "failures tolerated; once exceeded, the rest is skipped"),
    timeout: value("policy", "timeout", "DURATION", "per target, e.g. 30s: TERM, then KILL after the kill grace"),
    deadline: value("policy", "deadline", "DURATION", "for the whole run, e.g. 10m"),
    killGrace: value("policy", "kill-grace", "DURATION", "between TERM and KILL (default 5s)"),
    retry: value("policy", "retry", "N", "retries of failures before delivery (connection refused, busy...)"),
    retryBackoff: value("policy", "retry-backoff", "DURATION", "first delay between retries, doubling (default 1s)"),
    idempotent: toggle("policy", "idempotent", "safe to run twice: also retry failures after it started"),
    batch: value("policy", "batch", "N|N%", "rolling batches: waves of N or N% of the targets"),
    onControllerLoss: value(
      "policy",
      "on-controller-loss",
      "WHAT",
      "when runcmd dies: terminate (default) or continue its jobs",
      { choices: controllerLossChoices }
    ),
    runAs: value("runAs", "run-as", "USER", "run the script as USER"),
    becomeMethod: value("runAs", "become-method", "METHOD", "sudo (default), su, runuser or doas", {
      choices: becomeMethods
    }),
    askBecomePass: toggle("runAs", "ask-become-pass", "ask for the password on the terminal (or RUNCMD_BECOME_PASS)"),
    output: value("output", "output", "FORMAT", "human (default), json (the report on stdout) or jsonl (events)", {
      alias: "o",
      choices: runOutputs
    }),
    group: toggle("output", "group", "each target's output as one block when it finishes"),
    outDir: value("output", "out-dir", "DIR", "each target's output in DIR/<target>.stdout and .stderr"),
    report: value("output", "report", "FILE", "write the JSON report to FILE (also when interrupted)"),
    dryRun: toggle("output", "dry-run", "show the targets, the policy and the wrapper script; run nothing")
  },
  strayHint:
    "Put the command to run after -- (runcmd run -- uptime), or use --command 'shell text' or --script FILE. Nothing was run.",
  examples: [
    "run -i inventory.yaml --script deploy.sh",
    "run -i inventory.yaml -s role=web,canary!=true -- uname -sr",
    "run -i inventory.yaml --batch 25% --max-errors 1 --timeout 30s -c 'systemctl restart app'",
    "run --ssh-config ~/.ssh/config -s 'id=build-*' -o json -- uptime > report.json",
    "run -i inventory.yaml --rerun-failed report.json --script deploy.sh"
  ],
  notes: [exitStatus]
})

/**
 * `runcmd inventory check FILE`.
 *
 * @internal
 */
export const inventoryCheck = command({
  path: ["inventory", "check"],
  summary: "validate an inventory and list its targets and labels",
  about: [
    "Validates an inventory and lists its targets, groups and labels (credentials are never printed).",
    "Exit 2 with the file and the place in it when it is invalid."
  ],
  usage: ["inventory check FILE [flags]"],
  groups: [{ id: "flags", title: "Flags" }],
  fields: {
    file: positional("FILE", "the YAML inventory"),
    select: values("flags", "select", "EXPR", "only the targets matching a selector; repeat to OR", { alias: "s" }),
    output: value("flags", "output", "FORMAT", "human (default) or json (ids, kinds and labels)", {
      alias: "o",
      choices: checkOutputs
    })
  },
  strayHint: "It takes one inventory file: runcmd inventory check FILE.",
  examples: [
    "inventory check inventory.yaml",
    "inventory check inventory.yaml -s role=web -o json"
  ],
  notes: []
})

/**
 * `runcmd report FILE.json`.
 *
 * @internal
 */
export const report = command({
  path: ["report"],
  summary: "render a saved JSON report",
  about: [
    "Renders a report saved by `runcmd run --report FILE` (or --output json): the summary table.",
    "Exits as that run did (0, 1 or 130)."
  ],
  usage: ["report FILE.json [flags]"],
  groups: [{ id: "flags", title: "Flags" }],
  fields: {
    file: positional("FILE.json", "a JSON report"),
    failed: toggle("flags", "failed", "print only the ids of the targets that did not succeed, one per line"),
    showOutput: toggle("flags", "show-output", "also print each target's captured output")
  },
  strayHint: "It takes one report file: runcmd report FILE.json.",
  examples: [
    "report report.json",
    "report report.json --failed"
  ],
  notes: []
})

/** An `emulate <service>` command: its flags in one group after `--port`, no arguments, the same note. */
const emulator = <F extends Record<string, Field>>(spec: {
  readonly service: string
  readonly summary: string
  readonly about: ReadonlyArray<string>
  readonly fields: F
  readonly examples: ReadonlyArray<string>
}) =>
  command({
    path: ["emulate", spec.service],
    summary: spec.summary,
    about: spec.about,
    usage: [`emulate ${spec.service} [flags]`],
    groups: [{ id: "flags", title: "Flags" }],
    fields: { port: value("flags", "port", "N", "the port (default: any free one)"), ...spec.fields },
    strayHint: "It takes no arguments.",
    examples: spec.examples,
    notes: ["Serves on 127.0.0.1 until interrupted (Ctrl-C or SIGTERM); the JSON line on stdout says where."]
  })

/**
 * `runcmd emulate ssm`.
 *
 * @internal
 */
export const emulateSsm = emulator({
  service: "ssm",
  summary: "serve an AWS SSM Run Command emulator for tests (AWS JSON 1.1 on loopback)",
  about: [
    "Starts the SSM emulator of @runcmd/transport-ssm/testing: managed instances that really run their commands as",
    "local processes, and prints {\"endpoint\", \"region\", \"instanceIds\"} as one JSON line."
  ],
  fields: {
    instances: value("flags", "instances", "N", "Linux managed instances (default 1)"),
    windows: value("flags", "windows", "N", "Windows managed instances, run with pwsh (default 0)"),
    region: value("flags", "region", "REGION", "the region it answers for (default us-east-1)"),
    s3Endpoint: value("flags", "s3-endpoint", "URL", "an S3-compatible endpoint for full command output")
  },
  examples: ["emulate ssm --instances 3", "emulate ssm --port 4566 --windows 1"]
})

/**
 * `runcmd emulate azure`.
 *
 * @internal
 */
export const emulateAzure = emulator({
  service: "azure",
  summary: "serve an Azure Resource Manager Run Command emulator for tests (HTTPS on loopback)",
  about: [
    "Starts the ARM emulator of @runcmd/transport-azure/testing (VMs and scale sets whose run commands really run as",
    "local processes) with a certificate made at start, and prints the endpoint, subscription, resource group,",
    "VM and instance names and the CA certificate's path as one JSON line."
  ],
  fields: {
    vms: value("flags", "vms", "N", "virtual machines (default 1)"),
    scaleSet: values("flags", "scale-set", "NAME:N", "a scale set of N instances; repeatable")
  },
  examples: ["emulate azure --vms 3", "emulate azure --vms 0 --scale-set web:5"]
})

/**
 * `runcmd emulate winrm`.
 *
 * @internal
 */
export const emulateWinrm = emulator({
  service: "winrm",
  summary: "serve a WinRM (WS-Management) emulator for tests, running PowerShell with pwsh",
  about: [
    "Starts the WinRM emulator of @runcmd/transport-winrm/testing: HTTP with NTLM and message encryption, or HTTPS",
    "with Basic and a certificate made at start; prints the endpoint, auth and CA certificate as one JSON line."
  ],
  fields: {
    https: toggle("flags", "https", "HTTPS with Basic authentication (default: HTTP with NTLM)"),
    user: value("flags", "user", "USER", "the user to accept (with --password-env; default: generated)"),
    passwordEnv: value("flags", "password-env", "VAR", "the environment variable holding the user's password")
  },
  examples: ["emulate winrm", "emulate winrm --https --user admin --password-env WINRM_PASSWORD"]
})

const azureTargetFlags = {
  inventory: value("targets", "inventory", "FILE", "the inventory with the azure-vm / azure-vmss-vm targets", {
    alias: "i"
  }),
  select: values("targets", "select", "EXPR", "only the targets matching a selector; repeat to OR", { alias: "s" }),
  output: value("output", "output", "FORMAT", "human (default) or json", { alias: "o", choices: checkOutputs })
}

const azureGroups = [{ id: "targets", title: "Targets" }, { id: "output", title: "Output" }]

const azureNotes = [
  "ARM access as for `runcmd run`: DefaultAzureCredential, or RUNCMD_AZURE_ACCESS_TOKEN; RUNCMD_AZURE_ENDPOINT and",
  "RUNCMD_AZURE_CA_FILE for another endpoint (an emulator)."
]

/**
 * `runcmd azure run-commands list`.
 *
 * @internal
 */
export const azureRunCommandsList = command({
  path: ["azure", "run-commands", "list"],
  summary: "list the managed run commands on Azure targets, with their state and exit code",
  about: ["Lists the managed run commands of each selected azure-vm / azure-vmss-vm target of an inventory."],
  usage: ["azure run-commands list -i FILE [flags]"],
  groups: azureGroups,
  fields: azureTargetFlags,
  strayHint: "It takes no arguments: runcmd azure run-commands list -i FILE.",
  examples: ["azure run-commands list -i fleet.yaml -s role=web"],
  notes: azureNotes
})

/**
 * `runcmd azure run-commands show NAME`.
 *
 * @internal
 */
export const azureRunCommandsShow = command({
  path: ["azure", "run-commands", "show"],
  summary: "show one managed run command (its instance view) on Azure targets",
  about: ["Shows a managed run command's instance view (state, exit code, times, the last 4 KB of output)."],
  usage: ["azure run-commands show NAME -i FILE [flags]"],
  groups: azureGroups,
  fields: { name: positional("NAME", "the run command's name"), ...azureTargetFlags },
  strayHint: "It takes one name: runcmd azure run-commands show NAME -i FILE.",
  examples: ["azure run-commands show runcmd-1a2b -i fleet.yaml -s id=vm-1"],
  notes: azureNotes
})

/**
 * `runcmd azure run-commands delete NAME`.
 *
 * @internal
 */
export const azureRunCommandsDelete = command({
  path: ["azure", "run-commands", "delete"],
  summary: "delete a managed run command on Azure targets (ending its script if it runs)",
  about: ["Deletes a managed run command from each selected target and waits until it is gone."],
  usage: ["azure run-commands delete NAME -i FILE [flags]"],
  groups: azureGroups,
  fields: { name: positional("NAME", "the run command's name"), ...azureTargetFlags },
  strayHint: "It takes one name: runcmd azure run-commands delete NAME -i FILE.",
  examples: ["azure run-commands delete runcmd-1a2b -i fleet.yaml -s id=vm-1"],
  notes: azureNotes
})

/**
 * The commands that run something, for the pre-parser.
 *
 * @internal
 */
export const commandSpecs: ReadonlyArray<CommandDoc> = [
  run,
  inventoryCheck,
  report,
  emulateSsm,
  emulateAzure,
  emulateWinrm,
  azureRunCommandsList,
  azureRunCommandsShow,
  azureRunCommandsDelete
]

/**
 * A command that only groups others (`runcmd inventory`).
 *
 * @internal
 */
export interface GroupDoc {
  readonly path: ReadonlyArray<string>
  readonly summary: string
  readonly commands: ReadonlyArray<CommandDoc>
}

/** @internal */
export const inventory: GroupDoc = {
  path: ["inventory"],
  summary: "inventory tools",
  commands: [inventoryCheck]
}

/** @internal */
export const emulate: GroupDoc = {
  path: ["emulate"],
  summary: "emulators for tests",
  commands: [emulateSsm, emulateAzure, emulateWinrm]
}

/** @internal */
export const azureRunCommands: GroupDoc = {
  path: ["azure", "run-commands"],
  summary: "managed run commands on Azure VMs and scale-set instances",
  commands: [azureRunCommandsList, azureRunCommandsShow, azureRunCommandsDelete]
}

/** @internal */
export const azure: GroupDoc = {
  path: ["azure"],
  summary: "Azure tools",
  commands: [azureRunCommandsList, azureRunCommandsShow, azureRunCommandsDelete]
}

/**
 * The commands that group others, longest path first.
 *
 * @internal
 */
export const groupDocs: ReadonlyArray<GroupDoc> = [azureRunCommands, inventory, emulate, azure]

/**
 * The flags every command accepts (`@effect/cli`'s built-in options, as `argv.ts` lets them through), with help.
 *
 * @internal
 */
export const globalFlags: ReadonlyArray<Flag> = [
  { ...toggle("global", "help", "show help"), alias: "h" },
  toggle("global", "version", "print the version"),
  value("global", "log-level", "LEVEL", "minimum level of log messages, e.g. debug (shows retries)"),
  value("global", "completions", "SHELL", "print a completion script for sh, bash, fish or zsh"),
  toggle("global", "wizard", "build a command line interactively, then run it")
]

/**
 * What `runcmd --help` shows.
 *
 * @internal
 */
export const root = {
  about: [
    "Run a script, shell text or command on many targets at once (local processes, SSH hosts...)",
    "under a policy, and get one outcome per target."
  ],
  usage: ["COMMAND [flags]"],
  /** The commands in the order shown (`inventory check` under its full name). */
  commands: commandSpecs,
  groups: [inventory, emulate, azure],
  examples: [
    "run -i inventory.yaml --script deploy.sh",
    "run -t web-1 -t web-2 -- uptime",
    "inventory check inventory.yaml",
    "report report.json --failed"
  ]
} as const
