// A small strict JSON (RFC 8259) reader, just enough to validate the example
// filter's configuration: the whole document is checked for syntax, then the
// top level must be an object whose only key is "blocked_path" (a string
// starting with '/').

#include "json_config.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

// Message building without stdio: printf would pull in WASI `fd_write`, and
// a filter without any WASI import needs no adapter at all.
typedef struct {
  char *buf;
  size_t size, len;
} msg;

static void put(msg *m, const char *s) {
  while (*s && m->len + 1 < m->size) m->buf[m->len++] = *s++;
  if (m->size) m->buf[m->len] = 0;
}

static void put_num(msg *m, size_t v) {
  char digits[24];
  size_t n = 0;
  do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  char out[24];
  for (size_t i = 0; i < n; i++) out[i] = digits[n - 1 - i];
  out[n] = 0;
  put(m, out);
}

typedef struct {
  const uint8_t *p, *end, *start;
  const char *error;  // first syntax error
} reader;

static void fail(reader *r, const char *what) {
  if (!r->error) r->error = what;
}

static void skip_ws(reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static bool literal(reader *r, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) {
    fail(r, "unexpected token");
    return false;
  }
  r->p += n;
  return true;
}

static int hex4(const uint8_t *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    int c = p[i], d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

static size_t put_utf8(char *out, uint32_t cp) {
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

// Reads a string at r->p (which is '"'); returns it malloc'd and
// NUL-terminated (NULL on error). Embedded NULs are kept in `*len`.
static char *read_string(reader *r, size_t *len) {
  r->p++;  // opening quote
  // Decoded output is never longer than the escaped input.
  char *out = malloc((size_t)(r->end - r->p) + 1);
  size_t n = 0;
  while (r->p < r->end && *r->p != '"') {
    uint8_t c = *r->p;
    if (c < 0x20) { fail(r, "control character in string"); free(out); return NULL; }
    if (c != '\\') { out[n++] = (char)c; r->p++; continue; }
    if (r->end - r->p < 2) break;
    uint8_t e = r->p[1];
    r->p += 2;
    switch (e) {
      case '"': out[n++] = '"'; break;
      case '\\': out[n++] = '\\'; break;
      case '/': out[n++] = '/'; break;
      case 'b': out[n++] = '\b'; break;
      case 'f': out[n++] = '\f'; break;
      case 'n': out[n++] = '\n'; break;
      case 'r': out[n++] = '\r'; break;
      case 't': out[n++] = '\t'; break;
      case 'u': {
        int hi = r->end - r->p >= 4 ? hex4(r->p) : -1;
        if (hi < 0) { fail(r, "invalid \\u escape"); free(out); return NULL; }
        r->p += 4;
        uint32_t cp = (uint32_t)hi;
        if (hi >= 0xD800 && hi <= 0xDBFF) {
          int lo = (r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u') ? hex4(r->p + 2) : -1;
          if (lo < 0xDC00 || lo > 0xDFFF) { fail(r, "unpaired surrogate"); free(out); return NULL; }
          r->p += 6;
          cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
        } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
          fail(r, "unpaired surrogate"); free(out); return NULL;
        }
        n += put_utf8(out + n, cp);
        break;
      }
      default: fail(r, "invalid escape"); free(out); return NULL;
    }
  }
  if (r->p >= r->end) { fail(r, "unterminated string"); free(out); return NULL; }
  r->p++;  // closing quote
  out[n] = 0;
  *len = n;
  return out;
}

static void skip_number(reader *r) {
  const uint8_t *s = r->p;
  if (r->p < r->end && *r->p == '-') r->p++;
  if (r->p < r->end && *r->p == '0') r->p++;
  else if (r->p < r->end && *r->p >= '1' && *r->p <= '9') while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
  else { fail(r, "invalid number"); return; }
  if (r->p < r->end && *r->p == '.') {
    r->p++;
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') { fail(r, "invalid number"); return; }
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
  }
  if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
    r->p++;
    if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') { fail(r, "invalid number"); return; }
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
  }
  if (r->p == s) fail(r, "invalid number");
}

// Validates one value; when `str` is non-NULL and the value is a string,
// stores it there (malloc'd). Returns the value's first byte (0 on error).
static uint8_t value(reader *r, int depth, char **str) {
  skip_ws(r);
  if (r->p >= r->end) { fail(r, "unexpected end of input"); return 0; }
  if (depth > MAX_DEPTH) { fail(r, "nesting too deep"); return 0; }
  uint8_t c = *r->p;
  size_t len;
  switch (c) {
    case '{': case '[': {
      uint8_t close = c == '{' ? '}' : ']';
      r->p++;
      skip_ws(r);
      if (r->p < r->end && *r->p == close) { r->p++; return c; }
      for (;;) {
        if (c == '{') {
          skip_ws(r);
          if (r->p >= r->end || *r->p != '"') { fail(r, "expected a string key"); return 0; }
          char *key = read_string(r, &len);
          if (!key) return 0;
          free(key);
          skip_ws(r);
          if (r->p >= r->end || *r->p != ':') { fail(r, "expected ':'"); return 0; }
          r->p++;
        }
        if (!value(r, depth + 1, NULL)) return 0;
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') { r->p++; continue; }
        if (r->p < r->end && *r->p == close) { r->p++; return c; }
        fail(r, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        return 0;
      }
    }
    case '"': {
      char *s = read_string(r, &len);
      if (!s) return 0;
      if (str && strlen(s) == len) *str = s; else free(s);
      return c;
    }
    case 't': return literal(r, "true") ? c : 0;
    case 'f': return literal(r, "false") ? c : 0;
    case 'n': return literal(r, "null") ? c : 0;
    default:
      skip_number(r);
      return r->error ? 0 : '0';
  }
}

static bool valid_utf8(const uint8_t *s, size_t n) {
  static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t k;
    uint32_t cp;
    if (c < 0x80) { i++; continue; }
    if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; }
    else return false;
    if (n - i <= k) return false;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return false;
      cp = cp << 6 | (s[i + j] & 0x3F);
    }
    if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += k + 1;
  }
  return true;
}

