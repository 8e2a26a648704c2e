/**
 * Azurite's blob service started in this process: 127.0.0.1, a free port, in memory, no telemetry (that lives in
 * Azurite's `main.js`, which is not loaded), any `x-ms-version` accepted.
 *
 * @internal
 */
import {
  BlobServiceClient,
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential
} from "@azure/storage-blob"
import { createRequire } from "node:module"
import type { AddressInfo } from "node:net"
import * as path from "node:path"

/** The well-known development account of Azurite. */
export const ACCOUNT = "devstoreaccount1"
/** The well-known development key of Azurite (public, documented). */
export const KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

/** @internal */
export interface Azurite {
  /** `http://127.0.0.1:PORT/devstoreaccount1` */
  readonly blobEndpoint: string
  readonly accountName: string
  readonly accountKey: string
  readonly service: BlobServiceClient
  /** Creates the container (if needed) and returns its SAS URL with the given permissions (default `racwl`). */
  readonly containerSasUrl: (container: string, permissions?: string, expiresInMs?: number) => Promise<string>
  readonly close: () => Promise<void>
}

/** @internal */
export const start = async (): Promise<Azurite> => {
  // azurite is an optional peer: resolved from the user's project (the working directory), where a test suite
  // installs it; not from this file's location (no `import.meta.url`, which the CommonJS build would shim)
  const require = createRequire(path.join(process.cwd(), "package.json"))
  let BlobServer: any
  let BlobConfiguration: any
  try {
    BlobServer = require("azurite/dist/src/blob/BlobServer").default
    BlobConfiguration = require("azurite/dist/src/blob/BlobConfiguration").default
  } catch (e) {
    throw new Error(`Azurite is not installed (npm install --save-dev azurite@3.35.0): ${String(e)}`)
  }
  const configuration = new BlobConfiguration(
    "127.0.0.1",
    0,
    undefined,
    undefined,
    undefined,
    undefined,
    false,
    undefined,
    false,
    undefined,
    false,
    true, // skipApiVersionCheck: storage-blob sends a newer x-ms-version than Azurite knows
    "",
    "",
    "",
    undefined,
    false,
    true // in memory
  )
  const server = new BlobServer(configuration)
  await server.start()
  const port = (server.httpServer.address() as AddressInfo).port
  const blobEndpoint = `http://127.0.0.1:${port}/${ACCOUNT}`
  const credential = new StorageSharedKeyCredential(ACCOUNT, KEY)
  const service = new BlobServiceClient(blobEndpoint, credential, { retryOptions: { maxTries: 2, retryDelayInMs: 10 } })
  return {
    blobEndpoint,
    accountName: ACCOUNT,
    accountKey: KEY,
    service,
    containerSasUrl: async (container, permissions = "racwl", expiresInMs = 3_600_000) => {
      const client = service.getContainerClient(container)
      await client.createIfNotExists()
      const sas = generateBlobSASQueryParameters(
        {
          containerName: container,
          permissions: ContainerSASPermissions.parse(permissions),
          startsOn: new Date(Date.now() - 60_000),
          expiresOn: new Date(Date.now() + expiresInMs)
        },
        credential
      ).toString()
      return `${client.url}?${sas}`
    },
    close: async () => {
      await server.close()
      await server.clean()
    }
  }
}
