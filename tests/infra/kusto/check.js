// Checks KQL offline with Microsoft's Kusto language service (@kusto/language-service-next) against
// the columns of the Azure Monitor tables in tables.json: syntax, names of tables, columns and functions.
//
// stdin: {"functions": [{"name", "body"}], "queries": [{"id", "text"}]}
// stdout: {"<id>": ["<severity> <code> at <offset> (<text there>): <message>", ...]} (offsets in the
// text as analysed, workspace() calls replaced) for every query
// and every function body (id "function:<name>"); an empty list means no diagnostic.
//
// The language service knows Azure Data Explorer's database("name"), not Log Analytics'
// workspace("resource id"), which names another workspace the same way; every workspace("...")
// is read as the one database that holds the tables of tables.json.
'use strict';
const fs = require('fs');
const path = require('path');
require('@kusto/language-service-next/bridge.js');
require('@kusto/language-service-next');

const K = Kusto.Language;
const S = K.Symbols;
const DATABASE = 'workspace';
const WORKSPACE_CALL = /\bworkspace\s*\(\s*(["'])[^"']*\1\s*\)/g;

function tableSymbols() {
  const spec = JSON.parse(fs.readFileSync(path.join(__dirname, 'tables.json'), 'utf8'));
  return Object.entries(spec.tables).map(([name, table]) => {
    const schema = Object.entries(table.columns).map(([column, type]) => `['${column}']:${type}`).join(', ');
    return new S.TableSymbol.$ctor7(name, `(${schema})`, null);
  });
}

function functionSymbol(fn) {
  return new S.FunctionSymbol.$ctor16(fn.name, fn.parameters || '()', `{\n${fn.body}\n}`, null);
}

function diagnostics(text, globals) {
  const analysed = text.replace(WORKSPACE_CALL, `database("${DATABASE}")`);
  const code = K.KustoCode.ParseAndAnalyze(analysed, globals);
  const found = code.GetDiagnostics();
  const out = [];
  for (let i = 0; i < found.Count; i++) {
    const d = found.getItem(i);
    const at = analysed.slice(d.Start, d.Start + Math.max(d.Length, 1));
    out.push(`${d.Severity} ${d.Code} at ${d.Start} (${JSON.stringify(at)}): ${d.Message}`);
  }
  return out;
}

function main() {
  const input = JSON.parse(fs.readFileSync(0, 'utf8'));
  const functions = input.functions || [];
  const database = new S.DatabaseSymbol.$ctor1(DATABASE, [...tableSymbols(), ...functions.map(functionSymbol)], false);
  const globals = K.GlobalState.Default.WithDatabase(database);
  const result = {};
  for (const fn of functions) {
    result[`function:${fn.name}`] = diagnostics(fn.body, globals);
  }
  for (const query of input.queries || []) {
    result[query.id] = diagnostics(query.text, globals);
  }
  process.stdout.write(JSON.stringify(result));
}

main();