bool parse_example_config(const uint8_t *data, size_t len, char **path, char *message,
                          size_t message_size) {
  reader r = {data, data + len, data, NULL};
  *path = NULL;
  skip_ws(&r);
  if (r.p == r.end) return true;  // no configuration: defaults
  msg out = {message, message_size, 0};
  put(&out, "invalid config: ");
  if (!valid_utf8(data, len)) {
    put(&out, "not UTF-8");
    return false;
  }
  char semantic_buf[120] = "";
  msg semantic = {semantic_buf, sizeof semantic_buf, 0};
  if (*r.p != '{') {
    if (value(&r, 0, NULL)) put(&semantic, "expected a JSON object");
  } else {
    // Walk the top-level object ourselves to see its keys and values.
    r.p++;
    skip_ws(&r);
    bool first = true;
    while (!r.error) {
      skip_ws(&r);
      if (first && r.p < r.end && *r.p == '}') { r.p++; break; }
      first = false;
      if (r.p >= r.end || *r.p != '"') { fail(&r, "expected a string key"); break; }
      size_t klen;
      char *key = read_string(&r, &klen);
      if (!key) break;
      skip_ws(&r);
      if (r.p >= r.end || *r.p != ':') { free(key); fail(&r, "expected ':'"); break; }
      r.p++;
      bool is_path = strcmp(key, "blocked_path") == 0 && strlen(key) == klen;
      if (!is_path && !semantic.len) {
        put(&semantic, "unknown field `");
        put(&semantic, key);
        put(&semantic, "`, expected `blocked_path`");
      }
      free(key);
      char *s = NULL;
      uint8_t kind = value(&r, 1, is_path ? &s : NULL);
      if (is_path && kind) {
        free(*path);
        *path = NULL;
        if (kind != '"' || !s || s[0] != '/') {
          free(s);
          if (!semantic.len) put(&semantic, "blocked_path must be a string starting with '/'");
        } else {
          *path = s;
        }
      }
      skip_ws(&r);
      if (r.p < r.end && *r.p == ',') { r.p++; continue; }
      if (r.p < r.end && *r.p == '}') { r.p++; break; }
      fail(&r, "expected ',' or '}'");
    }
  }
  if (!r.error) {
    skip_ws(&r);
    if (r.p != r.end) fail(&r, "trailing characters");
  }
  if (r.error || semantic.len) {
    free(*path);
    *path = NULL;
    if (r.error) {
      put(&out, r.error);
      put(&out, " at byte ");
      put_num(&out, (size_t)(r.p - r.start));
    } else {
      put(&out, semantic_buf);
    }
    return false;
  }
  return true;
}
