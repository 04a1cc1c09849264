// The example user filter in C (clang + wasi-libc + `wit-bindgen c`): tags
// requests with `x-filter-lang: c`, answers the blocked path with 403, and
// counts every request in `requests_total`.
//
// Ownership (wit-bindgen C): arguments of exported functions belong to us and
// are freed here; everything we return is freed by the generated
// post-return functions, so returned strings and lists are malloc'd
// (`*_string_dup`). Arguments we pass to imports stay ours.

#include <stdlib.h>
#include <string.h>

#include "example_filter.h"
#include "json_config.h"

#define LANG "c"

static char *blocked_path = NULL;

static const char *current_blocked_path(void) {
  return blocked_path ? blocked_path : DEFAULT_BLOCKED_PATH;
}

bool exports_mesh_filter_handler_configure(example_filter_list_u8_t *config,
                                           exports_mesh_filter_handler_filter_info_t *ret,
                                           example_filter_string_t *err) {
  char *path = NULL;
  char message[160];
  bool ok = parse_example_config(config->ptr, config->len, &path, message, sizeof message);
  example_filter_list_u8_free(config);
  if (!ok) {
    example_filter_string_dup(err, message);
    return false;
  }
  free(blocked_path);
  blocked_path = path;
  ret->hooks = MESH_FILTER_TYPES_HOOKS_REQUEST_HEADERS;
  ret->request_body_limit = 0;
  ret->response_body_limit = 0;
  // Only the path is read: no header is copied into the filter.
  ret->request_headers.tag = MESH_FILTER_TYPES_HEADER_SELECTION_ONLY;
  ret->request_headers.val.only.ptr = NULL;
  ret->request_headers.val.only.len = 0;
  ret->response_headers.tag = MESH_FILTER_TYPES_HEADER_SELECTION_ONLY;
  ret->response_headers.val.only.ptr = NULL;
  ret->response_headers.val.only.len = 0;
  return true;
}

static bool string_equals(const example_filter_string_t *s, const char *c) {
  size_t n = strlen(c);
  return s->len == n && memcmp(s->ptr, c, n) == 0;
}

static void count_request(void) {
  example_filter_string_t name, key, value;
  example_filter_string_set(&name, "requests_total");
  example_filter_string_set(&key, "lang");
  example_filter_string_set(&value, LANG);
  example_filter_tuple2_string_string_t label = {key, value};
  example_filter_list_tuple2_string_string_t labels = {&label, 1};
  mesh_filter_metrics_counter_add(&name, &labels, 1);
}

static void respond_blocked(exports_mesh_filter_handler_action_t *action) {
  static const char body[] = "blocked by " LANG " filter";
  action->tag = MESH_FILTER_TYPES_ACTION_RESPOND;
  mesh_filter_types_local_response_t *r = &action->val.respond;
  r->status = 403;
  r->headers.len = 1;
  r->headers.ptr = malloc(sizeof *r->headers.ptr);
  example_filter_string_dup(&r->headers.ptr[0].f0, "content-type");
  example_filter_string_dup(&r->headers.ptr[0].f1, "text/plain");
  r->body.len = sizeof body - 1;
  r->body.ptr = malloc(sizeof body - 1);
  memcpy(r->body.ptr, body, sizeof body - 1);
}

void exports_mesh_filter_handler_on_request_headers(exports_mesh_filter_handler_context_t *ctx,
                                                    exports_mesh_filter_handler_request_t *req,
                                                    exports_mesh_filter_handler_list_action_t *ret) {
  count_request();
  ret->len = 1;
  ret->ptr = malloc(sizeof *ret->ptr);
  if (string_equals(&req->path, current_blocked_path())) {
    respond_blocked(&ret->ptr[0]);
  } else {
    ret->ptr[0].tag = MESH_FILTER_TYPES_ACTION_ADD_REQUEST_HEADER;
    example_filter_string_dup(&ret->ptr[0].val.add_request_header.f0, "x-filter-lang");
    example_filter_string_dup(&ret->ptr[0].val.add_request_header.f1, LANG);
  }
  exports_mesh_filter_handler_context_free(ctx);
  exports_mesh_filter_handler_request_free(req);
}

static void no_actions(exports_mesh_filter_handler_list_action_t *ret) {
  ret->ptr = NULL;
  ret->len = 0;
}

void exports_mesh_filter_handler_on_request_body(exports_mesh_filter_handler_context_t *ctx,
                                                 example_filter_list_u8_t *body,
                                                 exports_mesh_filter_handler_list_action_t *ret) {
  exports_mesh_filter_handler_context_free(ctx);
  example_filter_list_u8_free(body);
  no_actions(ret);
}

void exports_mesh_filter_handler_on_response_headers(exports_mesh_filter_handler_context_t *ctx,
                                                     exports_mesh_filter_handler_response_t *resp,
                                                     exports_mesh_filter_handler_list_action_t *ret) {
  exports_mesh_filter_handler_context_free(ctx);
  exports_mesh_filter_handler_response_free(resp);
  no_actions(ret);
}

void exports_mesh_filter_handler_on_response_body(exports_mesh_filter_handler_context_t *ctx,
                                                  example_filter_list_u8_t *body,
                                                  exports_mesh_filter_handler_list_action_t *ret) {
  exports_mesh_filter_handler_context_free(ctx);
  example_filter_list_u8_free(body);
  no_actions(ret);
}

void exports_mesh_filter_handler_on_attempt(exports_mesh_filter_handler_context_t *ctx,
                                            exports_mesh_filter_handler_attempt_t *attempt,
                                            exports_mesh_filter_handler_retry_decision_t *ret) {
  exports_mesh_filter_handler_context_free(ctx);
  exports_mesh_filter_handler_attempt_free(attempt);
  ret->tag = MESH_FILTER_TYPES_RETRY_DECISION_GIVE_UP;
}
