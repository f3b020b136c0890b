// Public API: `import { defineConfig, definePlugin, createAgentMesh } from 'agentmesh'`.
export { createAgentMesh, VERSION, type AgentMesh, type CreateOptions } from './app.ts'
export { defineConfig, definePreset, loadMeshConfig, resolveConfig, ConfigError, PRESET_NAMES, type PresetName } from './config.ts'
export { definePlugin } from './plugin.ts'
export { protocols, ProtocolError } from './protocols/index.ts'
export type * from './types.ts'
export { StorageUnavailableError, isStorageUnavailable } from './errors.ts'
