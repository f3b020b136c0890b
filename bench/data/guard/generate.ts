// The guard corpus: labelled prompts with secrets and personal data in realistic surroundings,
// and prompts without any (look-alikes included), built deterministically from one seed.
//   node bin/run-ts.mjs bench/data/guard/generate.ts [--write FILE.jsonl]
// prints the counts and the corpus's sha256 (or writes it as JSON lines). bench/guard.ts builds
// the same corpus in memory. README.md in this folder says where each part comes from.
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import {
  Rng,
  fakeCard,
  fakeEmail,
  fakeIban,
  fakeIp,
  fakeNationalId,
  fakePassword,
  fakePhone,
  fakeSecret,
  ALNUM,
  B64,
  HEX,
} from './fakes.ts'
import { handWritten } from './hand.ts'

export const SEED = 20261205

export interface Label {
  kind: string
  start: number
  end: number
}
export interface CorpusItem {
  id: string
  source: 'generated' | 'hand'
  /** the surroundings: env, code, log, json, email, ... */
  context: string
  text: string
  labels: Label[]
}

/** a piece of text; a labelled piece is a secret or a personal datum of that kind */
export type Seg = string | { kind: string; value: string }

export function assemble(segs: Seg[]): { text: string; labels: Label[] } {
  let text = ''
  const labels: Label[] = []
  for (const s of segs) {
    if (typeof s === 'string') text += s
    else {
      labels.push({ kind: s.kind, start: text.length, end: text.length + s.value.length })
      text += s.value
    }
  }
  return { text, labels }
}

const L = (kind: string, value: string): Seg => ({ kind, value })

// ---------------------------------------------------------------- one item with its own wording

