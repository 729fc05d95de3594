// Syntax check of the Julia binding with tree-sitter's Julia grammar (run as
// WebAssembly), because Julia itself cannot be installed on our machines.
// tree-sitter recovers from errors instead of stopping, so every ERROR or
// MISSING node in the tree is a syntax error to report. A self-test first
// parses broken snippets that must be flagged, so a grammar that accepts
// everything fails the check.
// Usage: node check_syntax.cjs FILE.jl...
'use strict';
const fs = require('fs');
const path = require('path');
const { Parser, Language } = require('web-tree-sitter');

function syntaxErrors(parser, src) {
  const errs = [];
  (function walk(n) {
    if (n.type === 'ERROR' || n.isMissing) {
      errs.push(n);
      return;
    }
    for (let i = 0; i < n.childCount; i++) walk(n.child(i));
  })(parser.parse(src).rootNode);
  return errs;
}

const MUST_FAIL = [
  'function f(x)\n    y = [1, 2\n    return y\nend\n',           // unclosed bracket
  'function f(x)\n    if x\n        1\nend\n',                   // missing end
  'g(x) = (x + 1))\n',                                            // stray paren
  'struct S\n    a::Int\n',                                       // unterminated struct
  'try\n    f()\ncatch e\n    1\nfinally\n',                     // unterminated try
];
const MUST_PASS = [
  'function f(x; k=1, kw...)\n    @lock l begin\n        x += 1\n    end\n    return x\nend\n',
  'GC.@preserve a b ccall(wsym(:ws_send), Cint, (Ptr{Cvoid},), p)\n',
];

(async () => {
  await Parser.init();
  const wasm = path.join(path.dirname(require.resolve('tree-sitter-julia/package.json')), 'tree-sitter-julia.wasm');
  const parser = new Parser();
  parser.setLanguage(await Language.load(wasm));
  let ok = true;
  for (const s of MUST_FAIL) {
    if (syntaxErrors(parser, s).length === 0) {
      console.log(`SELF-TEST FAIL: broken snippet accepted: ${JSON.stringify(s)}`);
      ok = false;
    }
  }
  for (const s of MUST_PASS) {
    if (syntaxErrors(parser, s).length !== 0) {
      console.log(`SELF-TEST FAIL: valid snippet rejected: ${JSON.stringify(s)}`);
      ok = false;
    }
  }
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.log('FAIL: no files given');
    ok = false;
  }
  for (const f of files) {
    const src = fs.readFileSync(f, 'utf8');
    const errs = syntaxErrors(parser, src);
    for (const e of errs.slice(0, 20)) {
      const text = src.slice(e.startIndex, Math.min(e.endIndex, e.startIndex + 80)).replace(/\n/g, '\\n');
      console.log(`FAIL: ${f}:${e.startPosition.row + 1}:${e.startPosition.column + 1}: ` +
                  `${e.isMissing ? 'missing ' + e.type : 'syntax error'}: ${text}`);
    }
    if (errs.length) ok = false;
    console.log(`${path.basename(f)}: ${errs.length} syntax errors`);
  }
  process.exit(ok ? 0 : 1);
})().catch((e) => {
  console.log(`FAIL: ${e.stack || e}`);
  process.exit(1);
});
