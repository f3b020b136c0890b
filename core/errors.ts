// Errors the core turns into a status in the client's protocol. Plugins and storage throw them;
// the pipeline maps them (a PluginError whose cause is one of these keeps its status and type).

/** Storage the request depends on (redis, the disk, the audit log) cannot be used right now: 503. */
export class StorageUnavailableError extends Error {
  readonly status = 503
  readonly type = 'storage_unavailable'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StorageUnavailableError'
  }
}

export function isStorageUnavailable(err: unknown): err is StorageUnavailableError {
  return err instanceof StorageUnavailableError || (err as { type?: unknown } | null)?.type === 'storage_unavailable'
}
