// The opt-in redirect: declarativeNetRequest dynamic rules send the browser's direct calls to
// api.openai.com and api.anthropic.com to the proxy (same path: /v1/chat/completions,
// /v1/messages), and add the identity headers to what then reaches the proxy. A redirect rule
// cannot also set headers, so the headers are rules of their own on the proxy's URL. Chrome
// redirects only requests whose initiating site is in host_permissions.
import { identityHeaders } from './proxy.ts'
import { SITES, type Settings } from './shared.ts'

type Rule = chrome.declarativeNetRequest.Rule
const { RuleActionType, HeaderOperation, ResourceType } = chrome.declarativeNetRequest

/** the ids this extension owns: every change replaces all of them */
export const RULE_IDS = [1, 2, 3, 4, 5, 6, 7]
const API_HOSTS = ['api.openai.com', 'api.anthropic.com']
const TYPES = [ResourceType.XMLHTTPREQUEST, ResourceType.OTHER]

function headersRule(
  id: number,
  priority: number,
  proxy: URL,
  settings: Settings,
  tool: string,
  initiators?: string[],
): Rule {
  const set = identityHeaders(settings, tool)
  return {
    id,
    priority,
    action: {
      type: RuleActionType.MODIFY_HEADERS,
      requestHeaders: Object.entries(set).map(([header, value]) => ({ header, operation: HeaderOperation.SET, value })),
    },
    // the worker's own calls carry their own headers (its cached answers name the site they are for)
    condition: {
      urlFilter: `|${proxy.origin}/v1`,
      resourceTypes: TYPES,
      ...(initiators ? { initiatorDomains: initiators } : { excludedInitiatorDomains: [chrome.runtime.id] }),
    },
  }
}

export function redirectRules(settings: Settings): Rule[] {
  const proxy = new URL(settings.proxyUrl)
  const port = proxy.port || (proxy.protocol === 'https:' ? '443' : '80')
  const rules: Rule[] = API_HOSTS.map((host, i) => ({
    id: i + 1,
    priority: 1,
    action: {
      type: RuleActionType.REDIRECT,
      redirect: { transform: { scheme: proxy.protocol === 'https:' ? 'https' : 'http', host: proxy.hostname, port } },
    },
    condition: { requestDomains: [host], resourceTypes: TYPES },
  }))
  // any other page allowed to call the APIs is `browser-web`; the three sites name themselves
  rules.push(headersRule(3, 1, proxy, settings, 'browser-web'))
  SITES.forEach((s, i) => rules.push(headersRule(4 + i, 2, proxy, settings, `browser-${s.id}`, [s.host])))
  return rules
}

/** Installs the rules when the switch is on, removes them when off. */
export async function applyRedirect(settings: Settings): Promise<void> {
  let addRules: Rule[] = []
  if (settings.redirect) {
    try {
      addRules = redirectRules(settings)
    } catch {
      // an unparsable proxy URL: nothing to redirect to
      addRules = []
    }
  }
  await chrome.declarativeNetRequest.updateDynamicRules({ removeRuleIds: RULE_IDS, addRules })
}
