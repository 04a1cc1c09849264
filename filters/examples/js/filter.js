// The example user filter in JavaScript (componentize-qjs / QuickJS):
// tags requests with `x-filter-lang: js`, answers the blocked path with 403,
// and counts every request in `requests_total`.
import metrics from "mesh:filter/metrics@0.1.0";

const LANG = "js";
let blockedPath = "/blocked";

// The QuickJS runtime has no TextEncoder/TextDecoder: UTF-8 by hand.
function utf8Encode(text) {
  const out = [];
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return new Uint8Array(out);
}

// Strict decoding: returns null for bytes that are not UTF-8.
function utf8Decode(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i];
    const n = b < 0x80 ? 0 : (b & 0xe0) === 0xc0 ? 1 : (b & 0xf0) === 0xe0 ? 2 : (b & 0xf8) === 0xf0 ? 3 : -1;
    if (n < 0 || i + n >= bytes.length + (n === 0 ? 1 : 0)) return null;
    let c = n === 0 ? b : b & (0x3f >> n);
    for (let j = 1; j <= n; j++) {
      if ((bytes[i + j] & 0xc0) !== 0x80) return null;
      c = (c << 6) | (bytes[i + j] & 0x3f);
    }
    if (c < [0, 0x80, 0x800, 0x10000][n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return null;
    out += String.fromCodePoint(c);
    i += n + 1;
  }
  return out;
}

function parseConfig(bytes) {
  const text = utf8Decode(bytes);
  if (text === null) throw "invalid config: not UTF-8";
  if (text.trim() === "") return { blockedPath: "/blocked" };
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw `invalid config: ${e.message}`;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw "invalid config: expected a JSON object";
  }
  for (const key of Object.keys(value)) {
    if (key !== "blocked_path") throw `invalid config: unknown field \`${key}\`, expected \`blocked_path\``;
  }
  const path = value.blocked_path === undefined ? "/blocked" : value.blocked_path;
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw "invalid config: blocked_path must be a string starting with '/'";
  }
  return { blockedPath: path };
}

export const handler = {
  configure(config) {
    blockedPath = parseConfig(config).blockedPath;
    return {
      hooks: { requestHeaders: true },
      requestBodyLimit: 0,
      responseBodyLimit: 0,
      // Only the path is read: no header is copied into the filter.
      requestHeaders: { tag: "only", val: [] },
      responseHeaders: { tag: "only", val: [] },
    };
  },

  onRequestHeaders(ctx, req) {
    metrics.counterAdd("requests_total", [["lang", LANG]], 1);
    if (req.path === blockedPath) {
      return [{
        tag: "respond",
        val: {
          status: 403,
          headers: [["content-type", "text/plain"]],
          body: utf8Encode(`blocked by ${LANG} filter`),
        },
      }];
    }
    return [{ tag: "add-request-header", val: ["x-filter-lang", LANG] }];
  },

  onRequestBody(ctx, body) { return []; },
  onResponseHeaders(ctx, resp) { return []; },
  onResponseBody(ctx, body) { return []; },
  onAttempt(ctx, attempt) { return { tag: "give-up" }; },
};
