// Validates every document of a multi-document Kubernetes YAML file (argv[2]) against the
// schemas of kubernetes-models, by apiVersion and kind. Prints one JSON line per document:
//   {"kind": "DaemonSet", "name": "threadline", "ok": true}  or  {..., "ok": false, "error": "..."}
// and exits 1 when any document is invalid or of a kind it cannot check.
'use strict';
const fs = require('fs');
const YAML = require('yaml');

function modelFor(apiVersion, kind) {
  // v1 -> kubernetes-models/v1/Kind; apps/v1 -> kubernetes-models/apps/v1/Kind
  const path = `kubernetes-models/${apiVersion}/${kind}`;
  const mod = require(path);
  if (!mod[kind]) throw new Error(`${path} does not export ${kind}`);
  return mod[kind];
}

let failed = false;
const docs = YAML.parseAllDocuments(fs.readFileSync(process.argv[2], 'utf8'));
for (const doc of docs) {
  if (doc.errors.length) {
    console.log(JSON.stringify({ok: false, error: 'YAML: ' + doc.errors.map(String).join('; ')}));
    failed = true;
    continue;
  }
  const obj = doc.toJSON();
  if (obj === null) continue;
  const out = {kind: obj.kind, name: obj.metadata && obj.metadata.name};
  try {
    const Model = modelFor(obj.apiVersion, obj.kind);
    new Model(obj).validate();
    out.ok = true;
  } catch (e) {
    out.ok = false;
    out.error = String(e && e.message || e);
    failed = true;
  }
  console.log(JSON.stringify(out));
}
process.exit(failed ? 1 : 0);
