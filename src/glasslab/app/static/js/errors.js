// Server errors in the page's words. The server writes its one-line messages for the Python and CLI user
// (request field names, keyword syntax such as align='right'); the page rewrites the kinds a newcomer meets
// into plain words that say what to do with the page's own controls. A message it does not know passes
// through unchanged (it is already one line without a traceback).

// Request fields as the page labels the controls that fill them.
const FIELDS = {
  prompt: 'the prompt',
  clean: 'the prompt',
  corrupted: 'the corrupted prompt',
  target: 'the Target token',
  versus: 'the Versus token',
  max_new_tokens: 'New tokens',
  scales: 'Strengths',
  layer: 'Layer',
  pairs: 'Contrast pairs',
  features: 'Features',
  amounts: 'Values',
  heads: 'the marked heads',
  feature: 'the feature number',
};

const capital = (s) => s[0].toUpperCase() + s.slice(1);

/** One validation message ("field: Input should be ...") as a sentence about the page's control. */
function fieldMessage(field, msg) {
  const name = FIELDS[field.split('.')[0]] ?? field.replace(/_/g, ' ');
  let m;
  if ((m = /should have at most (\d+) characters?/.exec(msg))) return `${capital(name)} is too long: at most ${m[1]} characters. Shorten it.`;
  if ((m = /should have at most (\d+) items?/.exec(msg))) return `${capital(name)}: at most ${m[1]} entries.`;
  if ((m = /should have at least (\d+) items?/.exec(msg))) return `${capital(name)}: give at least ${m[1]}.`;
  if ((m = /should be less than or equal to (-?[\d.]+)/.exec(msg))) return `${capital(name)} must be at most ${m[1]}.`;
  if ((m = /should be greater than or equal to (-?[\d.]+)/.exec(msg))) return `${capital(name)} must be at least ${m[1]}.`;
  if (/should be a valid (integer|number)/.test(msg)) return `${capital(name)} must be a whole number.`;
  if (/Field required/.test(msg)) return `${capital(name)} is missing: fill it in.`;
  return `${capital(name)}: ${msg}`;
}

// Known kinds of message: [pattern, plain sentence(s) from its match].
const KINDS = [
  [/^clean has (\d+) tokens and corrupted (\d+)/, (m) => `The prompt has ${m[1]} tokens and the corrupted prompt ${m[2]}. `
    + 'Patching swaps activations position by position, so both need the same number of tokens: change the corrupted '
    + 'prompt (swap one word for another of the same length, e.g. a name for a name).'],
  [/^versus: the corrupted prompt also predicts the target/, () => 'Both prompts make the model predict the same next token, '
    + 'so there is no difference to measure. Type a Versus token (what the corrupted prompt should favour, e.g. " Rome") '
    + 'or change the corrupted prompt.'],
  [/^(?:params: )?(\w+) must be in 0\.\.(\d+) for (.+), got (-?\d+)$/, (m) => `${capital(FIELDS[m[1]] ?? m[1])} must be between 0 and ${m[2]} `
    + `for ${m[3]} (you gave ${m[4]}).`],
  [/^(?:params: )?(?:the )?prompt is (\d+) tokens; (?:at most (\d+) are read here|this server accepts at most (\d+))/,
    (m) => `The prompt is ${m[1]} tokens, more than the ${m[2] ?? m[3]} this server reads: shorten it.`],
];

/** The server's message in the page's words (unknown messages unchanged). */
export function plain(message) {
  const text = String(message ?? '').trim();
  for (const [pattern, say] of KINDS) {
    const m = pattern.exec(text);
    if (m) return say(m);
  }
  // Validation errors: "field: message; field: message", possibly inside a job's "params: ...".
  const body = text.replace(/^params: /, '');
  const parts = body.split('; ').map((part) => /^([a-z_]+(?:\.\w+)*): (.+)$/.exec(part));
  if (parts.length && parts.every((m) => m && (m[1].split('.')[0] in FIELDS))) {
    return parts.map((m) => fieldMessage(m[1], m[2])).join(' ');
  }
  return text;
}