/** An item as people write it: the variable it sits in, the header it is sent in, the sentence. */
const ITEM: Record<string, (r: Rng) => Seg[]> = {
  'aws-access-key': (r) => {
    const v = L('aws-access-key', fakeSecret['aws-access-key']!(r))
    return r.pick([
      [`AWS_ACCESS_KEY_ID=`, v],
      [`aws_access_key_id = `, v],
      [`"AccessKeyId": "`, v, `"`],
      [`the key id is `, v, ` (us-east-1)`],
    ])
  },
  'aws-secret-key': (r) => {
    const v = L('aws-secret-key', fakeSecret['aws-secret-key']!(r))
    const id = L('aws-access-key', fakeSecret['aws-access-key']!(r))
    return r.pick([
      [`AWS_SECRET_ACCESS_KEY=`, v],
      [`aws_secret_access_key = `, v],
      [`"SecretAccessKey": "`, v, `"`],
      // a credentials CSV as the console downloads it: the secret has no name, only its key id
      [`User name,Access key ID,Secret access key\ndeploy-bot,`, id, `,`, v],
    ])
  },
  'google-api-key': (r) => {
    const v = L('google-api-key', fakeSecret['google-api-key']!(r))
    return r.pick([
      [`GEMINI_API_KEY=`, v],
      [`https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key=`, v],
      [`const firebaseConfig = { apiKey: "`, v, `", projectId: "shop-prod" }`],
      [`genai.configure(api_key="`, v, `")`],
    ])
  },
  'azure-storage-key': (r) => {
    const v = L('azure-storage-key', fakeSecret['azure-storage-key']!(r))
    return [
      `DefaultEndpointsProtocol=https;AccountName=${r.pick(['acmeprodstore', 'logsarchive01', 'mediauploads'])};AccountKey=`,
      v,
      `;EndpointSuffix=core.windows.net`,
    ]
  },
  'github-token': (r) => {
    const v = L('github-token', fakeSecret['github-token']!(r))
    return r.pick([
      [`GITHUB_TOKEN=`, v],
      [`git remote set-url origin https://x-access-token:`, v, `@github.com/acme/api.git`],
      [`Authorization: token `, v],
      [`I accidentally pasted `, v, ` into the issue, how do I revoke it?`],
    ])
  },
  'gitlab-token': (r) => {
    const v = L('gitlab-token', fakeSecret['gitlab-token']!(r))
    return r.pick([
      [`CI_JOB_TOKEN: `, v],
      [`curl --header "PRIVATE-TOKEN: `, v, `" https://gitlab.example.org/api/v4/projects`],
      [`glab auth login --token `, v],
    ])
  },
  'slack-token': (r) => {
    const v = L('slack-token', fakeSecret['slack-token']!(r))
    return r.pick([
      [`SLACK_BOT_TOKEN=`, v],
      [`client = WebClient(token="`, v, `")`],
      [`"token": "`, v, `"`],
    ])
  },
  'slack-webhook': (r) => {
    const v = L('slack-webhook', fakeSecret['slack-webhook']!(r))
    return r.pick([
      [`SLACK_WEBHOOK_URL=`, v],
      [`requests.post("`, v, `", json={"text": "deploy done"})`],
      [`alerting:\n  webhook: `, v],
    ])
  },
  'stripe-key': (r) => {
    const v = L('stripe-key', fakeSecret['stripe-key']!(r))
    return r.pick([
      [`STRIPE_SECRET_KEY=`, v],
      [`stripe.api_key = "`, v, `"`],
      [`const stripe = require('stripe')('`, v, `');`],
    ])
  },
  'stripe-webhook-secret': (r) => {
    const v = L('stripe-webhook-secret', fakeSecret['stripe-webhook-secret']!(r))
    return r.pick([
      [`STRIPE_WEBHOOK_SECRET=`, v],
      [`endpoint_secret = '`, v, `'`],
      [`stripe.webhooks.constructEvent(body, sig, "`, v, `")`],
    ])
  },
  'twilio-key': (r) => {
    if (r.int(2)) {
      const v = L('twilio-key', fakeSecret['twilio-key']!(r))
      return r.pick([
        [`TWILIO_API_KEY=`, v],
        [`client = Client("`, v, `", api_secret, account_sid)`],
      ])
    }
    return [`TWILIO_ACCOUNT_SID=AC${r.chars(HEX, 32)}\nTWILIO_AUTH_TOKEN=`, L('twilio-key', r.chars(HEX, 32))]
  },
  'sendgrid-key': (r) => {
    const v = L('sendgrid-key', fakeSecret['sendgrid-key']!(r))
    return r.pick([
      [`SENDGRID_API_KEY=`, v],
      [`sg = SendGridAPIClient('`, v, `')`],
      [`smtp password: `, v],
    ])
  },
  'openai-key': (r) => {
    const v = L('openai-key', fakeSecret['openai-key']!(r))
    return r.pick([
      [`OPENAI_API_KEY=`, v],
      [`client = OpenAI(api_key="`, v, `")`],
      [`curl https://api.openai.com/v1/models -H "Authorization: Bearer `, v, `"`],
      [`why does `, v, ` give me 401?`],
    ])
  },
  'anthropic-key': (r) => {
    const v = L('anthropic-key', fakeSecret['anthropic-key']!(r))
    return r.pick([
      [`ANTHROPIC_API_KEY=`, v],
      [`-H "x-api-key: `, v, `"`],
      [`anthropic.Anthropic(api_key="`, v, `")`],
    ])
  },
  'npm-token': (r) => {
    const v = L('npm-token', fakeSecret['npm-token']!(r))
    return r.pick([
      [`//registry.npmjs.org/:_authToken=`, v],
      [`NPM_TOKEN=`, v],
      [`npm token created: `, v],
    ])
  },
  'private-key': (r) => {
    const key = fakeSecret['private-key']!(r)
    if (r.int(3) === 0) {
      // a service-account file pasted whole: the key is a JSON string with \n escapes
      const escaped = key.replace(/\n/g, '\\n') + '\\n'
      return [
        `{\n  "type": "service_account",\n  "project_id": "acme-prod-4411",\n  "private_key_id": "${r.chars(HEX, 40)}",\n  "private_key": "`,
        L('private-key', escaped.slice(0, -2)),
        `\\n",\n  "client_email": "`,
        L('email', 'ci-deployer@acme-prod-4411.iam.gserviceaccount.com'),
        `"\n}`,
      ]
    }
    return [L('private-key', key)]
  },
  jwt: (r) => {
    const v = L('jwt', fakeSecret.jwt!(r))
    return r.pick([
      [`Authorization: Bearer `, v],
      [`document.cookie = "session=`, v, `; path=/"`],
      [`the refresh token `, v, ` expired too early`],
    ])
  },
  'connection-string': (r) => {
    const pw = L('connection-string', fakeSecret['connection-string']!(r))
    const user = r.pick(['app', 'admin', 'svc_orders', 'root', 'analytics'])
    return r.pick([
      [`DATABASE_URL=postgres://${user}:`, pw, `@db.internal:5432/orders`],
      [`mongodb+srv://${user}:`, pw, `@cluster0.a1b2c.mongodb.net/prod?retryWrites=true`],
      [`mysql://${user}:`, pw, `@mysql-primary.internal:3306/shop`],
      [`REDIS_URL=redis://default:`, pw, `@cache-7.internal:6379/0`],
      [`amqp://${user}:`, pw, `@rabbitmq:5672/`],
    ])
  },
  'generic-secret': (r) => {
    const v = L('generic-secret', fakeSecret['generic-secret']!(r))
    const pw = L('generic-secret', fakePassword(r))
    return r.pick([
      [`API_SECRET=`, v],
      [`"client_secret": "`, v, `"`],
      [`webhook_signing_secret: `, v],
      [`x-api-key: `, v],
      [`DB_PASSWORD=`, pw],
      [`password: "`, pw, `"`],
      [`session_secret = '`, v, `'`],
    ])
  },
  email: (r) => {
    const v = L('email', fakeEmail(r))
    return r.pick([
      [`From: `, v],
      [`please reply to `, v, ` before Friday`],
      [`"email": "`, v, `"`],
      [`user=`, v, ` login failed`],
    ])
  },
  phone: (r) => {
    const v = L('phone', fakePhone(r))
    return r.pick([
      [`Tel: `, v],
      [`call me on `, v, ` after 5pm`],
      [`"phone": "`, v, `"`],
    ])
  },
  card: (r) => {
    const v = L('card', fakeCard(r))
    return r.pick([
      [`card number `, v, ` exp 09/27`],
      [`"pan": "`, v, `"`],
      [`charged `, v, ` twice`],
    ])
  },
  iban: (r) => {
    const v = L('iban', fakeIban(r))
    return r.pick([
      [`IBAN: `, v],
      [`please transfer to `, v, ` by the 15th`],
      [`"iban": "`, v, `"`],
    ])
  },
  'national-id': (r) => {
    const { value, label } = fakeNationalId(r)
    const v = L('national-id', value)
    return r.pick([
      [`${label}: `, v],
      [`${label} `, v, ` on file`],
    ])
  },
  ip: (r) => {
    const v = L('ip', fakeIp(r))
    return r.pick([
      [`client_ip=`, v],
      [`login from `, v, ` (new device)`],
      [`"remote_addr": "`, v, `"`],
    ])
  },
}

