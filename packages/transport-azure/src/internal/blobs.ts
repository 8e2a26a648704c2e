/**
 * Output and files through a blob container given by a container SAS URL: append blobs for `outputBlobUri` /
 * `errorBlobUri` (created before the PUT, read from an offset while the script runs), block blobs for scripts too
 * large to send inline (`source.scriptUri`). The SAS is checked before anything is sent: it needs read, add,
 * create and write (`racw`) and must not have expired.
 *
 * @internal
 */
import { AnonymousCredential, ContainerClient } from "@azure/storage-blob"

/** @internal */
export interface Container {
  readonly client: ContainerClient
  /** What is wrong with the SAS now (missing permissions, expired), or undefined. */
  readonly check: () => string | undefined
}

/** @internal */
export const sasProblem = (url: string): string | undefined => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return "the storage container URL is not a URL"
  }
  const q = parsed.searchParams
  if (!q.has("sig")) return "the storage container URL has no SAS (sig=...): give a container SAS URL with racw"
  const sp = q.get("sp") ?? ""
  const missing = ["r", "a", "c", "w"].filter((p) => !sp.includes(p))
  if (missing.length > 0) {
    return `the storage SAS lacks the permission${missing.length > 1 ? "s" : ""} ${missing.join("")} (sp=${sp}); ` +
      "run command output needs read, add, create and write (sp=racw)"
  }
  const se = q.get("se")
  if (se !== null && Date.parse(se) <= Date.now()) return `the storage SAS expired at ${se}; make a new one`
  return undefined
}

/** @internal */
export const container = (url: string): Container => ({
  client: new ContainerClient(url, new AnonymousCredential(), { retryOptions: { maxTries: 3, retryDelayInMs: 50 } }),
  check: () => sasProblem(url)
})

/** Creates (or empties) an append blob and returns its SAS URL. */
export const createAppendBlob = async (c: Container, name: string, signal?: AbortSignal): Promise<string> => {
  const blob = c.client.getAppendBlobClient(name)
  await blob.create(signal === undefined ? {} : { abortSignal: signal })
  return blob.url
}

/** Uploads bytes as a block blob and returns its SAS URL (read through the container SAS). */
export const upload = async (c: Container, name: string, bytes: Uint8Array, signal?: AbortSignal): Promise<string> => {
  const blob = c.client.getBlockBlobClient(name)
  await blob.uploadData(bytes, signal === undefined ? {} : { abortSignal: signal })
  return blob.url
}

/** @internal */
export const remove = async (c: Container, name: string): Promise<void> => {
  await c.client.getBlobClient(name).deleteIfExists()
}

/** Reads an append blob from `offset`: the bytes added since (empty when none). */
export const readFrom = async (c: Container, name: string, offset: number, signal?: AbortSignal): Promise<Buffer> => {
  const blob = c.client.getBlobClient(name)
  try {
    const response = await blob.download(offset, undefined, signal === undefined ? {} : { abortSignal: signal })
    const body = response.readableStreamBody
    if (body === undefined) return Buffer.alloc(0)
    const parts: Array<Buffer> = []
    for await (const part of body) parts.push(part as Buffer)
    return Buffer.concat(parts)
  } catch (e) {
    // 416: nothing past the offset yet
    if ((e as { statusCode?: number }).statusCode === 416) return Buffer.alloc(0)
    throw e
  }
}
