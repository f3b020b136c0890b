// Hand-written cases for the guard corpus: the surroundings are written by hand (the situations
// that broke naive detectors elsewhere: a secret in a URL, in a diff, after a sentence, a key in a
// cURL line, look-alikes a detector must leave alone). Values still come from the seeded fakes,
// so no literal token sits in the repository; the look-alikes are written out (published example
// keys, documented test cards, hashes, placeholders).
import {
  type Rng,
  bsn,
  fakeCard,
  fakeEmail,
  fakeIban,
  fakeNationalId,
  fakePassword,
  fakePhone,
  fakeSecret,
  steuerId,
} from './fakes.ts'
import type { Seg } from './generate.ts'

export interface HandCase {
  context: string
  segs: Seg[]
}

export function handWritten(r: Rng): HandCase[] {
  const s = (kind: string) => ({ kind, value: fakeSecret[kind]!(r) })
  const pii = (kind: string, value: string) => ({ kind, value })
  const pos: HandCase[] = [
    {
      context: 'diff',
      segs: [
        'Review this diff please:\n\n```diff\n-  const key = process.env.STRIPE_KEY\n+  const key = "',
        s('stripe-key'),
        '"\n```',
      ],
    },
    {
      context: 'curl',
      segs: [
        'curl -s https://api.anthropic.com/v1/messages \\\n  -H "x-api-key: ',
        s('anthropic-key'),
        '" \\\n  -H "anthropic-version: 2023-06-01" \\\n  -d @body.json\nwhy 529?',
      ],
    },
    {
      context: 'url',
      segs: [
        'pip install fails: pip install git+https://oauth2:',
        s('gitlab-token'),
        '@gitlab.acme.dev/ml/featurestore.git',
      ],
    },
    {
      context: 'prose',
      segs: ['my colleague sent me this key over chat: ', s('openai-key'), '. Is it safe to keep using it?'],
    },
    {
      context: 'terraform',
      segs: [
        'provider "aws" {\n  region     = "eu-west-1"\n  access_key = "',
        s('aws-access-key'),
        '"\n  secret_key = "',
        s('aws-secret-key'),
        '"\n}\n\nterraform plan says the token is invalid',
      ],
    },
    {
      context: 'k8s',
      segs: [
        'apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\nstringData:\n  GITHUB_TOKEN: ',
        s('github-token'),
        '\n  SENDGRID_API_KEY: ',
        s('sendgrid-key'),
        '\n',
      ],
    },
    {
      context: 'notebook',
      segs: [
        'In [3]: import openai\nIn [4]: openai.api_key = "',
        s('openai-key'),
        '"\nIn [5]: openai.models.list()\nAuthenticationError',
      ],
    },
    { context: 'json', segs: ['{"webhooks":[{"url":"', s('slack-webhook'), '","events":["deploy.failed"]}]}'] },
    {
      context: 'log',
      segs: [
        'WARN  http  outgoing request GET /v1/me headers={"Authorization":"Bearer ',
        s('jwt'),
        '","Accept":"application/json"}',
      ],
    },
    {
      context: 'dotnet',
      segs: [
        'appsettings.json:\n"ConnectionStrings": {\n  "Blob": "DefaultEndpointsProtocol=https;AccountName=invoicesprod;AccountKey=',
        s('azure-storage-key'),
        ';EndpointSuffix=core.windows.net"\n}',
      ],
    },
    {
      context: 'ssh',
      segs: [
        'I copied my key to the server but ssh still asks for a password:\n\n',
        s('private-key'),
        '\n\nwhat permissions should the file have?',
      ],
    },
    {
      context: 'npmrc',
      segs: ['cat ~/.npmrc\n//registry.npmjs.org/:_authToken=', s('npm-token'), '\nsave-exact=true'],
    },
    { context: 'go', segs: ['func newClient() *slack.Client {\n\treturn slack.New("', s('slack-token'), '")\n}'] },
    {
      context: 'php',
      segs: [
        "$pdo = new PDO('mysql:host=db;dbname=shop', 'shop', '",
        { kind: 'generic-secret', value: fakePassword(r) },
        "'); // password: see below\n$db_password = '",
        { kind: 'generic-secret', value: fakePassword(r) },
        "';",
      ],
    },
    { context: 'ruby', segs: ['Stripe.api_key = ENV.fetch("STRIPE_KEY") # was: ', s('stripe-key')] },
    {
      context: 'twilio',
      segs: [
        'account_sid = "AC',
        r.chars('0123456789abcdef', 32),
        '"\nauth_token = "',
        { kind: 'twilio-key', value: r.chars('0123456789abcdef', 32) },
        '"  # twilio\nclient = Client(account_sid, auth_token)',
      ],
    },
    {
      context: 'gcp',
      segs: ['gcloud says my key is restricted: ', s('google-api-key'), ' — which APIs does it allow?'],
    },
    {
      context: 'cli',
      segs: [
        'psql "postgresql://reporting:',
        s('connection-string'),
        '@warehouse.db.internal:5432/warehouse?sslmode=require" -c "select 1"',
      ],
    },
    {
      context: 'env',
      segs: [
        'export STRIPE_WEBHOOK_SECRET=',
        s('stripe-webhook-secret'),
        '\nexport NODE_OPTIONS=--max-old-space-size=4096',
      ],
    },
    {
      context: 'yaml',
      segs: [
        'auth:\n  client_id: dashboard\n  client_secret: ',
        s('generic-secret'),
        '\n  redirect_uri: https://dash.acme.dev/callback',
      ],
    },
    {
      context: 'email',
      segs: [
        'Hi Sam,\n\nthe new invoice goes to ',
        pii('email', fakeEmail(r)),
        ', please call ',
        pii('phone', fakePhone(r)),
        ' if it bounces.\n\nThanks',
      ],
    },
    {
      context: 'support',
      segs: [
        'Customer says card ',
        pii('card', fakeCard(r)),
        ' was declined at checkout. Their IBAN for the refund: ',
        pii('iban', fakeIban(r)),
        '. Draft a reply.',
      ],
    },
    {
      context: 'hr',
      segs: (() => {
        const id = fakeNationalId(r)
        return [
          'New hire form: name Olga Ivanova, ',
          id.label,
          ' ',
          pii('national-id', id.value),
          ', start date 1 March. Summarise for payroll.',
        ]
      })(),
    },
    {
      context: 'access-log',
      segs: [
        pii('ip', `${r.pick([81, 91, 176])}.${1 + r.int(250)}.${r.int(256)}.${1 + r.int(250)}`),
        ' - - [12/Mar/2025:10:02:11 +0000] "POST /login HTTP/1.1" 401 512 "-" "curl/8.5.0"\nwhy so many 401s?',
      ],
    },
    {
      context: 'access-log',
      segs: [
        'sshd[811]: Failed password for root from ',
        pii('ip', `2a01:4f8:${r.chars('0123456789abcdef', 3)}:1a2b::1`),
        ' port 51234 ssh2',
      ],
    },
    {
      context: 'crm',
      segs: [
        '{"customer": {"name": "Pablo Silva", "email": "',
        pii('email', fakeEmail(r)),
        '", "phone": "',
        pii('phone', fakePhone(r)),
        '"}}',
      ],
    },
    {
      context: 'invoice',
      segs: ['Bitte überweisen Sie den Betrag auf ', pii('iban', fakeIban(r, true)), ' bis zum 15.'],
    },
    {
      context: 'form',
      segs: ['SSN: ', pii('national-id', '536-22-8726'), '\nDOB: 1988-04-12\nPlease verify the applicant.'],
    },
    {
      context: 'form',
      segs: [
        'Steuer-ID ',
        pii('national-id', steuerId(r)),
        ' und BSN ',
        pii('national-id', bsn(r)),
        ' stehen im Formular.',
      ],
    },
    {
      context: 'chat',
      segs: ['text me at ', pii('phone', '+44 20 7946 0958'), ' or mail ', pii('email', 'rosa.dubois@bluefin-labs.fr')],
    },
  ]
  const neg: HandCase[] = [
    {
      context: 'docs',
      segs: [
        'In test mode use 4242 4242 4242 4242, exp 12/34, CVC 123. Live keys start with sk_live_ and must never be committed.',
      ],
    },
    {
      context: 'docs',
      segs: [
        'AWS example credentials from the docs: AKIAIOSFODNN7EXAMPLE and wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY. Why does the CLI reject them?',
      ],
    },
    { context: 'docs', segs: ['The Stripe docs show sk_test_4eC39HqLyjWDarjtT1zdp7dc in every curl example.'] },
    {
      context: 'template',
      segs: [
        'OPENAI_API_KEY=your-api-key-here\nANTHROPIC_API_KEY=\nDATABASE_URL=postgres://postgres:postgres@localhost:5432/dev',
      ],
    },
    { context: 'template', segs: ['password: ********\napi_key: <redacted>\ntoken: ${{ secrets.GITHUB_TOKEN }}'] },
    {
      context: 'code',
      segs: [
        'def login(username, password):\n    token = create_token(username)\n    return {"access_token": token, "token_type": "bearer"}',
      ],
    },
    {
      context: 'code',
      segs: ['const apiKey = process.env.API_KEY ?? ""\nif (!apiKey) throw new Error("API_KEY missing")'],
    },
    {
      context: 'git',
      segs: ['git log --oneline\n9fceb02 fix token refresh\n3f78685 add password strength meter\ne83c516 bump deps'],
    },
    {
      context: 'hash',
      segs: [
        'password hashes use argon2id; a stored value looks like $argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG',
      ],
    },
    {
      context: 'image',
      segs: [
        'What is in this image? data:image/jpeg;base64,/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/2wBDAQMEBAUEBQkFBQkUDQsNFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBT/wAARCAABAAEDASIAAhEBAxEB',
      ],
    },
    {
      context: 'uuid',
      segs: [
        'Tenant 3fa85f64-5717-4562-b3fc-2c963f66afa6 has 12 users; workspace 9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d none.',
      ],
    },
    { context: 'crypto', segs: ['sha256("hello") = 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'] },
    { context: 'math', segs: ['The first digits of pi: 3.14159265358979323846264338327950288419716939937510'] },
    { context: 'phone-like', segs: ['Build 20250312.4 ran 1,234,567 tests in 00:12:45; invoice INV-2025-000123.'] },
    { context: 'versions', segs: ['node v20.11.1, npm 10.2.4, Chrome version 122.0.6261.94, Windows 10.0.19045.4046'] },
    { context: 'network', segs: ['The container binds 0.0.0.0:3000 and health checks hit 127.0.0.1:3000/healthz.'] },
    {
      context: 'emails',
      segs: [
        'Use the noreply pattern name@example.invalid in docs; our logo is logo@2x.png; run `git push git@github.com:acme/x.git`.',
      ],
    },
    {
      context: 'code',
      segs: [
        'import { Injectable } from "@angular/core"\n@Injectable()\nexport class TokenService { secret = inject(SECRET_TOKEN) }',
      ],
    },
    {
      context: 'docs',
      segs: [
        'A JWT has three parts: header.payload.signature, each base64url. The header usually starts with eyJ because {" encodes that way.',
      ],
    },
    { context: 'docs', segs: ['IBANs look like DE<check><bank><account>; the check digits use ISO 7064 mod 97-10.'] },
    {
      context: 'sql',
      segs: [
        "SELECT id, email_hash, created_at FROM users WHERE password_reset_token IS NOT NULL AND created_at > '2025-01-01';",
      ],
    },
    {
      context: 'ci',
      segs: [
        'env:\n  NPM_TOKEN: ${{ secrets.NPM_TOKEN }}\n  AWS_ACCESS_KEY_ID: ${{ secrets.AWS_ACCESS_KEY_ID }}\n  AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}',
      ],
    },
    { context: 'shell', segs: ['read -s -p "Password: " PASSWORD && export PGPASSWORD="$PASSWORD"'] },
    {
      context: 'lockfile',
      segs: [
        '"resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz",\n"integrity": "sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+LFTGHVxVjcXPs17LhbZVGedAJv8XZ1tvj5FvSg=="',
      ],
    },
    {
      context: 'css',
      segs: ['.sk-chase-dot:nth-child(1) { animation-delay: -1.1s; } .sk-folding-cube-animation-delay-long { }'],
    },
  ]
  return [...pos, ...neg]
}
