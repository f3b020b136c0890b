// British -> American spelling, built from stems rather than a long flat list so that every
// inflection of a stem is covered. Only unambiguous pairs: a word that is a different English
// word in American usage (e.g. "analyses" the plural noun, "storey", "spelt") is left out,
// because the cache key must never merge two different questions.

const IZE_STEMS = [
  'organ', 'optim', 'util', 'summar', 'real', 'recogn', 'author', 'serial', 'initial', 'token',
  'normal', 'standard', 'prior', 'minim', 'maxim', 'custom', 'visual', 'categor', 'emphas',
  'apolog', 'critic', 'memor', 'special', 'general', 'capital', 'character', 'legal', 'modern',
  'stabil', 'synchron', 'central', 'final', 'local', 'global', 'vector', 'parameter', 'container',
  'virtual', 'monet', 'priorit', 'random', 'sanit', 'modular', 'popular', 'rational', 'symbol',
  'theor', 'penal', 'familiar', 'fertil', 'harmon', 'hospital', 'ideal', 'industrial',
  'internal', 'external', 'jeopard', 'legitim', 'liberal', 'material', 'mechan', 'mobil', 'moral',
  'neutral', 'patron', 'polar', 'public', 'revolution', 'scrutin', 'social', 'subsid', 'sympath',
  'terror', 'trivial', 'urban', 'vandal', 'vapor', 'digit', 'quant', 'hypothes', 'agon', 'fantas',
  'colon', 'commercial', 'econom', 'anonym', 'crystal', 'dramat', 'energ', 'equal', 'formal',
  'fossil', 'human', 'immun', 'individual', 'institution', 'italic', 'lexical', 'marginal',
  'metabol', 'motor', 'national', 'oxid', 'pasteur', 'plagiar', 'pressur', 'radical', 'regular',
  'satir', 'scandal', 'sensation', 'signal', 'stigmat', 'tantal', 'tranquil', 'verbal', 'victim',
  'vital', 'vocal', 'contextual', 'conceptual', 'deserial', 'desensit', 'reorgan', 'reinitial',
  'unauthor', 'unrecogn', 'decentral', 'destabil', 'disorgan', 'canonical', 'lemmat', 'western',
]
const IZE_SUFFIXES: Array<[string, string]> = [
  ['ise', 'ize'], ['ises', 'izes'], ['ised', 'ized'], ['ising', 'izing'], ['isation', 'ization'],
  ['isations', 'izations'], ['iser', 'izer'], ['isers', 'izers'], ['isable', 'izable'],
]

const OUR_STEMS = ['col', 'flav', 'fav', 'behavi', 'hon', 'hum', 'lab', 'neighb', 'rum', 'harb', 'vap', 'arm', 'endeav', 'sav', 'od', 'parl', 'vig', 'rig', 'clam', 'splend', 'ranc', 'tum', 'val', 'ferv', 'succ', 'enam', 'glam']
const OUR_SUFFIXES = ['', 's', 'ed', 'ing', 'ful', 'able', 'ite', 'ites', 'al', 'less', 'er', 'ers', 'ably', 'ist']

