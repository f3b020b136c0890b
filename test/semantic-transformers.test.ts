// The transformers.js embedder's loading path, offline, on a tiny BERT-shaped ONNX model that
// this test writes (onnx-proto) together with config.json, tokenizer.json and
// tokenizer_config.json, laid out the way Xenova/all-MiniLM-L6-v2 is on the hub.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { onnx } from 'onnx-proto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAgentMesh } from '../core/index.ts'
import { transformersEmbedder } from '../plugins/semantic-cache/embedders.ts'
import { semanticCache } from '../plugins/semantic-cache/index.ts'
import { demo } from '../plugins/vendors/demo.ts'

const HIDDEN = 8
const WORDS = [
  'hello',
  'world',
  'goodbye',
  'cache',
  'semantic',
  'what',
  'is',
  'the',
  'capital',
  'of',
  'france',
  '?',
  'how',
  'do',
  'i',
  'reverse',
  'a',
  'list',
  '##s',
]
const VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', ...WORDS]

/** deterministic pseudo-random weights */
function weights(n: number, seed: number): number[] {
  let s = seed
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648
    return (s / 2147483648) * 2 - 1
  })
}

function tensor(name: string, dims: number[], values: number[]): onnx.ITensorProto {
  return { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, floatData: values }
}

function valueInfo(name: string, elemType: number, dims: Array<number | string>): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  }
}

/** word + token-type embeddings -> MatMul -> Tanh, masked: a BERT encoder's interface in 6 nodes */
function tinyBert(): Uint8Array {
  const INT64 = onnx.TensorProto.DataType.INT64
  const FLOAT = onnx.TensorProto.DataType.FLOAT
  const graph: onnx.IGraphProto = {
    name: 'tiny-bert',
    input: [
      valueInfo('input_ids', INT64, ['batch', 'seq']),
      valueInfo('attention_mask', INT64, ['batch', 'seq']),
      valueInfo('token_type_ids', INT64, ['batch', 'seq']),
    ],
    output: [valueInfo('last_hidden_state', FLOAT, ['batch', 'seq', HIDDEN])],
    initializer: [
      tensor('word_embeddings', [VOCAB.length, HIDDEN], weights(VOCAB.length * HIDDEN, 1)),
      tensor('type_embeddings', [2, HIDDEN], weights(2 * HIDDEN, 2)),
      tensor('dense', [HIDDEN, HIDDEN], weights(HIDDEN * HIDDEN, 3)),
      { name: 'axes', dims: [1], dataType: INT64, int64Data: [2] },
    ],
    node: [
      { opType: 'Gather', input: ['word_embeddings', 'input_ids'], output: ['words'] },
      { opType: 'Gather', input: ['type_embeddings', 'token_type_ids'], output: ['types'] },
      { opType: 'Add', input: ['words', 'types'], output: ['summed'] },
      { opType: 'MatMul', input: ['summed', 'dense'], output: ['projected'] },
      { opType: 'Tanh', input: ['projected'], output: ['hidden'] },
      {
        opType: 'Cast',
        input: ['attention_mask'],
        output: ['mask_f'],
        attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: FLOAT }],
      },
      { opType: 'Unsqueeze', input: ['mask_f', 'axes'], output: ['mask3'] },
      { opType: 'Mul', input: ['hidden', 'mask3'], output: ['last_hidden_state'] },
    ],
  }
  const model = onnx.ModelProto.create({
    irVersion: 7,
    producerName: 'agentmesh-test',
    opsetImport: [{ domain: '', version: 13 }],
    graph,
  })
  return onnx.ModelProto.encode(model).finish()
}

function writeModel(root: string, name: string) {
  const dir = join(root, name)
  mkdirSync(join(dir, 'onnx'), { recursive: true })
  const bytes = tinyBert()
  // the quantised file is what transformers.js loads by default; the same tiny graph serves both
  writeFileSync(join(dir, 'onnx', 'model.onnx'), bytes)
  writeFileSync(join(dir, 'onnx', 'model_quantized.onnx'), bytes)
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      model_type: 'bert',
      architectures: ['BertModel'],
      hidden_size: HIDDEN,
      vocab_size: VOCAB.length,
      num_attention_heads: 1,
      num_hidden_layers: 1,
      max_position_embeddings: 64,
    }),
  )
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  })
  writeFileSync(
    join(dir, 'tokenizer.json'),
    JSON.stringify({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t, i) => special(i, t)),
      normalizer: {
        type: 'BertNormalizer',
        clean_text: true,
        handle_chinese_chars: true,
        strip_accents: null,
        lowercase: true,
      },
      pre_tokenizer: { type: 'BertPreTokenizer' },
      post_processor: {
        type: 'TemplateProcessing',
        single: [
          { SpecialToken: { id: '[CLS]', type_id: 0 } },
          { Sequence: { id: 'A', type_id: 0 } },
          { SpecialToken: { id: '[SEP]', type_id: 0 } },
        ],
        pair: [
          { SpecialToken: { id: '[CLS]', type_id: 0 } },
          { Sequence: { id: 'A', type_id: 0 } },
          { SpecialToken: { id: '[SEP]', type_id: 0 } },
          { Sequence: { id: 'B', type_id: 1 } },
          { SpecialToken: { id: '[SEP]', type_id: 1 } },
        ],
        special_tokens: {
          '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] },
          '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] },
        },
      },
      decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
      model: {
        type: 'WordPiece',
        unk_token: '[UNK]',
        continuing_subword_prefix: '##',
        max_input_chars_per_word: 100,
        vocab: Object.fromEntries(VOCAB.map((t, i) => [t, i])),
      },
    }),
  )
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({
      tokenizer_class: 'BertTokenizer',
      do_lower_case: true,
      model_max_length: 64,
      cls_token: '[CLS]',
      sep_token: '[SEP]',
      pad_token: '[PAD]',
      unk_token: '[UNK]',
      mask_token: '[MASK]',
    }),
  )
}

