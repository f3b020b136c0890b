// demo: no keys, no setup. The demo vendor answers every model; memory storage; identity from
// X-AgentMesh-* headers.
import type { MeshConfig } from '../core/types.ts'
import { audit } from '../plugins/audit/index.ts'
import { demo } from '../plugins/vendors/demo.ts'

export default (): MeshConfig => ({
  storage: { driver: 'memory' },
  trustIdentityHeaders: true,
  cors: { origins: '*' },
  plugins: [audit(), demo()],
})
