// The example user filter in JavaScript (componentize-qjs / QuickJS):
// tags requests with `x-filter-lang: js`, answers the blocked path with 403,
// and counts every request in `requests_total`.
import metrics from "mesh:filter/metrics@0.1.0";

const LANG = "js";
let blockedPath = "/blocked";

function parseConfig(bytes) {
  const text = new TextDecoder().decode(bytes);
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
    };
  },

  onRequestHeaders(ctx, req) {
    metrics.counterAdd("requests_total", [["lang", LANG]], 1n);
    if (req.path === blockedPath) {
      return [{
        tag: "respond",
        val: {
          status: 403,
          headers: [["content-type", "text/plain"]],
          body: new TextEncoder().encode(`blocked by ${LANG} filter`),
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
