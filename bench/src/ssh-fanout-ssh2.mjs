// The floor of a Node SSH client for ssh-fanout: 50 connections and one `exec` each from one plain script, no
// runcmd (ssh2 with its defaults: curve25519 KEX, ed25519 host and client keys, aes128-gcm). It does what runcmd
// must do at the least: read and parse the private key once, check each host key against known_hosts (by blob),
// connect, authenticate, exec, wait for the exit status, close.
//   node src/ssh-fanout-ssh2.mjs <config.json> [--probe]
// --probe (diagnostic): first run runcmd's login-shell probe on each connection (one more session per host), as
// runcmd's first execution on a host does.
// config: { addresses: string[], port, user, keyPath, knownHosts, command }
import * as fs from "node:fs"
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
const ssh2 = require("ssh2")

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const key = ssh2.utils.parseKey(fs.readFileSync(config.keyPath, "utf8"))
if (key instanceof Error) throw key
// the known_hosts written by the harness: one line, every address of the server, one key blob
const known = new Set(
  fs.readFileSync(config.knownHosts, "utf8").split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#")).map((l) =>
    l.trim().split(/\s+/)[2]
  )
)

const probe = process.argv.includes("--probe")
const PROBE = "case x in x) printf '%s\\n' runcmd-posix ;; esac"

const exec = (client, command) =>
  new Promise((resolve, reject) => {
    client.exec(command, (err, channel) => {
      if (err) return reject(err)
      let code
      channel.on("exit", (c) => (code = c))
      channel.on("data", () => {})
      channel.stderr.on("data", () => {})
      channel.on("close", () => (code === 0 ? resolve() : reject(new Error(`exit ${code}`))))
      channel.end()
    })
  })

const one = (host) =>
  new Promise((resolve, reject) => {
    const client = new ssh2.Client()
    client.on("error", reject)
    client.on("ready", () => {
      ;(probe ? exec(client, PROBE) : Promise.resolve()).then(() => exec(client, config.command)).then(
        () => {
          client.end()
          resolve()
        },
        (e) => {
          client.end()
          reject(new Error(`${host}: ${e.message}`))
        }
      )
    })
    client.connect({
      host,
      port: config.port,
      username: config.user,
      // the parsed key, given as runcmd gives it (privateKey would parse the text again per connection)
      authHandler: [{ type: "publickey", username: config.user, key: Array.isArray(key) ? key[0] : key }],
      hostVerifier: (blob) => known.has(blob.toString("base64")),
      readyTimeout: 60_000
    })
  })

const results = await Promise.allSettled(config.addresses.map(one))
const failed = results.filter((r) => r.status === "rejected")
for (const f of failed.slice(0, 3)) console.error(String(f.reason?.message ?? f.reason))
console.log(`${results.length - failed.length}/${results.length} ok`)
process.exit(failed.length === 0 ? 0 : 1)
