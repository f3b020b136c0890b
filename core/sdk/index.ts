// agentmesh/sdk: the proxy's pipeline inside a Node program. The framework integrations have
// entries of their own (agentmesh/sdk/ai, agentmesh/sdk/langchain) so their optional peer
// dependencies load only when used.
export { createMesh, type CreateMeshOptions, type MeshFetch, type SdkMesh } from './mesh.ts'
export { withIdentity, withRun, withScope, currentScope, type CallScope, type SdkIdentity } from './context.ts'
export { wrapOpenAI, wrapAnthropic, governanceOf, type WrapOptions, type Governance } from './wrappers.ts'
export { defineConfig, definePreset } from '../config.ts'
export { definePlugin } from '../plugin.ts'
export type { MeshConfig, MeshEvent, Plugin } from '../types.ts'
