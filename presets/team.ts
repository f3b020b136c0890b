// team: shared deployment. Vendor keys from config or env only, identity from virtual keys,
// storage on disk (point storage at redis to run several instances).
import type { MeshConfig } from '../core/types.ts'
import { audit } from '../plugins/audit/index.ts'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { normalise } from '../plugins/normalise/index.ts'
import { promptCache } from '../plugins/prompt-cache/index.ts'
import { semanticCache } from '../plugins/semantic-cache/index.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { google } from '../plugins/vendors/google.ts'
import { openai } from '../plugins/vendors/openai.ts'

export default (): MeshConfig => ({
  storage: { driver: 'fs' },
  trustIdentityHeaders: false,
  // the operator's keys only: a client's own key is never passed on under a shared deployment
  forwardClientKeys: false,
  // identities, models and costs of every team: the admin token or a key (its own team only)
  events: { access: 'authenticated' },
  plugins: [
    virtualKeys({ required: true }),
    quota(),
    normalise(),
    // exact before semantic: the first hit ends the lookup
    exactCache(),
    semanticCache(),
    promptCache(),
    // a shared deployment never answers unaudited: a full disk or redis down gets 503s (the default, stated)
    audit({ onFailure: 'refuse' }),
    anthropic(),
    openai(),
    google(),
  ],
})
