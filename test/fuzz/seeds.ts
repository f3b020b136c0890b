// The corpus: valid requests in each protocol (plain and streamed, tools, images, multi-turn),
// the starting points the mutators bend. Each is accepted as is by the proxy and the mock.
import type { ProtocolName } from '../../core/types.ts'

export interface Seed {
  name: string
  protocol: ProtocolName
  method: string
  path: string
  /** JSON body; undefined for GET */
  body?: unknown
  stream: boolean
}

const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=='
const weather = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }

const openai = (name: string, body: Record<string, unknown>): Seed => ({
  name: `openai.${name}`,
  protocol: 'openai',
  method: 'POST',
  path: '/v1/chat/completions',
  body,
  stream: body.stream === true,
})
const anthropic = (name: string, body: Record<string, unknown>, path = '/v1/messages'): Seed => ({
  name: `anthropic.${name}`,
  protocol: 'anthropic',
  method: 'POST',
  path,
  body,
  stream: body.stream === true,
})
const gemini = (name: string, model: string, action: string, body: Record<string, unknown>): Seed => ({
  name: `gemini.${name}`,
  protocol: 'gemini',
  method: 'POST',
  path: `/v1beta/models/${model}:${action}${action === 'streamGenerateContent' ? '?alt=sse' : ''}`,
  body,
  stream: action === 'streamGenerateContent',
})

const userTurn = { role: 'user', content: 'What is the weather in Paris?' }

export const SEEDS: Seed[] = [
  openai('plain', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hi.' }] }),
  openai('stream', { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'Count to three.' }] }),
  openai('stream-usage', {
    model: 'gpt-4.1',
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Name a colour.' }],
  }),
  openai('multi-turn', {
    model: 'gpt-4o',
    temperature: 0.2,
    max_tokens: 64,
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'And again?' },
    ],
  }),
  openai('tools', {
    model: 'gpt-4o-mini',
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: weather } }],
    tool_choice: 'auto',
    messages: [userTurn],
  }),
  openai('tool-result', {
    model: 'gpt-4o-mini',
    stream: true,
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: weather } }],
    messages: [
      userTurn,
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp":21}' },
    ],
  }),
  openai('image', {
    model: 'gpt-4o',
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is this?' },
          { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
        ],
      },
    ],
  }),
  openai('json-schema', {
    model: 'gpt-4o-mini',
    response_format: { type: 'json_schema', json_schema: { name: 'w', schema: weather } },
    messages: [userTurn],
  }),
  {
    name: 'openai.embeddings',
    protocol: 'openai',
    method: 'POST',
    path: '/v1/embeddings',
    body: { model: 'text-embedding-3-small', input: ['one', 'two'] },
    stream: false,
  },
  { name: 'openai.models', protocol: 'openai', method: 'GET', path: '/v1/models', stream: false },
  anthropic('plain', { model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'Say hi.' }] }),
  anthropic('stream', {
    model: 'claude-sonnet-4-5',
    max_tokens: 64,
    stream: true,
    messages: [{ role: 'user', content: 'Count to three.' }],
  }),
  anthropic('system-blocks', {
    model: 'claude-sonnet-4-5',
    max_tokens: 128,
    system: [{ type: 'text', text: 'You are terse.', cache_control: { type: 'ephemeral' } }],
    messages: [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: [{ type: 'text', text: 'Hello.' }] },
      { role: 'user', content: 'Again.' },
    ],
  }),
  anthropic('tools', {
    model: 'claude-haiku-4-5',
    max_tokens: 64,
    tools: [{ name: 'get_weather', input_schema: weather }],
    messages: [userTurn],
  }),
  anthropic('tool-result', {
    model: 'claude-haiku-4-5',
    max_tokens: 64,
    stream: true,
    tools: [{ name: 'get_weather', input_schema: weather }],
    messages: [
      userTurn,
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }],
      },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '21C' }] },
    ],
  }),
  anthropic('image', {
    model: 'claude-sonnet-4-5',
    max_tokens: 64,
    messages: [
      {
        role: 'user',
        content: [
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
          { type: 'text', text: 'What is this?' },
        ],
      },
    ],
  }),
  anthropic('thinking', {
    model: 'claude-sonnet-4-5',
    max_tokens: 2048,
    thinking: { type: 'enabled', budget_tokens: 1024 },
    stream: true,
    messages: [{ role: 'user', content: 'Think, then say hi.' }],
  }),
  anthropic(
    'count-tokens',
    { model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'How many tokens?' }] },
    '/v1/messages/count_tokens',
  ),
  gemini('plain', 'gemini-2.5-flash', 'generateContent', {
    contents: [{ role: 'user', parts: [{ text: 'Say hi.' }] }],
  }),
  gemini('stream', 'gemini-2.5-pro', 'streamGenerateContent', {
    contents: [{ role: 'user', parts: [{ text: 'Count to three.' }] }],
  }),
  gemini('system-config', 'gemini-2.5-flash', 'generateContent', {
    systemInstruction: { parts: [{ text: 'Be brief.' }] },
    generationConfig: { temperature: 0.1, maxOutputTokens: 64 },
    contents: [
      { role: 'user', parts: [{ text: 'Hi' }] },
      { role: 'model', parts: [{ text: 'Hello' }] },
      { role: 'user', parts: [{ text: 'Again' }] },
    ],
  }),
  gemini('tools', 'gemini-2.5-flash', 'streamGenerateContent', {
    tools: [{ functionDeclarations: [{ name: 'get_weather', parameters: weather }] }],
    contents: [
      { role: 'user', parts: [{ text: 'Weather in Paris?' }] },
      { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
      { role: 'function', parts: [{ functionResponse: { name: 'get_weather', response: { temp: 21 } } }] },
    ],
  }),
  gemini('image', 'gemini-2.0-flash', 'generateContent', {
    contents: [
      { role: 'user', parts: [{ inlineData: { mimeType: 'image/png', data: PNG } }, { text: 'What is this?' }] },
    ],
  }),
  gemini('count-tokens', 'gemini-2.5-flash', 'countTokens', {
    contents: [{ role: 'user', parts: [{ text: 'How many tokens?' }] }],
  }),
]
