/**
 * The SSM test harness: AWS environment hygiene (static fake credentials only, no metadata service, no profile
 * files), a real S3-compatible server (s3rver) on loopback, the SSM emulator, and the transport pointed at both.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import S3rver from "s3rver"
import * as SsmTransport from "../../src/SsmTransport.js"
import * as Emulator from "../../src/testing.js"

// nothing may reach the metadata address, AWS, or a profile file
process.env.AWS_EC2_METADATA_DISABLED = "true"
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true"
process.env.AWS_CONFIG_FILE = "/nonexistent/runcmd-test-aws-config"
process.env.AWS_SHARED_CREDENTIALS_FILE = "/nonexistent/runcmd-test-aws-credentials"
for (
  const name of [
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ENDPOINT_URL_S3",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_DEFAULTS_MODE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN"
  ]
) delete process.env[name]

export const credentials = { accessKeyId: "AKIDTEST", secretAccessKey: "test-secret" }
export const BUCKET = "runcmd-output"

export interface S3 {
  readonly endpoint: string
}

/** s3rver on loopback with the output bucket, stopped and removed with the scope. */
export const s3 = (): Effect.Effect<S3, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const directory = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-s3rver-"))
      const server = new S3rver({
        address: "127.0.0.1",
        port: 0,
        silent: true,
        directory,
        configureBuckets: [{ name: BUCKET }]
      })
      const { port } = await server.run()
      return { server, directory, endpoint: `http://127.0.0.1:${port}` }
    }),
    ({ directory, server }) =>
      Effect.promise(async () => {
        await server.close()
        fs.rmSync(directory, { recursive: true, force: true })
      })
  )

/** Transport options for an emulator (and an S3 server when given). */
export const options = (
  emulator: Emulator.Emulator,
  s3?: S3,
  over: SsmTransport.Options = {}
): SsmTransport.Options => ({
  endpoint: emulator.endpoint,
  credentials,
  pollInterval: { min: "50 millis", max: "500 millis" },
  batchWindow: "30 millis",
  rateLimit: { perSecond: 1000, burst: 1000 },
  backoff: { base: "20 millis", max: "300 millis" },
  ...(s3 === undefined ? {} : {
    s3Endpoint: s3.endpoint,
    s3Credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    outputBucket: BUCKET
  }),
  ...over
})
