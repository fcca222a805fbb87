// Validates prometheus-operator resources (ServiceMonitor, PrometheusRule) against the JSON schemas
// generated from the operator's CRDs by @kubernetes-models/prometheus-operator.
// Usage: node validate_crds.mjs MODELS_DIR < documents.json   (a JSON array of manifests)
// Prints one line per document; exits 1 if any is invalid or of a kind it cannot check.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modelsDir = process.argv[2];
const kinds = ["ServiceMonitor", "PrometheusRule"];
const models = {};
for (const kind of kinds) {
  const file = join(modelsDir, "monitoring.coreos.com", "v1", `${kind}.js`);
  models[kind] = (await import(pathToFileURL(file).href))[kind];
}

const documents = JSON.parse(readFileSync(0, "utf8"));
let failed = false;
for (const doc of documents) {
  const name = `${doc.kind}/${doc.metadata?.name}`;
  const Model = doc.apiVersion === "monitoring.coreos.com/v1" ? models[doc.kind] : undefined;
  if (!Model) {
    console.log(`UNKNOWN ${name} (${doc.apiVersion})`);
    failed = true;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`VALID ${name}`);
  } catch (error) {
    console.log(`INVALID ${name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