let root: string
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'am-tiny-bert-'))
  writeModel(root, 'tiny-bert')
})
afterAll(() => rmSync(root, { recursive: true, force: true }))

const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0))
const cos = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0) / (norm(a) * norm(b))

describe('transformers.js embedder', () => {
  it('loads a local model offline and returns mean-pooled, normalised vectors in one batch', async () => {
    const e = transformersEmbedder({ model: 'tiny-bert', localModelPath: root, dimension: HIDDEN })
    expect(e.loaded).toBe(false) // lazy: nothing happens before the first use
    expect(e.id).toBe('transformers:tiny-bert:q8')
    const [a, b, c, d] = await e.embed([
      'Hello world',
      'hello   WORLD',
      'goodbye cache',
      'what is the capital of france?',
    ])
    expect(e.loaded).toBe(true)
    expect(e.dimension).toBe(HIDDEN)
    for (const v of [a!, b!, c!, d!]) {
      expect(v).toBeInstanceOf(Float32Array)
      expect(v.length).toBe(HIDDEN)
      expect(norm(v)).toBeCloseTo(1, 5)
    }
    // the BERT normaliser lowercases, so these two tokenise alike and embed alike
    expect(cos(a!, b!)).toBeCloseTo(1, 5)
    expect(cos(a!, c!)).toBeLessThan(0.999)
    // batching does not change a vector
    const [alone] = await e.embed(['goodbye cache'])
    expect(cos(alone!, c!)).toBeCloseTo(1, 5)
  })

  it('fails with a clear error, without reaching for the hub, when the model folder is missing', async () => {
    const e = transformersEmbedder({ model: 'no-such-model', localModelPath: root })
    await expect(e.embed(['hello'])).rejects.toThrow(/no-such-model|local|not found|Could not locate/i)
  })

  it('rejects a dimension that does not match the model', async () => {
    const e = transformersEmbedder({ model: 'tiny-bert', localModelPath: root, dimension: 384 })
    await expect(e.embed(['hello'])).rejects.toThrow(/dimension is 384 but tiny-bert returns 8/)
  })

  it('serves the semantic cache end to end, with its own id stored on entries', async () => {
    const plugin = semanticCache({
      embedder: { kind: 'transformers', model: 'tiny-bert', localModelPath: root, dimension: HIDDEN },
    })
    // without the demo preset's exact cache, which would answer the repeated prompt first
    const app = await createAgentMesh({
      preset: 'demo',
      disable: ['exact-cache', 'quota', 'audit'],
      storage: { driver: 'memory' },
      log: { level: 'silent' },
      plugins: [plugin, demo({ latencyMs: 0, chunkDelayMs: 0 })],
    })
    try {
      const ask = async () => {
        const res = await app.fetch(
          new Request('http://mesh/v1/chat/completions', {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-agentmesh-team': 'eng' },
            body: JSON.stringify({
              model: 'gpt-4o-mini',
              messages: [{ role: 'user', content: 'hello world, what is the semantic cache?' }],
            }),
          }),
        )
        return {
          cache: res.headers.get('x-agentmesh-cache'),
          similarity: res.headers.get('x-agentmesh-similarity'),
          body: (await res.json()) as any,
        }
      }
      const first = await ask()
      expect(first.cache).not.toBe('semantic')
      await plugin.semantic.flush()
      const second = await ask()
      expect(second.cache).toBe('semantic')
      expect(Number(second.similarity)).toBeGreaterThan(0.99)
      expect(second.body.choices[0].message.content).toBe(first.body.choices[0].message.content)
      const keys = await app.mesh.storage.getKeys('semantic')
      expect(keys.length).toBe(1)
      const entry = (await app.mesh.storage.getItem(keys[0]!)) as any
      expect(entry.embedder).toBe('transformers:tiny-bert:q8')
      expect(entry.dim).toBe(HIDDEN)
    } finally {
      await app.close()
    }
  })
})
