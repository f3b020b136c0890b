// demo: no keys, no setup. The demo vendor answers every model; memory storage; identity from
// X-AgentMesh-* headers. The CLI's default when a config names no preset.
import { ORIGINS_WITH_NULL } from '../core/config.ts'
import { definePreset } from '../core/presets.ts'
import { approval } from '../plugins/approval/index.ts'
import { audit } from '../plugins/audit/index.ts'
import { breaker } from '../plugins/breaker/index.ts'
import { dashboard } from '../plugins/dashboard/index.ts'
import { dryRun } from '../plugins/dry-run/index.ts'
import { exactCache } from '../plugins/exact-cache/index.ts'
import { guard } from '../plugins/guard/index.ts'
import { mask } from '../plugins/mask/index.ts'
import { metrics } from '../plugins/metrics/index.ts'
import { normalise } from '../plugins/normalise/index.ts'
import { observeCommand } from '../plugins/observe/index.ts'
import { otel } from '../plugins/otel/index.ts'
import { semanticCache } from '../plugins/semantic-cache/index.ts'
import { virtualKeys } from '../plugins/keys/index.ts'
import { quota } from '../plugins/quota/index.ts'
import { demo } from '../plugins/vendors/demo.ts'

export default definePreset(() => ({
  $meta: { name: 'demo' },
  storage: { driver: 'memory' },
  trustIdentityHeaders: true,
  // the extension's redirected page calls come with Origin: null (see ORIGINS_WITH_NULL)
  cors: { origins: ORIGINS_WITH_NULL },
  plugins: [
    // the agent guards, visible: a run stopped at the 5th identical tool call, a preview with
    // X-AgentMesh-Dry-Run: true, and a request naming an "expensive" model held for `agentmesh approve ID`
    breaker(),
    virtualKeys(),
    // a small daily budget per team, so the quota headers and the 429 are visible in the demo
    quota({ limits: { defaultTeam: { tokensPerDay: 200_000 } } }),
    // secrets in prompts become [REDACTED:kind] before anything reads or keeps the prompt
    guard(),
    // personal-data masking is off in the demo: mask({ kinds: ['email', 'card', 'iban'] }) in a config turns it on
    mask({ kinds: [] }),
    normalise(),
    // exact before semantic: the first hit ends the lookup
    exactCache(),
    semanticCache(),
    approval({ mode: 'hold', holdSeconds: 60, rules: [{ name: 'demo-expensive-model', models: ['*expensive*'] }] }),
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
    demo(),
  ],
}))
