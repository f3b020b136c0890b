// Public API: `import { defineConfig, definePlugin, createAgentMesh } from 'agentmesh'`.
export { createAgentMesh, VERSION, type AgentMesh, type CreateOptions } from './app.ts'
export {
  defineConfig,
  definePreset,
  loadMeshConfig,
  resolveConfig,
  ConfigError,
  DEFAULT_ORIGINS,
  ORIGINS_WITH_NULL,
  PRESET_NAMES,
  type PresetName,
} from './config.ts'
export { definePlugin } from './plugin.ts'
export { protocols, ProtocolError } from './protocols/index.ts'
export type * from './types.ts'
export { StorageUnavailableError, isStorageUnavailable } from './errors.ts'
// a vendor of your own over HTTP, with several keys and cooldowns; the vendors themselves are
// plugins: `agentmesh/plugins/vendors/openai-compatible.ts`, `.../azure.ts`, `.../openai.ts`, ...
export {
  defineHttpVendor,
  deploymentId,
  type CooldownOptions,
  type Deployment,
  type HttpVendorOptions,
  type HttpVendorSpec,
} from './vendor.ts'
