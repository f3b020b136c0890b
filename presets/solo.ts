// solo: one developer with real vendor keys (ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY,
// or the client's own key passed through); cache and logs on disk under the data dir.
import { definePreset } from '../core/presets.ts'
import { approval } from '../plugins/approval/index.ts'
import { audit } from '../plugins/audit/index.ts'
import { breaker } from '../plugins/breaker/index.ts'
import { compression } from '../plugins/compression/index.ts'
import { dashboard } from '../plugins/dashboard/index.ts'
import { dryRun } from '../plugins/dry-run/index.ts'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { guard } from '../plugins/guard/index.ts'
import { mask } from '../plugins/mask/index.ts'
import { metrics } from '../plugins/metrics/index.ts'
import { normalise } from '../plugins/normalise/index.ts'
import { observeCommand } from '../plugins/observe/index.ts'
import { otel } from '../plugins/otel/index.ts'
import { promptCache } from '../plugins/prompt-cache/index.ts'
import { semanticCache } from '../plugins/semantic-cache/index.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { anthropic } from '../plugins/vendors/anthropic.ts'
import { google } from '../plugins/vendors/google.ts'
import { openai } from '../plugins/vendors/openai.ts'

export default definePreset(() => ({
  $meta: { name: 'solo' },
  storage: { driver: 'fs' },
  trustIdentityHeaders: true,
  plugins: [
    // first: every call of an agent run is counted (and its headers set) before the other guards
    // act; generous limits for one developer, the same tool call 5 times in a transcript trips it
    breaker({ limits: { calls: 1000, usd: 100, wallSeconds: 8 * 3600 } }),
    virtualKeys(),
    // accounting and `agentmesh usage` with no limits; add limits in your config
    quota(),
    // secrets in prompts become [REDACTED:kind] before anything reads or keeps the prompt
    guard(),
    // personal data (emails, cards, IBANs) becomes <EMAIL_1>-style placeholders upstream and is put
    // back in the answer; team inherits it. More kinds or per-team rules: mask({ kinds, teams })
    mask(),
    normalise(),
    // exact before semantic: the first hit ends the lookup
    exactCache(),
    semanticCache(),
    // smaller prompts when a budget has under 30% left or a prompt would overflow the model's window (before prompt-cache marks the final body)
    compression(),
    promptCache(),
    // no rules: off until rules are given (or --approve-over USD)
    approval(),
    dryRun(),
    audit(),
    // Prometheus at /metrics (under team: the admin token), read after usage and cost are settled
    metrics(),
    // the dashboard at /agentmesh/ (loopback clients only while the events are open)
    dashboard(),
    // `agentmesh observe`: the event stream in a terminal
    observeCommand(),
    // OpenTelemetry over OTLP/HTTP: off until OTEL_EXPORTER_OTLP_ENDPOINT (or otel({ endpoint })) is set
    otel(),
    anthropic(),
    openai(),
    google(),
  ],
}))
