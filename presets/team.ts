// team: shared deployment. Vendor keys from config or env only, identity from virtual keys,
// storage on disk (point storage at redis to run several instances).
import type { MeshConfig } from '../core/types.ts'
import { audit } from '../plugins/audit/index.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { google } from '../plugins/vendors/google.ts'
import { openai } from '../plugins/vendors/openai.ts'

export default (): MeshConfig => ({
  storage: { driver: 'fs' },
  trustIdentityHeaders: false,
  plugins: [
    virtualKeys({ required: true }),
    quota(),
    audit(),
    anthropic(),
    openai(),
    google(),
  ],
})