export const CORPUS_KINDS = Object.keys(ITEM)

// ---------------------------------------------------------------- surroundings

type Context = (r: Rng, item: Seg[]) => Seg[]

const CONTEXTS: Record<string, Context> = {
  env: (r, item) => [
    `Here is my .env, the app still cannot connect:\n\nNODE_ENV=production\nPORT=${3000 + r.int(100)}\nLOG_LEVEL=info\n`,
    ...item,
    `\nFEATURE_FLAGS=checkout_v2,search\n`,
  ],
  code: (r, item) => [
    `Why does this ${r.pick(['script', 'module', 'handler'])} crash on startup?\n\n\`\`\`python\nimport os\nimport logging\n\nlogger = logging.getLogger(__name__)\n\n# TODO move to vault\n`,
    ...item,
    `\n\ndef main():\n    logger.info("starting worker %s", os.getpid())\n    run_forever()\n\`\`\``,
  ],
  log: (r, item) => [
    `${new Date(Date.UTC(2025, r.int(12), 1 + r.int(28), r.int(24), r.int(60))).toISOString()} INFO  worker-${r.int(9)} request started path=/api/v2/orders\n${new Date(Date.UTC(2025, 5, 2)).toISOString()} DEBUG config loaded: `,
    ...item,
    `\n2025-06-02T10:11:12.345Z ERROR request failed status=500 latency_ms=${r.int(900)}\nCan you tell me what went wrong?`,
  ],
  stack: (r, item) => [
    `I get this traceback:\n\nTraceback (most recent call last):\n  File "/srv/app/main.py", line ${10 + r.int(200)}, in <module>\n    client.connect()\n  File "/srv/app/db.py", line 44, in connect\n    raise ConnectionError(f"cannot connect using {settings}")\nConnectionError: cannot connect using `,
    ...item,
    `\n\nWhat is wrong with the settings?`,
  ],
  json: (r, item) => [
    `The API returns this, is the payload right?\n\n{\n  "id": "evt_${r.chars(ALNUM, 14)}",\n  "created": ${1_700_000_000 + r.int(1e7)},\n  "debug": {\n    "note": "`,
    ...item.map((s) =>
      typeof s === 'string'
        ? s.replace(/\n/g, '\\n').replace(/"/g, '\\"')
        : { ...s, value: s.value.replace(/\n/g, '\\n') },
    ),
    `"\n  },\n  "status": "ok"\n}`,
  ],
  email: (r, item) => [
    `Subject: Re: access for the new contractor\n\nHi team,\n\nas discussed, here are the details for the onboarding:\n\n`,
    ...item,
    `\n\nLet me know if anything is missing.\n\nBest,\n${r.pick(['Marta', 'Jonas', 'Kavya', 'Liam'])}\n\nCan you rewrite this email to be more formal?`,
  ],
  yaml: (r, item) => [
    `Our docker-compose.yml:\n\nservices:\n  api:\n    image: acme/api:${1 + r.int(9)}.${r.int(20)}.${r.int(10)}\n    environment:\n      - `,
    ...item,
    `\n    ports:\n      - "8080:8080"\n\nWhy does the container restart in a loop?`,
  ],
  shell: (r, item) => [
    `$ history | tail -3\n  ${500 + r.int(400)}  cd ~/projects/billing\n  ${901 + r.int(50)}  export `,
    ...item,
    `\n  ${960 + r.int(30)}  npm run deploy\n\nWhich of these commands could have broken the deploy?`,
  ],
  chat: (_r, item) => [`Quick question: `, ...item, `\nIs this the right format, or am I missing something?`],
  sql: (r, item) => [
    `-- migration ${r.int(300)}\nINSERT INTO integrations (name, config) VALUES ('billing', '`,
    ...item.map((s) => (typeof s === 'string' ? s.replace(/'/g, "''") : s)),
    `');\n-- why does this fail with a syntax error?`,
  ],
  csv: (r, item) => [
    `Parse this export and count the rows:\n\nid,created_at,notes\n${r.int(900)},2025-03-01,"first import"\n${r.int(900)},2025-03-02,"`,
    ...item.map((s) => (typeof s === 'string' ? s.replace(/"/g, '""') : s)),
    `"\n${r.int(900)},2025-03-04,"done"`,
  ],
}

export const CONTEXT_NAMES = Object.keys(CONTEXTS)

// ---------------------------------------------------------------- look-alikes (no secret, no personal data)

const uuid = (r: Rng) =>
  `${r.chars(HEX, 8)}-${r.chars(HEX, 4)}-4${r.chars(HEX, 3)}-${r.pick(['8', '9', 'a', 'b'])}${r.chars(HEX, 3)}-${r.chars(HEX, 12)}`

const LOOKALIKE: Array<(r: Rng) => string> = [
  (r) => `request_id=${uuid(r)} trace_id=${r.chars(HEX, 32)} span_id=${r.chars(HEX, 16)}`,
  (r) => `commit ${r.chars(HEX, 40)}\nAuthor: CI Bot\nMerge: ${r.chars(HEX, 7)} ${r.chars(HEX, 7)}`,
  (r) => `sha256sum release.tar.gz\n${r.chars(HEX, 64)}  release.tar.gz`,
  (r) => `"integrity": "sha512-${r.chars(B64, 86)}=="`,
  (r) => `image: registry.acme.internal/api@sha256:${r.chars(HEX, 64)}`,
  (r) => `<img src="data:image/png;base64,iVBORw0KGgo${r.chars(B64, 600)}=" alt="chart">`,
  () => `Use the test card 4242 4242 4242 4242 with any future expiry date and any CVC.`,
  () =>
    `Stripe test cards: 4000 0566 5566 5556 (Visa debit), 5555 5555 5555 4444 (Mastercard), 3782 822463 10005 (Amex).`,
  () => `In the AWS docs the example key pair is AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY.`,
  () => `export OPENAI_API_KEY="sk-..."  # put your key here`,
  () => `api_key = os.environ["OPENAI_API_KEY"]`,
  () => `password: \${DB_PASSWORD}\nuser: \${DB_USER}`,
  () => `DATABASE_URL=postgres://user:password@localhost:5432/mydb`,
  () => `Set ANTHROPIC_API_KEY=<your-api-key> before running the examples.`,
  () => `headers = {"Authorization": f"Bearer {token}"}`,
  () => `token = get_token_from_env()\nsecret = settings.SECRET_KEY`,
  () => `max_tokens: 4096\ntemperature: 0.2\ntokenizer: cl100k_base`,
  (r) => `<div class="sk-fading-circle"><div class="sk-circle${1 + r.int(12)} sk-circle-bounce-delay"></div></div>`,
  (r) =>
    `Build ${r.int(30)}.${r.int(10)}.${r.int(20000)}.${r.int(999)} shipped; version ${r.int(5)}.${r.int(20)}.${r.int(10)}.${r.int(99)} is next.`,
  () => `Server listens on 127.0.0.1:8080 and 0.0.0.0:9090; netmask 255.255.255.0.`,
  (r) =>
    `Order #${r.chars('123456789', 1)}${r.chars(HEX.slice(0, 10), 7)} shipped on 2025-0${1 + r.int(9)}-1${r.int(9)} in ${1 + r.int(9)} parcels.`,
  () => `git clone git@github.com:acme/infra.git && cd infra`,
  () => `Assets: logo@2x.png, icon@3x.png; decorators: @Component, @Injectable.`,
  (r) => `ISBN 978-3-16-148410-0, DOI 10.1000/${r.int(999)}, page ${r.int(400)}`,
  (r) =>
    `const id = "${r.chars('abcdefghijklmnopqrstuvwxyz', 8)}_${r.chars(ALNUM, 24)}"; // stripe-like object id, not a key`,
  (r) => `Temperature series: ${Array.from({ length: 8 }, () => (r.int(400) / 10).toFixed(1)).join(', ')}`,
  (r) => `k8s uid ${uuid(r)} resourceVersion ${r.chars('123456789', 8)}`,
  (r) => `The job ran for ${r.int(90)}m${r.int(60)}s, processed ${r.int(1e6)} rows at ${r.int(9999)} rows/s.`,
  () =>
    `You can get a JWT like eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c from jwt.io.`,
  () => `password reset tokens expire after 15 minutes; the token column is a varchar(64).`,
  (r) => `cache key: v2:${r.chars(HEX, 16)}:${r.chars(HEX, 16)}`,
  (r) => `ETag: W/"${r.chars(HEX, 32)}"`,
  () => `Call the support line on weekdays; our office is on floor 5, room 512.`,
  () => `npm install --save-dev @types/node@20 typescript@5.6`,
  () => `Use \`sk-\` prefixed keys for the OpenAI API and \`sk-ant-\` for Anthropic.`,
]

/** a clean prompt: one or two look-alikes inside the same surroundings as the positive prompts */
function negative(r: Rng): Seg[] {
  const ctx = r.pick(CONTEXT_NAMES)
  const first = r.pick(LOOKALIKE)(r)
  const inner: Seg[] = r.int(3) === 0 ? [first, '\n', r.pick(LOOKALIKE)(r)] : [first]
  return CONTEXTS[ctx]!(r, inner)
}

// ---------------------------------------------------------------- the corpus

/** per kind: prompts whose main item is that kind; a third carry a second item of another kind */
export const PER_KIND = 24
export const NEGATIVES = 420

export function buildCorpus(seed = SEED): CorpusItem[] {
  const r = new Rng(seed)
  const items: CorpusItem[] = []
  for (const kind of CORPUS_KINDS) {
    for (let i = 0; i < PER_KIND; i++) {
      const context = CONTEXT_NAMES[(i + kind.length) % CONTEXT_NAMES.length]!
      let inner = ITEM[kind]!(r)
      if (r.int(3) === 0) inner = [...inner, '\n', ...ITEM[r.pick(CORPUS_KINDS)]!(r)]
      const { text, labels } = assemble(CONTEXTS[context]!(r, inner))
      items.push({ id: `gen-${kind}-${i}`, source: 'generated', context, text, labels })
    }
  }
  for (let i = 0; i < NEGATIVES; i++) {
    const segs = negative(r)
    const { text } = assemble(segs)
    items.push({ id: `gen-clean-${i}`, source: 'generated', context: 'lookalike', text, labels: [] })
  }
  for (const [i, h] of handWritten(r).entries()) {
    const { text, labels } = assemble(h.segs)
    items.push({ id: `hand-${i}`, source: 'hand', context: h.context, text, labels })
  }
  return items
}

export function corpusDigest(items: CorpusItem[]): string {
  const h = createHash('sha256')
  for (const it of items) h.update(JSON.stringify(it)).update('\n')
  return h.digest('hex')
}

if (process.argv.slice(1, 3).some((a) => a.endsWith('guard/generate.ts'))) {
  const items = buildCorpus()
  const out = process.argv.indexOf('--write')
  if (out > 0 && process.argv[out + 1])
    writeFileSync(process.argv[out + 1]!, items.map((i) => JSON.stringify(i)).join('\n') + '\n')
  const positives = items.filter((i) => i.labels.length).length
  console.log(
    `guard corpus: ${items.length} prompts, ${positives} with labels, ${items.length - positives} without; sha256 ${corpusDigest(items)}`,
  )
}
