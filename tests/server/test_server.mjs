// moe-cli serve driven by the official OpenAI client for Node.js (the `openai`
// npm package, fetched by packaging/fetch-test-data.sh) and by curl, on a free
// loopback port: models, chat and text completions streamed and not, every
// error case with its status, an aborted stream, the API key, a load of 16
// clients x 10 requests, a built MoE's expert usage, and a model quantized on
// load (--quantize), chat_template_kwargs (Qwen3's enable_thinking).
//   node test_server.mjs MOE_CLI MODELS_DIR OPENAI_MODULE_DIR
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readdirSync, symlinkSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import assert from 'node:assert/strict';

const [moeCli, modelsDir, openaiDir] = process.argv.slice(2);
if (!existsSync(join(openaiDir, 'index.mjs'))) {
  // Without the fetched client: skipped (77), or failed where test data is required.
  console.log(`SKIP: no openai package in ${openaiDir} (run packaging/fetch-test-data.sh)`);
  process.exit(process.env.MOE_REQUIRE_TESTDATA === '1' ? 1 : 77);
}
const { default: OpenAI } = await import(pathToFileURL(join(resolvePath(openaiDir), 'index.mjs')).href);
const work = mkdtempSync(join(tmpdir(), 'moe-server-test-'));
const servers = [];
let failed = false;

function startServer(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(moeCli, ['serve', '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    servers.push(child);
    let log = '';
    const timer = setTimeout(() => reject(new Error('the server did not start:\n' + log)), 120000);
    child.stderr.on('data', (d) => {
      log += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(log);
      if (m && !child.url) {
        clearTimeout(timer);
        child.url = m[1];
        resolve(child);
      }
    });
    child.on('exit', (code) => reject(new Error(`the server exited (${code}):\n${log}`)));
    child.logText = () => log;
  });
}

const curl = (args) => new Promise((resolve) => {
  execFile('curl', ['-s', '-w', '\n%{http_code}', ...args], { maxBuffer: 1 << 24 }, (err, out) => {
    const i = out.lastIndexOf('\n');
    resolve({ status: Number(out.slice(i + 1)), body: out.slice(0, i) });
  });
});
const health = async (url) => (await fetch(url + '/health')).json();
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

async function expectApiError(promise, status, param) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.equal(e.status, status, e.message);
    if (param !== undefined) assert.equal(e.param, param, e.message);
    assert.ok(e.error && typeof e.error.message === 'string' && e.error.message.length > 0);
    return e;
  }
  assert.fail(`expected HTTP ${status}`);
}

async function collect(stream) {
  let text = '', finish = null, role = null, usage = null, moe = null, chunks = 0;
  for await (const c of stream) {
    ++chunks;
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      if (ch.delta?.role) role = ch.delta.role;
      text += ch.delta ? (ch.delta.content ?? '') : ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    if (c.moe) moe = c.moe;
  }
  return { text, finish, role, usage, moe, chunks };
}

