// team: solo as a shared deployment. Vendor keys from config or env only, identity from virtual
// keys, storage on disk (point storage at redis to run several instances). Only what differs
// from solo is here; a plugin listed again replaces solo's where it stands.
import { ORIGINS_WITH_NULL } from '../core/config.ts'
import { definePreset } from '../core/presets.ts'
import { audit } from '../plugins/audit/index.ts'
import { breaker } from '../plugins/breaker/index.ts'
import { guard } from '../plugins/guard/index.ts'
import { virtualKeys } from '../plugins/keys/index.ts'

export default definePreset(() => ({
  $meta: { name: 'team' },
  extends: ['solo'],
  trustIdentityHeaders: false,
  // the extension's redirected page calls come with Origin: null (see ORIGINS_WITH_NULL)
  cors: { origins: ORIGINS_WITH_NULL },
  // the operator's keys only: a client's own key is never passed on under a shared deployment
  forwardClientKeys: false,
  // identities, models and costs of every team: the admin token or a key (its own team only)
  events: { access: 'authenticated' },
  plugins: [
    // conservative per-run limits for a shared deployment (approval stays off until rules are given)
    breaker({ limits: { calls: 200, usd: 20, wallSeconds: 2 * 3600 } }),
    virtualKeys({ required: true }),
    // private keys and cloud credentials refused outright (403 secret_in_prompt); other secrets redacted
    guard({ block: ['private-key', 'cloud'] }),
    // a shared deployment never answers unaudited: a full disk or redis down gets 503s (the default, stated)
    audit({ onFailure: 'refuse' }),
  ],
}))
