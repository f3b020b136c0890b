// The extension in a real browser: built by the project's own build script into a temp folder,
// loaded unpacked into Debian's chromium (playwright-core, headless) with the fake sites mapped
// to the local HTTPS fixture. Facts from issue 19: Playwright adds --disable-extensions, so the
// extension is named in --disable-extensions-except as well; the fake sites must count as public
// (--ip-address-space-overrides) for the browser's local-network rules to apply as on the real sites.
import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { type BrowserContext, chromium, type Page, type Worker } from 'playwright-core'
import { FAKE_HOSTS } from './extension-sites.ts'

const ROOT = resolve(import.meta.dirname, '..', '..')

export interface BuiltExtension {
  dir: string
  zip: string
  manifest: { key: string; version: string; [k: string]: unknown }
  cleanup(): void
}

/** `node bin/build-extension.mjs --out TMP` (what `npm run build:extension` runs after its type check) */
export function buildExtension(): BuiltExtension {
  const tmp = mkdtempSync(join(tmpdir(), 'agentmesh-ext-build-'))
  const dir = join(tmp, 'unpacked')
  const zip = join(tmp, 'extension.zip')
  execFileSync(process.execPath, [join(ROOT, 'bin', 'build-extension.mjs'), '--out', dir, '--zip', zip], {
    cwd: ROOT,
    stdio: 'pipe',
  })
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))
  return { dir, zip, manifest, cleanup: () => rmSync(tmp, { recursive: true, force: true }) }
}

/** `tsc -p extension/tsconfig.json` (the type check `npm run build:extension` starts with): its errors, '' when clean */
export function typecheckExtension(): Promise<string> {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [tsc, '-p', join(ROOT, 'extension', 'tsconfig.json')],
      { cwd: ROOT },
      (err, stdout, stderr) => resolve(err ? `${stdout}${stderr}` || err.message : ''),
    )
  })
}

export interface ExtensionBrowser {
  context: BrowserContext
  id: string
  worker(): Promise<Worker>
  /** an extension page: popup.html, options.html */
  open(path: string): Promise<Page>
  /** CDP ServiceWorker.stopAllWorkers from an extension page's session (never evaluate() on a stopped worker: it hangs) */
  stopWorkers(): Promise<void>
  close(): Promise<void>
}

export async function launchWithExtension(ext: BuiltExtension, sitesPort: number): Promise<ExtensionBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'agentmesh-ext-profile-'))
  const rules = FAKE_HOSTS.map((h) => `MAP ${h} 127.0.0.1:${sitesPort}`).join(',')
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1100, height: 760 },
    args: [
      '--no-sandbox',
      `--disable-extensions-except=${ext.dir}`,
      `--load-extension=${ext.dir}`,
      `--host-resolver-rules=${rules}`,
      `--ip-address-space-overrides=127.0.0.1:${sitesPort}=public`,
    ],
  })
  const worker = async (): Promise<Worker> =>
    context.serviceWorkers().find((w) => w.url().startsWith('chrome-extension://')) ??
    context.waitForEvent('serviceworker', { timeout: 10_000 })
  const id = new URL((await worker()).url()).host
  return {
    context,
    id,
    worker,
    async open(path) {
      const page = await context.newPage()
      await page.goto(`chrome-extension://${id}/${path}`)
      return page
    },
    async stopWorkers() {
      // the options page sends the worker nothing on load, so nothing wakes it again meanwhile
      const page = await context.newPage()
      await page.goto(`chrome-extension://${id}/options.html`)
      const cdp = await context.newCDPSession(page)
      const states: string[] = []
      cdp.on('ServiceWorker.workerVersionUpdated', (e) => {
        for (const v of e.versions)
          if (v.scriptURL.startsWith(`chrome-extension://${id}/`)) states.push(v.runningStatus)
      })
      await cdp.send('ServiceWorker.enable')
      await cdp.send('ServiceWorker.stopAllWorkers')
      const deadline = Date.now() + 5000
      while (states.at(-1) !== 'stopped') {
        if (Date.now() > deadline)
          throw new Error(`the extension's service worker did not stop (states seen: ${states.join(', ') || 'none'})`)
        await new Promise((r) => setTimeout(r, 50))
      }
      await cdp.detach()
      await page.close()
    },
    async close() {
      await context.close()
      rmSync(profile, { recursive: true, force: true })
    },
  }
}