async function test(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`PASS ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed = true;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

try {
  const key = 'sk-test-' + Math.random().toString(36).slice(2);
  const dense = await startServer(['--model', join(modelsDir, 'base'), '--api-key', key, '--parallel', '4', '--ctx', '256']);
  const client = new OpenAI({ apiKey: key, baseURL: dense.url + '/v1', maxRetries: 0, timeout: 60000 });
  const ask = { model: 'base', messages: [{ role: 'user', content: 'import os' }], max_tokens: 12, temperature: 0 };

  await test('lists the served model', async () => {
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['base']);
    assert.equal((await client.models.retrieve('base')).id, 'base');
  });

  await test('chat completion, streamed and not: the same text at temperature 0', async () => {
    const r = await client.chat.completions.create(ask);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.ok(r.choices[0].message.content.length > 0);
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 12);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    const s = await collect(await client.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } }));
    assert.equal(s.role, 'assistant');
    assert.equal(s.text, r.choices[0].message.content);
    assert.equal(s.finish, r.choices[0].finish_reason);
    assert.deepEqual(s.usage, r.usage);
    assert.equal(r.moe, undefined); // a dense model has no MoE extension
  });

  await test('text completion, streamed and not; stop strings', async () => {
    const q = { model: 'base', prompt: 'def main():', max_tokens: 10, temperature: 0 };
    const r = await client.completions.create(q);
    assert.equal(r.object, 'text_completion');
    assert.ok(r.choices[0].text.length > 0);
    const s = await collect(await client.completions.create({ ...q, stream: true }));
    assert.equal(s.text, r.choices[0].text);
    // A stop string taken from the reply itself cuts it there.
    const text = r.choices[0].text;
    const stop = text.trim().slice(0, 2);
    if (stop.length === 2) {
      const cut = await client.completions.create({ ...q, stop: [stop] });
      assert.equal(cut.choices[0].text, text.slice(0, text.indexOf(stop)));
      assert.equal(cut.choices[0].finish_reason, 'stop');
    }
  });

  await test('errors: status, OpenAI shape, the field named; the server answers afterwards', async () => {
    let e = await expectApiError(client.chat.completions.create({ ...ask, model: 'gpt-4o' }), 404, 'model');
    assert.equal(e.code, 'model_not_found');
    await expectApiError(client.chat.completions.create({ ...ask, temperature: 3 }), 400, 'temperature');
    await expectApiError(client.chat.completions.create({ ...ask, max_tokens: 'many' }), 400, 'max_tokens');
    await expectApiError(client.chat.completions.create({ ...ask, messages: [] }), 400, 'messages');
    await expectApiError(client.chat.completions.create({ ...ask, messages: [{ role: 'tool', content: 'x' }] }), 400,
      'messages[0].role');
    await expectApiError(client.chat.completions.create({ ...ask, n: 2 }), 400, 'n');
    await expectApiError(client.chat.completions.create({ ...ask, routing: 'likelihood' }), 400, 'routing');
    const long = 'word '.repeat(400); // more tokens than --ctx 256
    e = await expectApiError(client.chat.completions.create({ ...ask, messages: [{ role: 'user', content: long }] }), 400,
      'messages');
    assert.match(e.message, /context/);
    await expectApiError(client.completions.create({ model: 'base', prompt: long, stream: true }), 400, 'prompt');
    await expectApiError(new OpenAI({ apiKey: 'wrong', baseURL: dense.url + '/v1', maxRetries: 0 }).models.list(), 401);
    const auth = ['-H', `Authorization: Bearer ${key}`, '-H', 'Content-Type: application/json'];
    let c = await curl([...auth, '-d', '{"model": "base", "messages": [', dense.url + '/v1/chat/completions']);
    assert.equal(c.status, 400);
    assert.equal(JSON.parse(c.body).error.code, 'invalid_json');
    writeFileSync(join(work, 'big.json'), JSON.stringify({ model: 'base', prompt: 'x'.repeat(5 << 20) }));
    c = await curl([...auth, '--data-binary', '@' + join(work, 'big.json'), dense.url + '/v1/completions']);
    assert.equal(c.status, 413);
    assert.equal(JSON.parse(c.body).error.code, 'request_too_large');
    c = await curl([dense.url + '/v1/models']);
    assert.equal(c.status, 401);
    assert.equal(JSON.parse(c.body).error.type, 'authentication_error');
    c = await curl([...auth, dense.url + '/v1/nothing']);
    assert.equal(c.status, 404);
    // curl sees the same event stream the client parsed.
    c = await curl(['-N', ...auth, '-d', JSON.stringify({ ...ask, stream: true }), dense.url + '/v1/chat/completions']);
    assert.equal(c.status, 200);
    const events = c.body.split('\n\n').filter((x) => x).map((x) => x.replace(/^data: /, ''));
    assert.equal(events.at(-1), '[DONE]');
    assert.ok(JSON.parse(events.at(-2)).choices[0].finish_reason);
    assert.equal((await client.chat.completions.create(ask)).choices.length, 1);
    assert.equal(dense.logText().includes(key), false); // the key is never logged
  });

  await test('chat_template_kwargs: enable_thinking false renders Qwen3\'s empty think block', async () => {
    // The base's weights and tokenizer with Qwen3's real chat template
    // (chat_template.jinja takes precedence over tokenizer_config.json).
    const qwen3Config = join(openaiDir, '..', '..', '..', 'qwen3', 'tokenizer_config.json');
    assert.ok(existsSync(qwen3Config), 'no ' + qwen3Config + ' (run packaging/fetch-test-data.sh)');
    const dir = join(work, 'qwen3-template');
    mkdirSync(dir);
    for (const f of readdirSync(join(modelsDir, 'base'))) symlinkSync(join(modelsDir, 'base', f), join(dir, f));
    writeFileSync(join(dir, 'chat_template.jinja'), JSON.parse(readFileSync(qwen3Config, 'utf8')).chat_template);
    const server = await startServer(['--model', dir, '--parallel', '1', '--ctx', '256']);
    const c = new OpenAI({ apiKey: 'none', baseURL: server.url + '/v1', maxRetries: 0 });
    const q = { model: 'qwen3-template', messages: [{ role: 'user', content: 'import os' }], max_tokens: 1, temperature: 0 };
    const thinking = (await c.chat.completions.create(q)).usage.prompt_tokens;
    const on = (await c.chat.completions.create({ ...q, chat_template_kwargs: { enable_thinking: true } })).usage.prompt_tokens;
    const off = (await c.chat.completions.create({ ...q, chat_template_kwargs: { enable_thinking: false } })).usage.prompt_tokens;
    assert.equal(on, thinking);
    assert.ok(off > thinking, `enable_thinking false: ${off} prompt tokens, default ${thinking}`);
    // Streamed: the same prompt.
    const streamed = await collect(await c.chat.completions.create({ ...q, stream: true, stream_options: { include_usage: true },
      chat_template_kwargs: { enable_thinking: false } }));
    assert.equal(streamed.usage.prompt_tokens, off);
    await expectApiError(c.chat.completions.create({ ...q, chat_template_kwargs: { enable_thinking: [false] } }), 400,
      'chat_template_kwargs.enable_thinking');
    await expectApiError(c.chat.completions.create({ ...q, chat_template_kwargs: 'no-think' }), 400, 'chat_template_kwargs');
    await expectApiError(c.chat.completions.create({ ...q, chat_template_kwargs: { messages: [] } }), 400,
      'chat_template_kwargs.messages');
    let e = await expectApiError(c.chat.completions.create({ ...q, chat_template_kwargs: { bos_token: 'x' } }), 400, 'messages');
    assert.match(e.message, /bos_token/);
    await expectApiError(c.completions.create({ model: 'qwen3-template', prompt: 'x', chat_template_kwargs: { enable_thinking: false } }),
      400, 'chat_template_kwargs');
    server.kill('SIGTERM');
  });

  await test('an aborted stream frees its slot at once', async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create({ ...ask, max_tokens: 200, stream: true },
      { signal: controller.signal });
    let n = 0;
    try {
      for await (const c of stream) if (++n === 2) controller.abort();
    } catch (e) { /* the abort */ }
    const t0 = Date.now();
    let h;
    while ((h = await health(dense.url)).slots_idle !== h.slots_total) {
      assert.ok(Date.now() - t0 < 10000, 'slot still busy: ' + JSON.stringify(h));
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(dense.logText().includes('client went away'));
    assert.equal((await client.chat.completions.create(ask)).choices.length, 1);
  });

  await test('load: 16 clients x 10 requests, all well-formed, nothing lost, no slot leaked, memory flat', async () => {
    const one = async (i, j) => {
      const q = { ...ask, max_tokens: 6, temperature: 0.7, seed: i * 100 + j + 1,
        messages: [{ role: 'user', content: `client ${i} request ${j}: import` }] };
      if (j % 2) {
        const s = await collect(await client.chat.completions.create({ ...q, stream: true }));
        assert.ok(s.finish && s.role === 'assistant');
        return 1;
      }
      const r = await client.chat.completions.create(q);
      assert.ok(r.choices[0].finish_reason && typeof r.choices[0].message.content === 'string');
      assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 6);
      return 1;
    };
    const round = async () => {
      const t0 = Date.now();
      const done = await Promise.all(Array.from({ length: 16 }, async (_, i) => {
        let n = 0;
        for (let j = 0; j < 10; ++j) n += await one(i, j);
        return n;
      }));
      assert.equal(done.reduce((a, b) => a + b), 160);
      return (Date.now() - t0) / 1000;
    };
    const before = (await health(dense.url)).requests_served;
    const first = await round();
    const rss1 = rssKiB(dense.pid);
    const second = await round();
    const rss2 = rssKiB(dense.pid);
    console.log(`  load: 160 requests in ${first.toFixed(1)} s, again in ${second.toFixed(1)} s; RSS ${rss1} -> ${rss2} KiB`);
    assert.ok(first < 300 && second < 300, 'too slow');
    const h = await health(dense.url);
    assert.equal(h.requests_served - before, 320);
    assert.equal(h.slots_idle, 4);
    assert.equal(h.requests_queued, 0);
    // Flat: the second identical round grows the process by less than 16 MiB.
    assert.ok(rss2 - rss1 < 16 * 1024, `memory grew ${rss2 - rss1} KiB`);
  });

  await test('a built MoE: expert usage adds up to the tokens routed; per-request routing', async () => {
    const m = modelsDir;
    const sel = join(work, 'moe.toml');
    writeFileSync(sel, `[model]\nmodel_id = "${m}/base"\n\n[anymoe]\ndataset_json = "${m}/amoe.json"\n` +
      `model_ids = ["${m}/lora-code", "${m}/lora-legal", "${m}/lora-tech"]\nlayers = [1, 3]\n\n` +
      `[anymoe.config]\nepochs = 2\nbatch_size = 8\nexpert_type = "lora_adapter"\nrouting = "running"\n`);
    await new Promise((resolve, reject) => execFile(moeCli, ['build', sel, '--json'], { maxBuffer: 1 << 24 },
      (err, out, errText) => (err ? reject(new Error(errText)) : resolve(out))));
    const moe = await startServer(['--selector', sel, '--parallel', '2']);
    const mc = new OpenAI({ apiKey: 'none', baseURL: moe.url + '/v1', maxRetries: 0 });
    const q = { model: 'moe', messages: [{ role: 'user', content: 'def main():' }], max_tokens: 6, temperature: 0 };
    const r = await mc.chat.completions.create(q);
    assert.equal(r.moe.routing, 'running');
    assert.equal(r.moe.experts_per_token, 2);
    assert.equal(r.moe.expert_usage.length, 2);
    // Routed: every reply token forwarded, which is all but a last one cut by the limit.
    const c = r.usage.completion_tokens;
    assert.equal(r.moe.routed_tokens, r.choices[0].finish_reason === 'length' ? c - 1 : c);
    for (const layer of r.moe.expert_usage) {
      assert.equal(layer.tokens.length, r.moe.experts.length);
      assert.equal(layer.tokens.reduce((a, b) => a + b, 0), 2 * r.moe.routed_tokens);
    }
    const s = await collect(await mc.chat.completions.create({ ...q, stream: true }));
    assert.equal(s.text, r.choices[0].message.content);
    assert.deepEqual(s.moe.expert_usage, r.moe.expert_usage);
    // Likelihood routing for one request: its pick and every candidate's loss.
    const legal = await mc.chat.completions.create({ ...q, routing: 'likelihood',
      messages: [{ role: 'user', content: 'Permission is hereby granted, free of charge, to any person obtaining a copy' }] });
    assert.equal(legal.moe.routing, 'likelihood');
    assert.equal(Object.keys(legal.moe.likelihood.prompt_loss).length, 4); // 3 experts + the base
    assert.equal(legal.moe.likelihood.pick, 'lora-legal');
    assert.equal((await mc.chat.completions.create(q)).moe.routing, 'running'); // the server's mode again
  });

  await test('a port another server listens on is refused', async () => {
    const port = new URL(dense.url).port;
    const second = await new Promise((resolve) => execFile(moeCli, ['serve', '--model', join(modelsDir, 'base'),
      '--port', port], (err, out, errText) => resolve({ code: err ? err.code : 0, errText })));
    assert.equal(second.code, 1);
    assert.match(second.errText, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}`));
    assert.equal((await health(dense.url)).status, 'ok'); // the first one serves on
  });

  await test('--quantize: a model quantized on load answers as generate --quantize does', async () => {
    const prompt = 'def main():';
    for (const scheme of ['q8_0', 'q4_k']) {
      const qs = await startServer(['--model', join(modelsDir, 'base'), '--quantize', scheme, '--parallel', '1']);
      assert.match(qs.logText(), new RegExp(`weights quantized on load: ${scheme} `));
      const qc = new OpenAI({ apiKey: 'none', baseURL: qs.url + '/v1', maxRetries: 0, timeout: 60000 });
      const r = await qc.completions.create({ model: 'base', prompt, max_tokens: 8, temperature: 0, repeat_penalty: 1 });
      const gen = JSON.parse(await new Promise((resolve, reject) => execFile(moeCli,
        ['generate', '--model', join(modelsDir, 'base'), '--prompt', prompt, '--temperature', '0', '--repeat-penalty', '1',
          '-n', '8', '--quantize', scheme, '--json'], { maxBuffer: 1 << 24 },
        (err, out, errText) => (err ? reject(new Error(errText)) : resolve(out)))));
      assert.ok(r.choices[0].text.length > 0, scheme);
      assert.equal(r.choices[0].text, gen.text, scheme);
      assert.equal(r.usage.completion_tokens, gen.token_ids.length, scheme);
      assert.equal(r.usage.prompt_tokens, gen.prompt_tokens, scheme);
      qs.kill('SIGTERM');
    }
    // A scheme it does not know: exit 1 naming the option.
    const bad = await new Promise((resolve) => execFile(moeCli, ['serve', '--model', join(modelsDir, 'base'),
      '--port', '0', '--quantize', 'q3_k'], (err, out, errText) => resolve({ code: err ? err.code : 0, errText })));
    assert.equal(bad.code, 1);
    assert.match(bad.errText, /--quantize q3_k/);
  });
} catch (e) {
  failed = true;
  console.log('FAIL: ' + (e.stack || e));
} finally {
  for (const s of servers) s.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
