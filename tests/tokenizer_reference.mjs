// Encodes texts with transformers.js's tokenizers (the @lenml/tokenizers
// package, fetched by packaging/fetch-test-data.sh): the independent
// reference test_tokenizer compares our encodings with.
//   node tokenizer_reference.mjs LENML_TOKENIZERS_DIR TOKENIZER_DIR TEXTS.json
// TEXTS.json is an array of strings; prints one JSON array of id arrays,
// each text encoded as Transformers' encode(add_special_tokens=False) does
// (added special tokens in the text are matched).
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [libDir, tokenizerDir, textsFile] = process.argv.slice(2);
const { TokenizerLoader } = await import(pathToFileURL(join(resolve(libDir), 'dist', 'main.mjs')).href);
const read = (name) => JSON.parse(readFileSync(join(tokenizerDir, name), 'utf8'));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: read('tokenizer.json'),
  tokenizerConfig: read('tokenizer_config.json'),
});
const texts = JSON.parse(readFileSync(textsFile, 'utf8'));
process.stdout.write(JSON.stringify(texts.map((t) => tokenizer.encode(t, { add_special_tokens: false }))) + '\n');
