// vmplane console: YAML for the editor, emit only (the server parses what is sent back). Strings
// that YAML could read as anything else are double-quoted (JSON strings are YAML scalars).

const RESERVED = /^(true|false|yes|no|on|off|null|y|n|~)$/i;
function yamlString(s) {
  const plain = /^[A-Za-z_/][A-Za-z0-9_./-]*$/.test(s) || /^\d+(\.\d+)?[A-Za-z]+$/.test(s);
  return plain && !RESERVED.test(s) ? s : JSON.stringify(s);
}
function yamlInline(v) {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "[]";
  if (typeof v === "object") return "{}";
  if (typeof v === "string") return yamlString(v);
  return String(v);
}
function isBlock(v) { return v !== null && typeof v === "object" && Object.keys(v).length > 0; }
function yamlBlock(v, indent, out) {
  if (Array.isArray(v)) {
    for (const item of v) {
      if (isBlock(item)) {
        const sub = [];
        yamlBlock(item, indent + "  ", sub);
        sub[0] = `${indent}- ${sub[0].slice(indent.length + 2)}`;
        out.push(...sub);
      } else out.push(`${indent}- ${yamlInline(item)}`);
    }
    return;
  }
  for (const [k, val] of Object.entries(v)) {
    if (isBlock(val)) {
      out.push(`${indent}${yamlString(k)}:`);
      yamlBlock(val, Array.isArray(val) ? indent : indent + "  ", out);
    } else out.push(`${indent}${yamlString(k)}: ${yamlInline(val)}`);
  }
}
export function toYaml(v) { const out = []; yamlBlock(v, "", out); return out.join("\n") + "\n"; }
