#!/usr/bin/env node
// npm run build:extension: bundles extension/src with esbuild into a folder Chrome loads unpacked
// (extension/dist/unpacked), draws the icons, and zips the folder for the store
// (extension/dist/agentmesh-extension-<version>.zip). `--out DIR` builds elsewhere (the tests do).
import { createHash } from 'node:crypto'
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { ICON_SIZES, icon } from '../extension/scripts/icons.mjs'
import { zip } from '../extension/scripts/zip.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'extension')
const arg = (name) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? process.argv[i + 1] : undefined
}
const out = resolve(arg('--out') ?? join(root, 'dist', 'unpacked'))
const manifest = JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8'))
const zipPath = resolve(arg('--zip') ?? join(dirname(out), `agentmesh-extension-${manifest.version}.zip`))

/** The id Chrome gives an extension: the first 128 bits of SHA-256 of its public key, as letters a-p. */
export function extensionId(keyBase64) {
  const hex = createHash('sha256').update(Buffer.from(keyBase64, 'base64')).digest('hex').slice(0, 32)
  return [...hex].map((h) => String.fromCharCode(97 + Number.parseInt(h, 16))).join('')
}

function files(dir) {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : [join(dir, n)]))
}

rmSync(out, { recursive: true, force: true })
mkdirSync(join(out, 'icons'), { recursive: true })
const common = { bundle: true, target: 'chrome121', charset: 'utf8', legalComments: 'none', logLevel: 'warning' }
// the worker and the pages are modules; a content script is a classic script
await build({
  ...common,
  entryPoints: ['background', 'popup', 'options'].map((n) => join(root, 'src', `${n}.ts`)),
  outdir: out,
  format: 'esm',
})
await build({ ...common, entryPoints: [join(root, 'src', 'content.ts')], outdir: out, format: 'iife' })
for (const f of readdirSync(join(root, 'static'))) copyFileSync(join(root, 'static', f), join(out, f))
for (const size of ICON_SIZES) writeFileSync(join(out, 'icons', `${size}.png`), icon(size))
writeFileSync(join(out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')

mkdirSync(dirname(zipPath), { recursive: true })
const entries = files(out)
  .sort()
  .map((f) => [relative(out, f).split('\\').join('/'), readFileSync(f)])
writeFileSync(zipPath, zip(entries))
console.log(`extension ${manifest.version} (id ${extensionId(manifest.key)}): ${out}\nstore zip: ${zipPath}`)
