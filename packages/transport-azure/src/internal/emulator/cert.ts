/**
 * The emulator's TLS certificate: made by the system `openssl` when the emulator starts (the bearer-token policy of
 * the Azure SDK refuses plain http), valid for 127.0.0.1 and localhost, its own CA (OpenSSL 3 adds `CA:TRUE`).
 * Clients trust it through their own options (`tlsOptions: { ca }`); nothing process-global is touched.
 *
 * @internal
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

/** @internal */
export interface Certificate {
  readonly cert: string
  readonly key: string
  /** A directory holding `cert.pem` (the CA to trust) and `key.pem`; removed by `dispose`. */
  readonly dir: string
  readonly certPath: string
  readonly dispose: () => Promise<void>
}

/** @internal */
export const generate = async (): Promise<Certificate> => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "runcmd-arm-emulator-"))
  const certPath = path.join(dir, "cert.pem")
  const keyPath = path.join(dir, "key.pem")
  try {
    await new Promise<void>((resolve, reject) =>
      execFile(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-keyout",
          keyPath,
          "-out",
          certPath,
          "-days",
          "2",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1,DNS:localhost"
        ],
        { timeout: 60_000 },
        (error, _stdout, stderr) =>
          error === null ? resolve() : reject(new Error(`openssl could not make the emulator's certificate: ${stderr}`))
      )
    )
    const [cert, key] = await Promise.all([fs.readFile(certPath, "utf8"), fs.readFile(keyPath, "utf8")])
    await fs.chmod(keyPath, 0o600)
    return { cert, key, dir, certPath, dispose: () => fs.rm(dir, { recursive: true, force: true }) }
  } catch (error) {
    await fs.rm(dir, { recursive: true, force: true })
    throw error
  }
}