const EXPLICIT: Record<string, string> = {
  analyse: 'analyze', analysed: 'analyzed', analysing: 'analyzing',
  paralyse: 'paralyze', paralysed: 'paralyzed', paralysing: 'paralyzing',
  catalyse: 'catalyze', catalysed: 'catalyzed', catalysing: 'catalyzing',
  centre: 'center', centres: 'centers', centred: 'centered', centring: 'centering',
  metre: 'meter', metres: 'meters', litre: 'liter', litres: 'liters',
  theatre: 'theater', theatres: 'theaters', fibre: 'fiber', fibres: 'fibers',
  calibre: 'caliber', sabre: 'saber', spectre: 'specter', lustre: 'luster', meagre: 'meager', sombre: 'somber',
  kilometre: 'kilometer', kilometres: 'kilometers', centimetre: 'centimeter', centimetres: 'centimeters',
  millimetre: 'millimeter', millimetres: 'millimeters',
  travelled: 'traveled', travelling: 'traveling', traveller: 'traveler', travellers: 'travelers',
  labelled: 'labeled', labelling: 'labeling', modelled: 'modeled', modelling: 'modeling',
  cancelled: 'canceled', cancelling: 'canceling', totalled: 'totaled', totalling: 'totaling',
  signalled: 'signaled', signalling: 'signaling', fuelled: 'fueled', fuelling: 'fueling',
  channelled: 'channeled', channelling: 'channeling', levelled: 'leveled', levelling: 'leveling',
  marshalled: 'marshaled', marshalling: 'marshaling', counsellor: 'counselor', counsellors: 'counselors',
  jewellery: 'jewelry', tunnelled: 'tunneled', tunnelling: 'tunneling', queueing: 'queuing',
  catalogue: 'catalog', catalogues: 'catalogs', analogue: 'analog', analogues: 'analogs',
  programme: 'program', programmes: 'programs', defence: 'defense', defences: 'defenses',
  offence: 'offense', offences: 'offenses', licence: 'license', licences: 'licenses',
  pretence: 'pretense', grey: 'gray', greys: 'grays', aluminium: 'aluminum',
  enquiry: 'inquiry', enquiries: 'inquiries', enquire: 'inquire', amongst: 'among', whilst: 'while',
  learnt: 'learned', judgement: 'judgment', judgements: 'judgments',
  acknowledgement: 'acknowledgment', acknowledgements: 'acknowledgments', ageing: 'aging',
  artefact: 'artifact', artefacts: 'artifacts', sceptical: 'skeptical', sceptic: 'skeptic',
  mould: 'mold', moulds: 'molds', manoeuvre: 'maneuver', manoeuvres: 'maneuvers',
  paediatric: 'pediatric', anaemia: 'anemia', oesophagus: 'esophagus', encyclopaedia: 'encyclopedia',
  practise: 'practice', practised: 'practiced', practising: 'practicing', practises: 'practices',
  cheque: 'check', cheques: 'checks', pyjamas: 'pajamas', plough: 'plow', tyre: 'tire', tyres: 'tires',
  dialogue: 'dialog', dialogues: 'dialogs', fulfil: 'fulfill', fulfils: 'fulfills', fulfilment: 'fulfillment',
  enrol: 'enroll', enrolment: 'enrollment', instalment: 'installment', skilful: 'skillful', wilful: 'willful',
  yoghurt: 'yogurt', cosy: 'cozy', draughtsman: 'draftsman', speciality: 'specialty',
  optimisation: 'optimization', optimisations: 'optimizations',
}

function build(): Map<string, string> {
  const map = new Map<string, string>()
  for (const stem of IZE_STEMS) for (const [gb, us] of IZE_SUFFIXES) map.set(stem + gb, stem + us)
  for (const stem of OUR_STEMS) for (const suf of OUR_SUFFIXES) map.set(`${stem}our${suf}`, `${stem}or${suf}`)
  for (const [gb, us] of Object.entries(EXPLICIT)) map.set(gb, us)
  return map
}

export const BRITISH_TO_AMERICAN: ReadonlyMap<string, string> = build()

function matchCase(source: string, target: string): string {
  if (source === source.toLowerCase()) return target
  if (source === source.toUpperCase()) return target.toUpperCase()
  if (source[0] === source[0]!.toUpperCase()) return target[0]!.toUpperCase() + target.slice(1)
  return target
}

/** Rewrite British spellings of whole words (letters only), keeping the word's case. */
export function americanise(text: string): string {
  // British spellings are ASCII words of 4+ letters; \b is enough to find them
  return text.replace(/\b[A-Za-z]{4,}\b/g, (word) => {
    const us = BRITISH_TO_AMERICAN.get(word.toLowerCase())
    return us ? matchCase(word, us) : word
  })
}
